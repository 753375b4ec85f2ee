"""Resolve layer references and inspect layer shapes.

A *layer reference* (:data:`LayerRef`) is one of

* an ``nn.Module`` that is a submodule of the model;
* a dotted path as printed by ``model.named_modules()``, e.g. ``"features.8"``;
* Lucent's underscore name, e.g. ``"features_8"`` or ``"Mixed_5b"``, resolved with Lucent's own
  traversal rule (the ``_modules`` tree walked recursively, names joined with ``"_"``), so names
  whose attributes contain underscores still resolve correctly;
* a name the model declares in a ``layer_aliases`` attribute (a mapping name -> dotted path),
  e.g. cnnpref's ``"conv3_1"`` for ``"features.10"`` of torchvision's VGG19.

The empty string ``""`` (or the model object) is the model itself: its output, e.g. logits
computed functionally after the last module. ``"labels"`` is Lucent's pseudo-layer: the last
module in Lucent's traversal order (usually the output layer), as ``render_vis`` reads it.

Layers are modules: a module registered under two names (an alias) resolves to the same module by
either name, and a ``torch.compile``'d model accepts its original names as well as the
``_orig_mod.``-prefixed ones. For ``nn.DataParallel`` and ``DistributedDataParallel`` names carry
the ``module.`` prefix (the error for a missing prefix says so).
"""
from __future__ import annotations

import difflib
from typing import Dict, Iterator, List, Sequence, Tuple, Union

import torch
from torch import nn

from .errors import AmbiguousLayerError, LayerNotFoundError, describe

__all__ = [
    "LayerRef",
    "resolve_layer",
    "layer_name",
    "list_layers",
    "lucent_names",
    "to_lucent_name",
    "layer_shape",
    "layer_shapes",
    "eager_model",
]

LayerRef = Union[str, nn.Module]


def eager_model(model: nn.Module) -> nn.Module:
    """The module to run for hooks: a ``torch.compile``'d model's original module, else ``model``."""
    original = getattr(model, "_orig_mod", None)
    return original if isinstance(original, nn.Module) and type(model).__name__ == "OptimizedModule" else model


def _walk(module: nn.Module, prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], nn.Module]]:
    """Yield (path, module) pairs in Lucent's order: depth first, no de-duplication."""
    for name, child in module._modules.items():
        if child is None:
            continue
        path = prefix + (name,)
        yield path, child
        yield from _walk(child, path)


def list_layers(model: nn.Module) -> List[str]:
    """Dotted names of every submodule of ``model``, in registration order.

    Returns:
        list of str, the same names as ``[n for n, _ in model.named_modules()][1:]``.
    """
    return [name for name, _ in model.named_modules() if name]


def lucent_names(model: nn.Module) -> Dict[str, List[str]]:
    """Map each Lucent underscore name to the dotted path(s) it stands for.

    A name that maps to two or more paths is ambiguous (Lucent silently keeps the last).
    """
    table: Dict[str, List[str]] = {}
    for path, _ in _walk(model):
        table.setdefault("_".join(path), []).append(".".join(path))
    return table


def to_lucent_name(path: str) -> str:
    """Lucent's name for a dotted path: ``"features.8"`` -> ``"features_8"``."""
    return path.replace(".", "_")


def _suggest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    if not close:
        # Fall back to prefix matches, e.g. "layer4" -> "layer4.0", "layer4.1".
        close = [c for c in candidates if c.startswith(name)][:5]
    if close:
        return "Did you mean " + ", ".join(repr(c) for c in close) + "?"
    return "See lucent_dgn.list_layers(model) for the available names."


def resolve_layer(model: nn.Module, layer: LayerRef, *, arg: str = "layer") -> Tuple[str, nn.Module]:
    """Resolve ``layer`` to ``(dotted_path, module)``.

    Args:
        model: the network.
        layer: an ``nn.Module`` inside ``model``, a dotted path, a Lucent underscore name, or a key
            of ``model.layer_aliases`` (checked after the dotted paths, before Lucent's names).
        arg: the argument name used in error messages.

    Raises:
        LayerNotFoundError: nothing matches (the message lists close names).
        AmbiguousLayerError: a Lucent name stands for several modules.
        TypeError: ``layer`` is neither a string nor a module.
    """
    if isinstance(layer, nn.Module):
        if layer is model:
            return "", model
        for name, module in model.named_modules(remove_duplicate=False):
            if module is layer:
                return name, module
        raise LayerNotFoundError(
            describe(arg, "a submodule of the model", type(layer).__name__,
                     "Pass a module taken from this model, or its name.")
        )
    if not isinstance(layer, str):
        raise TypeError(describe(arg, "an nn.Module or a layer name (str)", layer))
    if layer == "":
        return "", model
    try:
        return layer, model.get_submodule(layer)
    except AttributeError:
        pass
    aliases = getattr(model, "layer_aliases", None) or {}
    if layer in aliases:
        try:
            return aliases[layer], model.get_submodule(aliases[layer])
        except AttributeError:
            raise LayerNotFoundError(describe(arg, f"a layer of {type(model).__name__}", layer,
                                              f"The model's layer_aliases map it to {aliases[layer]!r}, "
                                              "which is not one of its modules.")) from None
    if layer == "labels":
        last = None
        for path, module in _walk(model):
            last = (".".join(path), module)
        if last is not None:
            return last
    matches = lucent_names(model).get(layer, [])
    if len(matches) == 1:
        path = matches[0]
        return path, model.get_submodule(path)
    if len(matches) > 1:
        raise AmbiguousLayerError(
            describe(arg, "a layer name that names one module", layer,
                     f"Lucent's underscore name {layer!r} stands for {', '.join(map(repr, matches))}; "
                     "use one of these dotted paths instead.")
        )
    candidates = list_layers(model) + [n for n in aliases if isinstance(n, str)]
    candidates += [n for n in lucent_names(model) if n not in candidates]
    hint = _suggest(layer, candidates)
    wrapped = getattr(model, "module", None)
    if isinstance(wrapped, nn.Module) and not layer.startswith("module."):
        try:
            resolve_layer(wrapped, layer, arg=arg)
            hint = (f"The model wraps its network in `.module` ({type(model).__name__}): "
                    f"use 'module.{layer}' (or pass model.module).")
        except (LayerNotFoundError, AmbiguousLayerError):
            pass
    raise LayerNotFoundError(describe(arg, f"a layer of {type(model).__name__}", layer, hint))


def layer_name(model: nn.Module, layer: LayerRef) -> str:
    """The dotted path of ``layer`` inside ``model``."""
    return resolve_layer(model, layer)[0]


def _example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    return torch.zeros(shape, device=device, dtype=dtype)


def layer_shapes(model: nn.Module, layers: Sequence[LayerRef], input_shape: Sequence[int]) -> Dict[str, Tuple[int, ...]]:
    """Feature shapes (without batch) of several layers for an input of ``input_shape``.

    Args:
        model: the network (its train/eval mode is left as it is).
        layers: layer references.
        input_shape: (C, H, W) or (N, C, H, W) of the model input.

    Returns:
        dict dotted path -> shape tuple without the batch axis, e.g. ``(96, 55, 55)`` or ``(1000,)``;
        layers that the forward pass does not call are missing.
    """
    resolved = [resolve_layer(model, layer) for layer in layers]
    shapes: Dict[str, Tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            shapes[name] = tuple(output.shape[1:])
        return hook

    try:
        for name, module in resolved:
            handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            eager_model(model)(_example_input(model, input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def layer_shape(model: nn.Module, layer: LayerRef, input_shape: Sequence[int]) -> Tuple[int, ...]:
    """Feature shape (without batch) of one layer, e.g. ``(96, 55, 55)`` for AlexNet conv1 at 227 px.

    Args:
        model: the network.
        layer: a layer reference (see :func:`resolve_layer`).
        input_shape: (C, H, W) or (N, C, H, W) of the model input.

    Raises:
        LayerNotFoundError: no such layer, or a module that ``model.forward`` never calls.
    """
    name, _ = resolve_layer(model, layer)
    shapes = layer_shapes(model, [name], input_shape)
    if name not in shapes:
        raise LayerNotFoundError(describe("layer", "a layer that runs in the model's forward pass", name,
                                          "The module exists but forward() does not call it."))
    return shapes[name]
