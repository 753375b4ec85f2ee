"""Set-up checks of :func:`lucent_dgn.render`: arguments to objects, devices, dtypes, input shapes.

Everything here runs before the first optimisation step, so bad input fails before any work.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError, ShapeError, describe
from ..parameterizations.base import Parameterization
from ..parameterizations.lucent_adapter import LucentParam
from .hooks import ActivationCapture

__all__ = ["as_objective", "as_param", "as_optimizer", "device_of", "check_dtypes", "check_input", "run_checked"]


def as_objective(objective: Any) -> Callable:
    from lucent.optvis import objectives as lobj
    if isinstance(objective, str):
        return lobj.as_objective(objective)
    if not callable(objective):
        raise ConfigError(describe("objective", "a Lucent Objective or a callable T -> loss", objective))
    return objective


def as_param(param: Any) -> Parameterization:
    if isinstance(param, Parameterization):
        return param
    if callable(param):
        return LucentParam(param)
    raise ConfigError(describe("param", "a lucent_dgn Parameterization or a Lucent param_f", type(param).__name__))


def as_optimizer(optimizer: Any) -> Any:
    if optimizer is None or isinstance(optimizer, str):
        from .optimizers import make_optimizer
        return make_optimizer(optimizer or "adam")
    if hasattr(optimizer, "run"):
        return optimizer
    if callable(optimizer):  # a Lucent-style factory params -> torch.optim.Optimizer
        from .torch_optim import TorchOptimizer
        return TorchOptimizer(optimizer)
    raise ConfigError(describe("optimizer", "an optimizer name, a lucent_dgn optimizer or a torch.optim factory",
                               optimizer))


def device_of(module: nn.Module) -> Optional[torch.device]:
    """Device of the module's first parameter or buffer; None when it has neither."""
    first = next(chain(module.parameters(), module.buffers()), None)
    return None if first is None else first.device


def check_dtypes(model: nn.Module, param: Parameterization) -> None:
    """The parameterization (and its generator) must compute in the model's floating dtype."""
    want = next((t.dtype for t in chain(model.parameters(), model.buffers()) if t.is_floating_point()), None)
    if want is None:
        return
    parts = [("generator", m) for m in getattr(param, "frozen_modules", lambda: [])()] + [("param", param)]
    for arg, module in parts:
        named = chain(module.named_parameters(), module.named_buffers(),
                      [("variable", t) for t in param.tensors()] if module is param else [])
        for name, t in named:
            if t.is_floating_point() and t.dtype != want:
                raise ConfigError(describe(arg, f"of the model's dtype {want}", f"{t.dtype} ({name})", raw=True) +
                                  " Convert both with .to(dtype), e.g. model.double() and param.double().")


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """The image must have the channel count of ``model.input_space`` (when the model declares one)."""
    channels = getattr(getattr(model, "input_space", None), "channels", None)
    if channels is not None and (x.ndim != 4 or x.shape[1] != channels):
        raise ShapeError(describe("param", f"images (N, {channels}, H, W) for the model", f"shape {tuple(x.shape)}",
                                  raw=True) +
                         " Match the parameterization's space/channels to model.input_space.")


def run_checked(capture: ActivationCapture, x: torch.Tensor) -> None:
    """Run the model once; a failure of its forward pass becomes a ShapeError naming the input shape."""
    check_input(capture.model, x)
    try:
        capture.run(x)
    except RuntimeError as err:
        size = getattr(capture.model, "input_size", None)
        expected = f" (the model's input_size is {size})" if size is not None else ""
        raise ShapeError(describe("param", f"images the model accepts{expected}", f"shape {tuple(x.shape)}",
                                  f"The model's forward pass failed: {str(err).splitlines()[0][:200]}",
                                  raw=True)) from err
