"""The interface between the render loop and the optimizers.

An optimizer (see :mod:`lucent_dgn.render.optimizers`) receives a :class:`Problem` and runs
its own loop over outer steps. For each outer step ``t`` it must call ``problem.begin_step(t)``
(draws the step's random transforms, so every closure call within the step sees the same
ones), evaluate the objective one or more times with ``problem.evaluate()``, update
``problem.param.variable`` in place, and finally call ``problem.end_step(t)``; if that returns
True the optimizer stops.

Gradient-free optimizers evaluate many candidate values of the variable at once with
``problem.evaluate_candidates(candidates)`` (forward only, one batch). A step records (history,
callbacks) its last evaluation, unless the optimizer names the accepted point of each item with
``problem.select_records(index)`` (L-BFGS after a rejected trial, a search keeping its best
candidate).
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

import torch

from ..parameterizations.base import Parameterization

__all__ = ["Problem"]


class Problem(Protocol):
    """What optimizers see of a render."""

    param: Parameterization
    """The parameterization; its ``variable`` (N, ...) is the tensor to optimise."""

    n_steps: int
    """Number of outer steps requested."""

    n_evals: int
    """Evaluations so far: one per ``evaluate()`` (forward+backward) and one per candidate of
    ``evaluate_candidates`` (forward only)."""

    jitter_offsets: Optional[tuple]
    """(dy, dx) circular shift applied to the image in the current step, or None."""

    def evaluate(self) -> torch.Tensor:
        """Forward + backward at the current ``param.variable``.

        Sets ``param.variable.grad`` to d loss / d variable (replacing any old value) and returns
        the scalar loss (float64, detached). The loss is the sum over batch items, so the gradient
        of item i depends on item i only. Per-item losses are in ``last_item_losses`` (N,).
        Raises NonFiniteLossError when the loss is NaN or infinite.
        """
        ...

    last_item_losses: Optional[torch.Tensor]

    def evaluate_candidates(self, candidates: torch.Tensor, max_batch: Optional[int] = None) -> torch.Tensor:
        """Forward only, without gradients, at P candidate values of ``param.variable`` (unchanged).

        ``candidates`` is (P, *variable.shape); the P x N images run as one batch (chunks of at most
        ``max_batch`` images). Returns (P, N) float64 per-item losses, or (P, 1) when the objective's
        loss is not split by item. Adds P to ``n_evals`` and one record per candidate to the step.
        """
        ...

    def select_records(self, index: Sequence[int]) -> None:
        """The step records, for item i, its ``index[i]``-th evaluation in this step (candidates count
        one each), or with -1 the record the previous step kept; one index applies to all items."""
        ...

    def begin_step(self, t: int) -> None:
        """Start outer step t (0-based): draw this step's random transforms."""
        ...

    def end_step(self, t: int) -> bool:
        """Finish outer step t: record history, run callbacks, update progress. True = stop."""
        ...
