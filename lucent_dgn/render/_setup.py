"""Set-up checks of :func:`lucent_dgn.render`: arguments to objects, devices, dtypes, input shapes.

Everything here runs before the first optimisation step, so bad input fails before any work.
"""
from __future__ import annotations

import logging
import weakref
from itertools import chain
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError, ShapeError, describe
from ..layers import eager_model
from ..parameterizations.base import Parameterization
from ..parameterizations.lucent_adapter import LucentParam
from ..spaces import ImageSpace, TorchvisionSpace
from .hooks import ActivationCapture

__all__ = ["as_objective", "as_param", "as_optimizer", "device_of", "check_dtypes", "check_input", "run_checked",
           "resolve_input_space", "check_grad_mode", "eager_model"]

log = logging.getLogger(__name__)
_TOLD: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()  # models already told about the default input space


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


def resolve_input_space(model: Optional[nn.Module], param: Parameterization, input_space: Optional[ImageSpace],
                        preprocess: bool) -> ImageSpace:
    """The model input space for one render (see :func:`lucent_dgn.render`); changes nothing."""
    for arg, space in (("input_space", input_space), ("param.model_space", getattr(param, "model_space", None)),
                       ("model.input_space", getattr(model, "input_space", None) if model is not None else None)):
        if space is not None:
            if not isinstance(space, ImageSpace):
                raise ConfigError(describe(arg, "an ImageSpace (lucent_dgn.spaces)", type(space).__name__))
            return space
    if model is not None and preprocess:
        if model not in _TOLD:
            _TOLD.add(model)
            log.info("%s declares no input_space: rendering RGB in [0, 1] normalised with torchvision's ImageNet "
                     "mean and std (Lucent's preprocess=True). Pass input_space=... or preprocess=False to change it.",
                     type(model).__name__)
        return TorchvisionSpace()
    return param.native_space


def check_grad_mode(model: Optional[nn.Module], param: Parameterization) -> None:
    """Tensors made under ``torch.inference_mode()`` can never take part in autograd: say so clearly."""
    parts = [("param", t) for t in param.tensors()]
    parts += [("generator", t) for m in getattr(param, "frozen_modules", lambda: [])() for t in m.parameters()]
    if model is not None:
        parts += [("model", t) for t in chain(model.parameters(), model.buffers())]
    for arg, t in parts:
        if t.is_inference():
            raise ConfigError(describe(arg, "built outside torch.inference_mode()", "inference tensors",
                                       "Tensors created under inference mode cannot be optimised or differentiated "
                                       "through; create the model and the parameterization outside it (rendering "
                                       "inside inference_mode or no_grad is fine).", raw=True))


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """The image must have the channel count of the input space the model declares (if any)."""
    declared = getattr(model, "input_space", None)
    channels = getattr(declared, "channels", None)
    if channels is not None and (x.ndim != 4 or x.shape[1] != channels):
        raise ShapeError(describe("param", f"images (N, {channels}, H, W) for the model", f"shape {tuple(x.shape)}",
                                  raw=True) +
                         " Match the parameterization's space/channels to model.input_space.")


def run_checked(capture: ActivationCapture, x: torch.Tensor, space: Optional[ImageSpace] = None) -> None:
    """Run the model once; a failure of its forward pass becomes a ShapeError naming the input shape."""
    check_input(capture.model, x)
    try:
        capture.run(x)
    except RuntimeError as err:
        size = getattr(capture.model, "input_size", None)
        expected = f" (the model's input_size is {size})" if size is not None else ""
        if space is not None and getattr(capture.model, "input_space", None) is None:
            expected += (f"; the model declares no input_space, so it got {space!r} images: pass "
                         "input_space=... (or preprocess=False) if it expects another encoding")
        raise ShapeError(describe("param", f"images the model accepts{expected}", f"shape {tuple(x.shape)}",
                                  f"The model's forward pass failed: {str(err).splitlines()[0][:200]}",
                                  raw=True)) from err
