"""Capture layer activations during a render: hook only what is needed, stop early, always unhook.

:class:`ActivationAccessor` is the ``T`` our render loop hands to objectives. It mirrors Lucent's
accessor (``T(name) -> activation``) but also accepts modules, dotted paths, the model itself
(``""``), Lucent's pseudo-layer ``"labels"`` and ``"input"`` (the image the model saw, after
transforms). Layers are matched by module identity, so a module reachable under two names (or a
compiled model's ``_orig_mod.`` names) is the same layer under each of them.

Hooks act only on the forward passes their own capture runs, in the thread that runs them: a
callback that calls the model during a render, a render nested inside a callback, and renders in
other threads all see a normal model. :func:`frozen` and :func:`preserve_pre_activations` count
their users per parameter and per module, so overlapping renders on one model (nested or in
several threads) restore the model exactly once, when the last one ends.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch
from torch import nn

from ..errors import LayerNotFoundError, describe
from ..layers import LayerRef, resolve_layer

__all__ = ["ActivationAccessor", "ActivationCapture", "StopForward", "preserve_pre_activations", "frozen", "INPUT"]

INPUT = "input"


class StopForward(Exception):
    """Raised inside a forward hook once every needed activation is captured.

    Only the :class:`ActivationCapture` that raised it catches it (``capture`` names the owner).
    """

    def __init__(self, capture: "ActivationCapture") -> None:
        super().__init__("forward pass stopped after the last layer the objective reads")
        self.capture = capture


class ActivationAccessor:
    """``T(layer) -> Tensor``: activations captured in the last forward pass.

    Objectives call it with any layer reference (module, dotted path, Lucent name, ``""`` for the
    model output) or ``"input"``. Terms built with :func:`lucent_dgn.objectives.item_objective`
    publish per-item activations with :func:`lucent_dgn.objectives.report_activation`; the render
    loop records them per term.

    Args:
        model: the network (None when only ``"input"`` is read).
        features: the :class:`ActivationCapture` of the pass, or a mapping {layer reference:
            activation} (e.g. for tests and for objectives evaluated outside a render).
        model_input: the model input of the pass.
        names: a cache {layer reference: module} shared by the accessors of one render.
        input_space: the ImageSpace of ``model_input``.
        item_mode: per-item mode (see :attr:`item_mode`).
        root: the module that actually runs (a compiled model's original module); default ``model``.

    Attributes:
        model: the network.
        model_input: the model input of this pass (N, C, H, W), in :attr:`input_space`.
        input_space: the :class:`~lucent_dgn.spaces.ImageSpace` of ``model_input`` (None when unknown).
        item_mode: True when terms should return per-item losses (B,) instead of scalars.
        accessed: modules (by id) read in this pass, and ``"input"`` when the input was read.
        undeclared_reads: True when a read happened outside any per-item term.
        activations: term key -> (B,) per-item activation reported in this pass.
        item_terms: keys of the per-item terms that ran in this pass, in call order.
    """

    is_lucent_dgn_accessor = True

    def __init__(self, model: Optional[nn.Module], features: Union["ActivationCapture", Mapping[LayerRef, torch.Tensor], None],
                 model_input: Optional[torch.Tensor], names: Optional[Dict[Any, nn.Module]] = None,
                 input_space: Any = None, item_mode: bool = False, root: Optional[nn.Module] = None) -> None:
        self.model = model
        self.root = root if root is not None else model  # the module that runs (a compiled model's original)
        self.capture = features if isinstance(features, ActivationCapture) else None
        self.model_input = model_input
        self.input_space = input_space
        self.item_mode = item_mode
        self.accessed: Set[Any] = set()
        self.undeclared_reads = False
        self.activations: Dict[str, torch.Tensor] = {}
        self.item_terms: List[str] = []
        self._names = names if names is not None else {}  # layer reference -> module, shared by one render
        self._term_stack: List[str] = []
        self._term_counts: Dict[str, int] = {}
        if self.capture is not None:
            self._by_module = self.capture.by_module
        else:  # a plain mapping {layer reference: activation}
            self._by_module = {id(self.module_of(k)): v for k, v in (features or {}).items()}

    # -- layer access -------------------------------------------------------------------------
    def module_of(self, layer: LayerRef) -> nn.Module:
        """The module a layer reference names (cached per render)."""
        if self.model is None:
            raise LayerNotFoundError(describe("layer", "'input' for a render without a model", _label(layer),
                                              "Pass a model to read its layers."))
        key = layer if isinstance(layer, (str, nn.Module)) else None
        module = self._names.get(key) if key is not None else None
        if module is None:
            module = resolve_layer(self.model, layer)[1]
            if module is self.model:
                module = self.root
            if key is not None:
                self._names[key] = module
        return module

    def __call__(self, layer: LayerRef) -> torch.Tensor:
        if not self._term_stack:
            self.undeclared_reads = True
        if isinstance(layer, str) and layer == INPUT:
            self.accessed.add(INPUT)
            if self.model_input is None:
                raise LayerNotFoundError("The model input is not available in this pass.")
            return self.model_input
        module = self.module_of(layer)
        self.accessed.add(id(module))
        features = self._by_module
        if id(module) not in features:
            raise LayerNotFoundError(
                describe("layer", "a layer that ran in this forward pass", _label(layer),
                         "The forward pass stopped before it or the module is not called by forward().")
            )
        return features[id(module)]

    # -- per-item terms -------------------------------------------------------------------------
    @contextlib.contextmanager
    def term(self, name: str) -> Iterator[str]:
        """Scope of one per-item term; yields its key (``name``, then ``name#2``, ...)."""
        count = self._term_counts[name] = self._term_counts.get(name, 0) + 1
        key = name if count == 1 else f"{name}#{count}"
        self.item_terms.append(key)
        self._term_stack.append(key)
        try:
            yield key
        finally:
            self._term_stack.pop()

    def report_activation(self, values: torch.Tensor) -> None:
        """Record (B,) per-item activation values for the innermost running term."""
        if self._term_stack:
            self.activations[self._term_stack[-1]] = values.detach()


def _label(layer: Any) -> str:
    return type(layer).__name__ if isinstance(layer, nn.Module) else str(layer)


_ACTIVE = threading.local()  # the captures whose forward pass runs in this thread


class ActivationCapture:
    """Forward hooks on a set of modules; optionally stop the forward pass once all have run.

    Features are keyed by module identity (:attr:`by_module`) and by the names given
    (:attr:`features`). A module called several times per forward keeps its last call's output
    (as Lucent does); the forward pass is only stopped early when every needed module has been
    called as often as ``calls`` says (modules without a count: once), so ``stop_early`` changes
    speed only.

    Use as a context manager: hooks are removed on exit, also after an exception. Hooks act only
    inside :meth:`run` of this capture, in the calling thread.

    Args:
        model: the network.
        layers: layer references to capture (``"input"`` is ignored; ``""`` is the model output).
        stop_early: raise :class:`StopForward` after the last needed module has run.
        calls: module id -> number of calls per forward (from a full validation pass). A module
            missing here is assumed to be called once; pass ``calls`` to make early stops exact.

    After :meth:`run`, :attr:`calls_seen` holds how often each hooked module was called.
    """

    def __init__(self, model: nn.Module, layers: Sequence[LayerRef], stop_early: bool = True,
                 calls: Optional[Dict[int, int]] = None) -> None:
        self.model = model
        self._wanted: List[Tuple[Any, nn.Module]] = []
        for layer in layers:
            if isinstance(layer, str) and layer == INPUT:
                continue
            module = layer if isinstance(layer, nn.Module) and _owned(model, layer) else resolve_layer(model, layer)[1]
            self._wanted.append((layer, module))
        self.modules: Dict[int, nn.Module] = {id(m): m for _, m in self._wanted}
        self.names: List[Any] = [layer for layer, _ in self._wanted]
        self.stop_early = stop_early and id(model) not in self.modules
        self.expected: Dict[int, int] = {k: max(1, int((calls or {}).get(k, 1))) for k in self.modules}
        self.by_module: Dict[int, torch.Tensor] = {}
        self.calls_seen: Dict[int, int] = {}
        self._handles: List[torch.utils.hooks.RemovableHandle] = []

    @property
    def features(self) -> Dict[Any, torch.Tensor]:
        """Captured outputs keyed by the layer references given (aliases share a tensor)."""
        return {layer: self.by_module[id(m)] for layer, m in self._wanted
                if id(m) in self.by_module and isinstance(layer, (str, nn.Module))}

    def __enter__(self) -> "ActivationCapture":
        try:
            for key, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._make_hook(key)))
        except BaseException:
            self.close()
            raise
        return self

    def _active(self) -> bool:
        stack = getattr(_ACTIVE, "stack", None)
        return bool(stack) and stack[-1] is self

    def _make_hook(self, key: int):
        def hook(_module: nn.Module, _inputs, output):
            if not self._active():
                return None
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.by_module[key] = output
            self.calls_seen[key] = self.calls_seen.get(key, 0) + 1
            if self.stop_early and len(self.by_module) == len(self.modules) and all(
                    self.calls_seen.get(k, 0) >= n for k, n in self.expected.items()):
                raise StopForward(self)
            return None
        return hook

    def run(self, model_input: torch.Tensor) -> Optional[torch.Tensor]:
        """Run the model on ``model_input``; returns the model output or None if stopped early."""
        self.by_module.clear()
        self.calls_seen.clear()
        stack = getattr(_ACTIVE, "stack", None)
        if stack is None:
            stack = _ACTIVE.stack = []
        stack.append(self)
        try:
            return self.model(model_input)
        except StopForward as stop:
            if stop.capture is not self:
                raise
            return None
        finally:
            stack.pop()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self.close()


def _owned(model: nn.Module, module: nn.Module) -> bool:
    return module is model or any(m is module for m in model.modules())


# -- reference-counted model state ---------------------------------------------------------------
_STATE_LOCK = threading.RLock()
_FROZEN: Dict[int, list] = {}    # id(parameter) -> [users, parameter, requires_grad, grad]
_MODES: Dict[int, list] = {}     # id(module) -> [users, module, training]
_INPLACE: Dict[int, list] = {}   # id(module) -> [users, module]


def _unique(items) -> List[Any]:
    seen: Dict[int, Any] = {}
    for item in items:
        seen.setdefault(id(item), item)
    return list(seen.values())


@contextlib.contextmanager
def preserve_pre_activations(model: nn.Module) -> Iterator[List[nn.Module]]:
    """Temporarily turn off ``inplace=True`` on the model's modules (e.g. torchvision's ReLUs).

    With an in-place ReLU after a conv, the conv's hooked output is overwritten with its
    rectified values; cnnpref's units are pre-ReLU. Inside this context every module with an
    ``inplace`` attribute computes out of place, so hooked outputs keep their pre-ReLU values.
    The flags are restored when the last overlapping user (nested or in another thread) exits.
    Yields the list of modules this call changed.
    """
    with _STATE_LOCK:
        changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
        for module in changed:
            _INPLACE[id(module)] = [0, module]
            module.inplace = False
        mine = [entry for m in model.modules() if (entry := _INPLACE.get(id(m))) is not None]
        for entry in _unique(mine):
            entry[0] += 1
    try:
        yield changed
    finally:
        with _STATE_LOCK:
            for entry in _unique(mine):
                entry[0] -= 1
                if entry[0] == 0:
                    entry[1].inplace = True
                    _INPLACE.pop(id(entry[1]), None)


@contextlib.contextmanager
def frozen(*models: nn.Module) -> Iterator[None]:
    """Set ``requires_grad=False`` on every parameter and eval mode for the duration.

    On exit each parameter's ``requires_grad`` and ``.grad`` and each module's train/eval flag are
    restored. Overlapping uses (nested, or renders in several threads on one model) share the
    state: it is saved by the first and restored by the last.
    """
    params = _unique(p for model in models for p in model.parameters())
    modules = _unique(m for model in models for m in model.modules())
    with _STATE_LOCK:
        held_p, held_m = [], []
        for p in params:
            entry = _FROZEN.get(id(p))
            if entry is None:
                entry = _FROZEN[id(p)] = [0, p, p.requires_grad, p.grad]
                p.requires_grad_(False)
            entry[0] += 1
            held_p.append(entry)
        for m in modules:
            entry = _MODES.get(id(m))
            if entry is None:
                entry = _MODES[id(m)] = [0, m, m.training]
                m.training = False
            entry[0] += 1
            held_m.append(entry)
    try:
        yield
    finally:
        with _STATE_LOCK:
            for entry in held_p:
                entry[0] -= 1
                if entry[0] == 0:
                    entry[1].requires_grad_(entry[2])
                    entry[1].grad = entry[3]
                    _FROZEN.pop(id(entry[1]), None)
            for entry in held_m:
                entry[0] -= 1
                if entry[0] == 0:
                    entry[1].training = entry[2]
                    _MODES.pop(id(entry[1]), None)
