"""Read a layer's activation from whichever accessor ``T`` an objective receives.

Two accessors exist:

* ours, :class:`lucent_dgn.render.hooks.ActivationAccessor` (``T.is_lucent_dgn_accessor`` is
  True), which accepts modules, dotted paths, Lucent underscore names and ``"input"``;
* Lucent's, returned by ``lucent.optvis.render.hook_model`` inside ``render_vis``, which only
  accepts Lucent underscore names (plus ``"input"`` and ``"labels"``).

:func:`read_activation` hides the difference: dotted paths are converted with
:func:`lucent_dgn.layers.to_lucent_name`, and a module is found among the accessor's hooks.
"""
from __future__ import annotations

import difflib
import warnings
import weakref
from typing import Any, Callable, Dict, Optional

import torch
from lucent.optvis.objectives import Objective
from torch import nn

from ..errors import LayerNotFoundError, describe
from ..layers import LayerRef, to_lucent_name

__all__ = ["read_activation", "is_own_accessor", "layer_label", "item_objective", "report_activation"]

INPUT = "input"
_PSEUDO_LAYERS = (INPUT, "labels")
_MAX_DEPTH = 4
_WARNED: "weakref.WeakSet[Any]" = weakref.WeakSet()  # Lucent ModuleHooks already warned about


def is_own_accessor(T: Any) -> bool:
    """True when ``T`` is lucent_dgn's :class:`ActivationAccessor`."""
    return bool(getattr(T, "is_lucent_dgn_accessor", False))


def layer_label(layer: LayerRef) -> str:
    """A short printable name of a layer reference (for descriptions and messages)."""
    if isinstance(layer, nn.Module):
        return type(layer).__name__
    return str(layer)


def _is_hook_table(value: Any) -> bool:
    if not isinstance(value, dict) or not value:
        return False
    first = next(iter(value.values()))
    return hasattr(first, "hook_fn") and hasattr(first, "features") and hasattr(first, "module")


def _find_hook_table(func: Any, depth: int = 0) -> Optional[Dict[str, Any]]:
    """Lucent's ``{name: ModuleHook}`` table, found in the closure of ``func`` (or of what it wraps)."""
    if depth > _MAX_DEPTH:
        return None
    for cell in getattr(func, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # empty cell
            continue
        if _is_hook_table(value):
            return value
        if callable(value) and not isinstance(value, (nn.Module, type)):
            found = _find_hook_table(value, depth + 1)
            if found is not None:
                return found
    return None


def _hooks_module(module_hook: Any, module: nn.Module) -> bool:
    if getattr(module_hook, "module", None) is module:
        return True
    handle_id = getattr(getattr(module_hook, "hook", None), "id", None)
    return handle_id is not None and module._forward_hooks.get(handle_id) == module_hook.hook_fn


def _name_of_module(table: Optional[Dict[str, Any]], module: nn.Module) -> str:
    if table is not None:
        for name, module_hook in table.items():
            if _hooks_module(module_hook, module):
                return name
    hint = ("Pass the layer's name instead (a dotted path such as 'features.8' or Lucent's "
            "underscore name such as 'features_8').")
    if table is not None:
        hint = "Lucent's render_vis hooks no such module of its model. " + hint
    raise LayerNotFoundError(describe("layer", "a module the accessor knows by name", type(module).__name__, hint))


def _check_name(table: Optional[Dict[str, Any]], key: str) -> None:
    if table is None or key in table or key in _PSEUDO_LAYERS:
        return
    close = difflib.get_close_matches(key, list(table), n=5, cutoff=0.5)
    hint = ("Did you mean " + ", ".join(map(repr, close)) + "?") if close else \
        "See lucent.modelzoo.util.get_model_layers(model) for the names Lucent knows."
    raise LayerNotFoundError(describe("layer", "a layer hooked by Lucent's render_vis", key, hint))


def _warn_overwritten(key: str, table: Optional[Dict[str, Any]], tensor: torch.Tensor) -> None:
    if key in _PSEUDO_LAYERS or not isinstance(tensor, torch.Tensor) or tensor._version == 0:
        return
    module_hook = table.get(key) if table is not None else None
    if getattr(getattr(module_hook, "module", None), "inplace", False) is True:
        return  # the layer is itself the in-place op (e.g. ReLU(inplace=True)): its output is wanted
    if module_hook is not None:
        if module_hook in _WARNED:
            return
        _WARNED.add(module_hook)  # once per render_vis call and layer
    warnings.warn(
        f"The activation of layer {key!r} was modified in place after it was computed (for example "
        "by a following ReLU(inplace=True)), so its values may be post-ReLU rather than the raw "
        "pre-activations. Wrap the render in `with lucent_dgn.render.hooks.preserve_pre_activations(model):` "
        "to keep them.",
        UserWarning,
        stacklevel=3,
    )


def read_activation(T: Callable[[Any], torch.Tensor], layer: LayerRef) -> torch.Tensor:
    """The activation of ``layer`` from accessor ``T``.

    Args:
        T: lucent_dgn's ``ActivationAccessor``, Lucent's ``hook_model`` accessor (possibly wrapped,
            e.g. by Lucent's ``handle_batch``), or any callable mapping a Lucent-style name to a tensor.
        layer: an ``nn.Module``, a dotted path (``"features.8"``), a Lucent underscore name
            (``"features_8"``) or ``"input"``.

    Returns:
        The tensor, (B, C, H, W) or (B, C) for usual layers.

    Raises:
        LayerNotFoundError: a module or name the accessor does not know.
        TypeError: ``layer`` is neither a string nor a module.

    Warns:
        UserWarning: outside lucent_dgn's accessor, when the tensor was modified in place after the
            layer produced it (``_version > 0``), e.g. by a ``ReLU(inplace=True)``; under Lucent's
            ``render_vis`` once per call and layer.
    """
    if is_own_accessor(T):
        return T(layer)
    table = _find_hook_table(T)
    if isinstance(layer, nn.Module):
        key = _name_of_module(table, layer)
    elif isinstance(layer, str):
        key = layer if layer in _PSEUDO_LAYERS else to_lucent_name(layer)
    else:
        raise TypeError(describe("layer", "an nn.Module or a layer name (str)", layer))
    _check_name(table, key)
    tensor = T(key)
    _warn_overwritten(key, table, tensor)
    return tensor


def item_objective(func: Callable[[Any], torch.Tensor], name: str, description: str = "") -> Objective:
    """A Lucent ``Objective`` from a function that returns per-item LOSSES.

    ``func(T) -> Tensor (B,)``: the loss of each batch item (lower = better). The objective's value
    is their sum, a scalar, wherever it runs (Lucent's ``render_vis`` included). Inside
    lucent_dgn's render loop the term also *declares* its per-item losses: when every term of a
    composed objective is built with this function, the loop evaluates the composition item by
    item (Lucent's ``+``, ``-`` and ``* number`` act element-wise), so optimizers that keep one
    history per item (:class:`~lucent_dgn.render.lbfgs.LBFGSB`, the gradient-free searches) get
    exact per-item losses. A term that reads activations some other way (e.g. Lucent's own
    ``channel()``) makes the render use one joint loss instead; nothing is guessed from values.

    Inside ``func``, :func:`report_activation` records a per-item activation for the render's
    history, keyed by ``name`` (``name#2``, ... for repeated names).

    The returned Objective has ``per_item = True`` and ``term_func = func``.

    Args:
        func: ``T -> (B,)`` per-item losses; ``T`` is the activation accessor.
        name: the term's name (Lucent's ``Objective.name``; the key of its activation record).
        description: Lucent's ``Objective.description``.
    """
    def objective_func(T: Any) -> torch.Tensor:
        if not is_own_accessor(T):
            return func(T).sum()
        with T.term(name):
            items = func(T)
        if not isinstance(items, torch.Tensor) or items.ndim != 1:
            raise TypeError(describe(f"objective term {name!r}", "a function returning per-item losses (B,)",
                                     getattr(items, "shape", type(items).__name__)))
        return items if T.item_mode else items.sum()

    objective = Objective(objective_func, name=name, description=description)
    objective.per_item = True
    objective.term_func = func
    return objective


def report_activation(T: Any, values: torch.Tensor) -> None:
    """Record (B,) per-item activation values of the running term (a no-op outside our render loop)."""
    if is_own_accessor(T):
        T.report_activation(values)
