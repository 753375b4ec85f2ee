"""Any ``torch.optim`` optimizer as an optimizer of the render loop.

:class:`TorchOptimizer` wraps a factory ``params -> torch.optim.Optimizer`` (Lucent's
``optimizer`` argument has the same form). Each outer step ``t`` calls
``problem.begin_step(t)``, then ``optimizer.step(closure)`` once, where the closure runs
``problem.evaluate()`` (forward + backward; it sets the gradients and returns the loss), then
optionally ``problem.param.project_()``, then ``problem.end_step(t)``. Adam and SGD evaluate once
per step; ``torch.optim.LBFGS`` evaluates up to ``max_eval`` times within its one ``step`` call.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

import torch

from ..errors import ConfigError, describe
from .problem import Problem

__all__ = ["TorchOptimizer", "adam", "lbfgs"]

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]


class TorchOptimizer:
    """Run a ``torch.optim`` optimizer for ``problem.n_steps`` outer steps.

    Args:
        factory: ``params -> torch.optim.Optimizer``, e.g. ``lambda p: torch.optim.Adam(p, lr=0.05)``;
            called once per :meth:`run` with ``problem.param.tensors()``.
        name: label used in ``repr`` (default: the factory's name).
        project: clamp the variable into the parameterization's bounds after every step
            (default True; a no-op for unbounded parameterizations).

    After ``run``: ``optimizer`` (the torch optimizer instance of the last run) and ``n_iter``.
    """

    def __init__(self, factory: OptimizerFactory, name: Optional[str] = None, project: bool = True) -> None:
        if not callable(factory):
            raise ConfigError(describe("factory", "a callable params -> torch.optim.Optimizer", factory,
                                       "For example: lambda p: torch.optim.Adam(p, lr=0.05)."))
        self.factory = factory
        self.name = name or getattr(factory, "__name__", None) or type(factory).__name__
        self.project = bool(project)
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.n_iter = 0

    def __repr__(self) -> str:
        return f"TorchOptimizer({self.name!r}, project={self.project})"

    def _make(self, problem: Problem) -> torch.optim.Optimizer:
        opt = self.factory(problem.param.tensors())
        if not isinstance(opt, torch.optim.Optimizer):
            raise ConfigError(describe("factory", "a callable returning a torch.optim.Optimizer",
                                       type(opt).__name__, raw=True))
        return opt

    def run(self, problem: Problem) -> None:
        """Optimise ``problem.param.variable`` in place for at most ``problem.n_steps`` steps."""
        self.optimizer = opt = self._make(problem)
        self.n_iter = 0
        if isinstance(opt, torch.optim.LBFGS) and problem.param.bounds() is not None:
            action = "clamped after each step" if self.project else "ignored"
            logger.warning("torch.optim.LBFGS has no box constraints (bounds are %s); "
                           "use LBFGSB or ScipyLBFGSB for bounded problems.", action)

        def closure() -> torch.Tensor:
            return problem.evaluate()

        for t in range(int(problem.n_steps)):
            problem.begin_step(t)
            opt.step(closure)
            if self.project:
                problem.param.project_()
            self.n_iter += 1
            if problem.end_step(t):
                break


def adam(lr: float = 0.05, project: bool = True, **kwargs) -> TorchOptimizer:
    """``torch.optim.Adam(params, lr=lr, **kwargs)`` (Lucent's default optimizer and rate)."""
    def factory(params):
        return torch.optim.Adam(params, lr=lr, **kwargs)
    return TorchOptimizer(factory, name=f"Adam(lr={lr})", project=project)


def lbfgs(max_iter: int = 20, history_size: int = 10, line_search_fn: Optional[str] = "strong_wolfe",
          lr: float = 1.0, project: bool = False, **kwargs) -> TorchOptimizer:
    """``torch.optim.LBFGS`` for unbounded problems; one outer step = one ``.step(closure)`` call.

    Args:
        max_iter: L-BFGS iterations per outer step (20; up to ``max_iter * 5 / 4`` evaluations).
        history_size: curvature pairs kept (10; perf_anchors §5: 100 costs 5-7x more per evaluation).
        line_search_fn: ``"strong_wolfe"`` (default) or None (fixed step ``lr``).
        lr: step scale (1.0). project: clamp to bounds after each outer step (False: the
            clamp does not inform L-BFGS's history; prefer LBFGSB for bounded problems).
        **kwargs: other ``torch.optim.LBFGS`` options (``tolerance_grad``, ``max_eval`` ...).
    """
    def factory(params):
        return torch.optim.LBFGS(params, lr=lr, max_iter=max_iter, history_size=history_size,
                                 line_search_fn=line_search_fn, **kwargs)
    return TorchOptimizer(factory, name=f"LBFGS(max_iter={max_iter}, history_size={history_size})",
                          project=project)
