"""Use lucent_dgn masks, layers and rendered images with Captum.

* :func:`as_neuron_selector` turns a unit mask into Captum's callable ``neuron_selector``, so
  ``NeuronGradient(model, module).attribute(x, neuron_selector=as_neuron_selector(mask))`` gives
  the gradient of the masked sum, i.e. minus the gradient of :func:`masked_units`.
* :func:`module_for` resolves a layer reference to the module Captum expects.
* :func:`to_hwc` converts rendered images (and attributions, ``clip=False``) to the HWC arrays
  ``captum.attr.visualization`` takes.
* :func:`mask_from_attribution` picks the top-k units of a layer attribution as a mask.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, MaskError, ShapeError, describe
from ..layers import LayerRef, resolve_layer
from ..objectives.masked import _as_weight
from ..objectives.masks import as_bool_mask, resolve_mask

__all__ = ["as_neuron_selector", "module_for", "to_hwc", "mask_from_attribution"]

ArrayLike = Union[torch.Tensor, np.ndarray]


def _expand_rows(tensor: torch.Tensor, out: torch.Tensor, arg: str) -> torch.Tensor:
    """Fit a per-item (B, ...) tensor to an output whose batch is a multiple of B.

    Captum's integrated-gradient style methods stack ``n_steps`` copies of the batch
    (step-major), so item ``j`` of the output belongs to item ``j % B``.
    """
    rows, n = tensor.shape[0], out.shape[0]
    if rows == n:
        return tensor
    if n % rows:
        raise MaskError(describe(arg, f"one row per batch item (batch size {n}) or a divisor of it",
                                 f"{rows} rows", raw=True))
    return tensor.repeat((n // rows,) + (1,) * (tensor.ndim - 1))


def as_neuron_selector(mask: Any, weight: Any = None) -> Callable[[Any], torch.Tensor]:
    """A Captum ``neuron_selector`` returning, per example, the (weighted) sum of the masked units.

    Args:
        mask: bool or {0, 1} mask, (C, H, W) / (C,) shared by every example, or (B, C, H, W) /
            (B, C) one per example (also accepted when Captum stacks several copies of the batch).
            A mask from the builders (``channel_mask``, ``unit_mask`` ...) made for another map
            size resolves against the layer output's size, as in :func:`~lucent_dgn.masked_units`.
        weight: None (1.0), a scalar or an array broadcastable to the layer output.

    Returns:
        ``selector(layer_output) -> Tensor (B,)`` with ``sum_i weight_i * out[b, i] * mask[b, i]``.
        A tuple of outputs uses its first element.
    """
    mask_t = as_bool_mask(mask)
    weight_t = None if weight is None else _as_weight(weight)

    def selector(output: Any) -> torch.Tensor:
        out = output[0] if isinstance(output, (tuple, list)) else output
        mask_here = resolve_mask(mask_t, tuple(out.shape[1:])).to(out.device)
        if mask_here.ndim == out.ndim:
            if tuple(mask_here.shape[1:]) != tuple(out.shape[1:]):
                raise MaskError(describe("mask", f"of shape {tuple(out.shape[1:])} or (B, *that)",
                                         f"shape {tuple(mask_t.shape)}", raw=True))
            mask_here = _expand_rows(mask_here, out, "mask")
        elif tuple(mask_here.shape) != tuple(out.shape[1:]):
            raise MaskError(describe("mask", f"the layer's feature shape {tuple(out.shape[1:])}",
                                     f"shape {tuple(mask_t.shape)}", raw=True))
        values = out if weight_t is None else out * weight_t.to(out.device, out.dtype)
        selected = torch.where(mask_here, values, torch.zeros((), dtype=out.dtype, device=out.device))
        return selected.flatten(1).sum(1)

    return selector


def module_for(model: nn.Module, layer: LayerRef) -> nn.Module:
    """The module of ``model`` that ``layer`` (module, dotted path or Lucent name) refers to."""
    return resolve_layer(model, layer)[1]


def to_hwc(images: ArrayLike, clip: bool = True) -> np.ndarray:
    """Images (or attributions) as float32 HWC arrays, ready for ``captum.attr.visualization``.

    Args:
        images: (N, H, W, C) or (N, C, H, W) with C in {1, 3} (a torch tensor or numpy array;
            also a single image without N). A last axis of size 1 or 3 is taken as the channel
            axis (checked before the second axis).
            uint8 values are divided by 255.
        clip: clip float values to [0, 1] (default True, for images); False keeps them as they
            are, for attributions (signed, any scale) of the same layout.

    Returns:
        numpy array (N, H, W, C), float32; ``result[i]`` is one HWC image (or attribution map).
    """
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ShapeError(describe("images", "of shape (N, H, W, C) or (N, C, H, W)", f"shape {array.shape}", raw=True))
    if array.shape[-1] not in (1, 3):
        if array.shape[1] not in (1, 3):
            raise ShapeError(describe("images", "images with 1 or 3 channels (first or last axis)",
                                      f"shape {array.shape}", raw=True))
        array = array.transpose(0, 2, 3, 1)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    return np.clip(array, 0.0, 1.0) if clip else array


def mask_from_attribution(attr: ArrayLike, k: int = 1, per_item: bool = False, *, absolute: bool = False,
                          has_batch: Optional[bool] = None) -> torch.Tensor:
    """A bool mask selecting the k units with the largest attribution.

    Args:
        attr: a layer attribution, e.g. from ``LayerConductance``: (B, C, H, W) / (B, C) with a
            batch axis, or (C, H, W) / (C,) without.
        k: number of units to select, 1 <= k <= number of units.
        per_item: False: average over the batch and return one mask of the feature shape;
            True: one mask per item, (B, *feature shape), each with k units.
        absolute: rank by |attribution| (averaged over the batch after taking |.|) instead of the
            signed value.
        has_batch: whether ``attr`` has a batch axis; default: True for 2-D and 4-D input.

    Returns:
        bool tensor of the feature shape (or (B, *shape) with ``per_item``), k True per mask.
    """
    tensor = attr.detach().cpu() if isinstance(attr, torch.Tensor) else torch.as_tensor(np.asarray(attr))
    tensor = tensor.to(torch.float64)
    if tensor.ndim == 0:
        raise ShapeError(describe("attr", "a layer attribution with a feature shape", "a 0-d value", raw=True))
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(describe("attr", "finite everywhere", "NaN or infinite values", raw=True))
    if has_batch is None:
        has_batch = tensor.ndim in (2, 4)
    if absolute:
        tensor = tensor.abs()
    if not has_batch:
        if per_item:
            raise ConfigError(describe("per_item", "False for an attribution without a batch axis", per_item))
        scores = tensor[None]
    else:
        scores = tensor if per_item else tensor.mean(0, keepdim=True)
    n_units = scores[0].numel()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_units:
        raise ConfigError(describe("k", f"an int in [1, {n_units}]", k))
    flat = scores.reshape(scores.shape[0], -1)
    top = flat.topk(int(k), dim=1).indices
    mask = torch.zeros(flat.shape, dtype=torch.bool).scatter_(1, top, True).reshape(scores.shape)
    return mask if per_item else mask[0]
