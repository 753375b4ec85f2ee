"""The render loop, optimizers, schedules, per-step image operations and transforms."""
from __future__ import annotations

from .callbacks import Snapshot, StopAfter, StopWhenActivation
from .hooks import ActivationAccessor, frozen, preserve_pre_activations
from .loop import render
from .optimizers import OPTIMIZER_NAMES, make_optimizer
from .result import RenderResult, StepInfo
from .schedules import as_schedule, linear
from .transforms import Compose, Jitter

__all__ = ["render", "RenderResult", "StepInfo", "Snapshot", "StopAfter", "StopWhenActivation",
           "ActivationAccessor", "preserve_pre_activations", "frozen", "make_optimizer", "OPTIMIZER_NAMES",
           "linear", "as_schedule", "Jitter", "Compose", "MomentumGD", "LBFGSB", "ScipyLBFGSB", "TorchOptimizer",
           "CMAES", "GeneticSearch", "RandomSearch", "ClosedLoop"]


def __getattr__(name: str):
    # Optimizer classes are imported on first use (SciPy is only needed for ScipyLBFGSB).
    if name == "MomentumGD":
        from .gd import MomentumGD
        return MomentumGD
    if name in ("LBFGSB", "ScipyLBFGSB"):
        from . import lbfgs
        return getattr(lbfgs, name)
    if name in ("CMAES", "GeneticSearch", "RandomSearch"):
        from . import search
        return getattr(search, name)
    if name == "ClosedLoop":
        from .closed_loop import ClosedLoop
        return ClosedLoop
    if name == "TorchOptimizer":
        from .torch_optim import TorchOptimizer
        return TorchOptimizer
    raise AttributeError(name)
