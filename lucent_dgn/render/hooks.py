"""Capture layer activations during a render: hook only what is needed, stop early, always unhook.

:class:`ActivationAccessor` is the ``T`` our render loop hands to objectives. It mirrors Lucent's
accessor (``T(name) -> activation``) but also accepts modules, dotted paths and the pseudo-layer
``"input"`` (the image the model saw, after transforms).
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from ..errors import LayerNotFoundError, describe
from ..layers import LayerRef, resolve_layer

__all__ = ["ActivationAccessor", "ActivationCapture", "StopForward", "preserve_pre_activations", "frozen"]

INPUT = "input"


class StopForward(Exception):
    """Raised inside a forward hook once every needed activation is captured."""


class ActivationAccessor:
    """``T(layer) -> Tensor``: activations captured in the last forward pass.

    Objectives call it with any layer reference (module, dotted path, Lucent name) or ``"input"``.
    Objectives may also call :meth:`report` to publish per-item diagnostic values (e.g. the mean
    activation of the selected units), which the render loop records as the activation history.
    ``names`` (optional) caches resolved layer names across the accessors of one render, so a
    Lucent underscore name or a module is looked up once, not on every evaluation.
    """

    is_lucent_dgn_accessor = True

    def __init__(self, model: nn.Module, features: Dict[str, torch.Tensor], model_input: Optional[torch.Tensor],
                 names: Optional[Dict[LayerRef, str]] = None) -> None:
        self.model = model
        self.features = features
        self.model_input = model_input
        self.reports: Dict[str, torch.Tensor] = {}
        self.accessed: Set[str] = set()
        self._names = names  # layer reference -> dotted name, shared by the accessors of one render

    def name_of(self, layer: LayerRef) -> str:
        if isinstance(layer, str) and layer == INPUT:
            return INPUT
        if self._names is None or not isinstance(layer, (str, nn.Module)):
            return resolve_layer(self.model, layer)[0]
        name = self._names.get(layer)
        if name is None:
            name = self._names[layer] = resolve_layer(self.model, layer)[0]
        return name

    def __call__(self, layer: LayerRef) -> torch.Tensor:
        name = self.name_of(layer)
        self.accessed.add(name)
        if name == INPUT:
            if self.model_input is None:
                raise LayerNotFoundError("The model input is not available in this pass.")
            return self.model_input
        if name not in self.features:
            raise LayerNotFoundError(
                describe("layer", "a layer that ran in this forward pass", name,
                         "The forward pass stopped before it or the module is not called by forward().")
            )
        return self.features[name]

    def report(self, key: str, values: torch.Tensor, accumulate: bool = False) -> None:
        """Publish per-item values (shape (B,)): ``"activation"`` for the history, ``"loss"``
        for per-item losses (``accumulate=True`` adds to what other terms reported)."""
        values = values.detach()
        if accumulate and key in self.reports and self.reports[key].shape == values.shape:
            values = self.reports[key] + values
        self.reports[key] = values


class ActivationCapture:
    """Forward hooks on a set of modules; optionally stop the forward pass once all ran.

    Use as a context manager: hooks are removed on exit, also after an exception.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], stop_early: bool = True) -> None:
        self.model = model
        self.names: List[str] = [n for n in dict.fromkeys(layers) if n != INPUT]
        self.stop_early = stop_early and "" not in self.names
        self.features: Dict[str, torch.Tensor] = {}
        self._handles: List[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "ActivationCapture":
        by_module: Dict[int, Tuple[nn.Module, List[str]]] = {}
        for name in self.names:
            module = resolve_layer(self.model, name)[1]
            by_module.setdefault(id(module), (module, []))[1].append(name)
        needed = len(self.names)
        try:
            for module, names in by_module.values():
                self._handles.append(module.register_forward_hook(self._make_hook(names, needed)))
        except BaseException:
            self.close()
            raise
        return self

    def _make_hook(self, names: List[str], needed: int):
        def hook(_module: nn.Module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            for name in names:
                self.features[name] = output
            if self.stop_early and len(self.features) >= needed:
                raise StopForward()
        return hook

    def run(self, model_input: torch.Tensor) -> Optional[torch.Tensor]:
        """Run the model on ``model_input``; returns the model output or None if stopped early."""
        self.features.clear()
        try:
            return self.model(model_input)
        except StopForward:
            return None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def preserve_pre_activations(model: nn.Module) -> Iterator[List[nn.Module]]:
    """Temporarily turn off ``inplace=True`` on the model's modules (e.g. torchvision's ReLUs).

    With an in-place ReLU after a conv, the conv's hooked output is overwritten with its
    rectified values; cnnpref's units are pre-ReLU. Inside this context every module with an
    ``inplace`` attribute computes out of place, so hooked outputs keep their pre-ReLU values.
    The flags are restored on exit. Yields the list of modules that were changed.
    """
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for module in changed:
        module.inplace = False
    try:
        yield changed
    finally:
        for module in changed:
            module.inplace = True


@contextlib.contextmanager
def frozen(*models: nn.Module) -> Iterator[None]:
    """Set ``requires_grad=False`` on every parameter for the duration; restore flags and ``.grad``.

    Also puts the models in eval mode and restores each module's train/eval flag afterwards.
    """
    saved = []
    modes = []
    for model in models:
        for p in model.parameters():
            saved.append((p, p.requires_grad, p.grad))
        for m in model.modules():
            modes.append((m, m.training))
    try:
        for model in models:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad
        for m, training in modes:
            m.training = training
