"""The interface between the render loop and the optimizers.

An optimizer (see :mod:`lucent_dgn.render.optimizers`) receives a :class:`Problem` and runs
its own loop over outer steps. For each outer step ``t`` it must call ``problem.begin_step(t)``
(draws the step's random transforms, so every closure call within the step sees the same
ones), evaluate the objective one or more times with ``problem.evaluate()``, update
``problem.param.variable`` in place, and finally call ``problem.end_step(t)``; if that returns
True the optimizer stops.
"""
from __future__ import annotations

from typing import Optional, Protocol

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
    """Number of forward+backward evaluations so far."""

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

    def begin_step(self, t: int) -> None:
        """Start outer step t (0-based): draw this step's random transforms."""
        ...

    def end_step(self, t: int) -> bool:
        """Finish outer step t: record history, run callbacks, update progress. True = stop."""
        ...
