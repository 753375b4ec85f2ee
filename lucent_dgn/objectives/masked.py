"""``masked_units``: cnnpref's objective as a Lucent ``Objective``.

The value is the loss (to minimise, as in Lucent)

    L = - sum_{b, i : mask[b, i]} weight[b, i] * f[b, i]

over the raw activations ``f`` of the selected units, summed over the batch too (cnnpref §0.1),
or that sum divided by the number of selected (item, unit) pairs with ``reduction="mean"``.
The weight multiplies the whole map before masking (cnnpref Q11), so unit ``i`` counts with
``weight[i]``.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np
import torch
from lucent.optvis.objectives import Objective
from torch import nn

from ..errors import ConfigError, MaskError, ShapeError, describe
from ..layers import LayerRef
from ._access import item_objective, layer_label, read_activation, report_activation
from .masks import MaskSpec, as_bool_mask

__all__ = ["masked_units", "REDUCTIONS"]

REDUCTIONS = ("sum", "mean")


class _Plan(NamedTuple):
    """What one activation shape needs: flat indices of the selected units (K,), their weights
    (K,) or None for a unit weight, the batch item of each (K,), and the count per item (B,)."""

    index: torch.Tensor
    weight: Optional[torch.Tensor]
    item: torch.Tensor
    per_item: torch.Tensor


def _gather_plan(mask: torch.Tensor, weight: torch.Tensor, shape: Tuple[int, ...],
                 per_item: torch.Tensor) -> _Plan:
    """Index the selected units once, so each evaluation reads K values instead of the whole map
    (a masked ``where`` over the full map costs more than a conv1 step's own work at batch 8)."""
    index = mask.expand(shape).reshape(-1).nonzero().flatten()
    if weight.numel() == 1:
        w = None if float(weight) == 1.0 else weight.reshape(()).expand(index.numel())
    else:
        w = weight.expand(shape).reshape(-1)[index]
    feature = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    return _Plan(index, w, torch.div(index, feature, rounding_mode="floor"), per_item)


def _as_weight(weight: Any) -> torch.Tensor:
    """Validate ``weight`` (scalar or array) and return it as a real CPU tensor."""
    try:
        tensor = weight.detach().cpu() if isinstance(weight, torch.Tensor) else torch.as_tensor(np.asarray(weight))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(describe("weight", "a number or an array of numbers", weight)) from exc
    if tensor.is_complex():
        raise ConfigError(describe("weight", "real-valued", tensor.dtype))
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.int64)
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ConfigError(describe("weight", "finite everywhere", "NaN or infinite values", raw=True))
    return tensor


def _check_args(layer: Any, reduction: Any, batch: Any) -> None:
    if not isinstance(layer, (str, nn.Module)):
        raise TypeError(describe("layer", "an nn.Module or a layer name (str)", layer))
    if reduction not in REDUCTIONS:
        raise ConfigError(describe("reduction", "one of " + ", ".join(map(repr, REDUCTIONS)), reduction))
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 0):
        raise ConfigError(describe("batch", "None or a batch index >= 0", batch))


class _MaskedUnits:
    """The objective function ``T -> loss`` with its mask/weight cache."""

    def __init__(self, layer: LayerRef, mask: torch.Tensor, weight: torch.Tensor, reduction: str,
                 batch: Optional[int]) -> None:
        self.layer = layer
        self.mask = mask
        self.weight = weight
        self.reduction = reduction
        self.batch = None if batch is None else int(batch)
        self._cache: Dict[Any, _Plan] = {}

    def _shape_error(self, act_shape: Tuple[int, ...], full_batch: int, reason: Optional[str] = None) -> MaskError:
        feature = act_shape[1:]
        rule = (f"the feature shape of layer {layer_label(self.layer)!r}, {feature}, or one mask per batch "
                f"item, {(full_batch,) + feature} (batch size {full_batch})")
        spec = getattr(self.mask, "mask_spec", None)
        got = f"shape {tuple(self.mask.shape)}" + (f" from {spec}" if spec is not None else "")
        if reason is None:  # a spec'd mask that resolved but does not fit differs in its batch axis
            reason = "" if spec is not None else _size_hint(tuple(self.mask.shape), feature)
        return MaskError(describe("mask", rule, got, reason, raw=True))

    def _resolve(self, act_shape: Tuple[int, ...], full_batch: int) -> torch.Tensor:
        """The mask for this feature shape: a builder's mask made for another height/width is
        rebuilt from its :class:`~lucent_dgn.objectives.masks.MaskSpec`; any other mask is kept."""
        spec = getattr(self.mask, "mask_spec", None)
        feature = act_shape[1:]
        if not isinstance(spec, MaskSpec) or spec.shape == feature:
            return self.mask
        reason = spec.mismatch(feature)
        if reason is not None:
            raise self._shape_error(act_shape, full_batch, reason)
        return spec.resolve(feature)

    def _select_rows(self, tensor: torch.Tensor, ndim: int, full_batch: int) -> torch.Tensor:
        """With ``batch=i``, keep row i of a per-item (B, ...) tensor."""
        if self.batch is not None and tensor.ndim == ndim and tensor.shape[0] == full_batch > 1:
            return tensor[self.batch:self.batch + 1]
        return tensor

    def _prepare(self, act: torch.Tensor, full_batch: int) -> _Plan:
        shape = tuple(act.shape)
        mask = self._select_rows(self._resolve(shape, full_batch), act.ndim, full_batch)
        if mask.ndim == act.ndim - 1:
            ok = tuple(mask.shape) == shape[1:]
        else:
            ok = mask.ndim == act.ndim and tuple(mask.shape) == shape
        if not ok:
            raise self._shape_error(shape, full_batch)
        per_item = mask.expand(shape).flatten(1).sum(1)
        if not bool((per_item > 0).all()):
            empty = torch.nonzero(per_item == 0).flatten().tolist()
            raise MaskError(describe("mask", "a mask selecting at least one unit of every batch item",
                                     f"no unit for item(s) {empty[:10]}", raw=True))
        weight = self._select_rows(self.weight, act.ndim, full_batch)
        try:
            fits = torch.broadcast_shapes(tuple(weight.shape), shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ShapeError(describe("weight", f"a scalar or an array broadcastable to the feature shape "
                                      f"{shape[1:]} of layer {layer_label(self.layer)!r}",
                                      f"shape {tuple(self.weight.shape)}", raw=True))
        return _gather_plan(mask.to(act.device), weight.to(act.device, act.dtype), shape,
                            per_item.to(act.device, act.dtype))

    def prepared(self, act: torch.Tensor, full_batch: int) -> _Plan:
        key = (tuple(act.shape), full_batch, act.device, act.dtype)
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = self._prepare(act, full_batch)
        return self._cache[key]

    def __call__(self, T: Any) -> torch.Tensor:
        """Per-item losses (B,) of the full batch (with ``batch=i`` only item i is non-zero)."""
        act = read_activation(T, self.layer)
        full_batch = act.shape[0]
        if self.batch is not None:
            if self.batch >= full_batch:
                raise ConfigError(describe("batch", f"a batch index in [0, {full_batch - 1}]", self.batch))
            act = act[self.batch:self.batch + 1]
        plan = self.prepared(act, full_batch)
        selected = act.reshape(-1)[plan.index]  # only the selected units: (K,)
        weighted = selected if plan.weight is None else selected * plan.weight
        items = torch.zeros(act.shape[0], dtype=act.dtype, device=act.device).index_add(0, plan.item, weighted)
        losses = -items if self.reduction == "sum" else -items / plan.index.numel()  # K = per_item.sum()
        with torch.no_grad():
            sums = torch.zeros_like(items).index_add_(0, plan.item, selected.detach())
            report_activation(T, sums / plan.per_item)
        if self.batch is not None and full_batch > 1:
            losses = torch.zeros(full_batch, dtype=act.dtype, device=act.device).index_copy(
                0, torch.tensor([self.batch], device=act.device), losses)
        return losses


def _size_hint(mask_shape: Tuple[int, ...], feature: Tuple[int, ...]) -> str:
    """Advice for a plain mask whose channels fit but whose height/width do not."""
    own = mask_shape[-len(feature):] if len(mask_shape) in (len(feature), len(feature) + 1) else ()
    if len(feature) != 3 or len(own) != 3 or own[0] != feature[0] or own[1:] == feature[1:]:
        return ""
    return ("The map's height and width follow the input size: feed the size the mask was made for (Lucent's "
            "render_vis upsamples inputs under 224 px to 224 unless fixed_image_size is given, and its standard "
            "transforms rescale), or build the mask with channel_mask, unit_mask, unit_masks or "
            "region_mask(relative=True), which resolve against the map the objective sees.")


def _description(layer: LayerRef, mask: torch.Tensor, weight: torch.Tensor, reduction: str,
                 batch: Optional[int]) -> str:
    weight_text = f"{float(weight):g}" if weight.ndim == 0 else f"array{tuple(weight.shape)}"
    parts = [layer_label(layer), f"{int(mask.sum())} units", f"weight={weight_text}", reduction]
    if batch is not None:
        parts.append(f"batch={batch}")
    return "Masked Units [" + ", ".join(parts) + "]"


def masked_units(layer: LayerRef, mask: Any, weight: Any = 1.0, reduction: str = "sum",
                 batch: Optional[int] = None) -> Objective:
    """cnnpref's objective: minus the (weighted) sum of the selected units' raw activations.

    Args:
        layer: the layer: an ``nn.Module``, a dotted path (``"features.8"``) or Lucent's
            underscore name (``"features_8"``). Under Lucent's ``render_vis`` the module must be
            one Lucent hooks; in lucent_dgn's render loop any reference works.
        mask: which units: (C, H, W) or (C,) shared by every batch item, or (B, C, H, W) / (B, C)
            with one mask per item (every item must select at least one unit). Bool or {0, 1}
            numbers; torch tensor, numpy array or nested lists. A mask from
            :func:`~lucent_dgn.objectives.channel_mask`, :func:`~lucent_dgn.objectives.unit_mask`,
            :func:`~lucent_dgn.objectives.unit_masks` or :func:`~lucent_dgn.objectives.region_mask`
            resolves against the map the objective actually sees when its height/width differ
            from the shape it was built for (channels stay, default positions are the map's
            centre, ``relative=True`` positions scale; see :func:`~lucent_dgn.objectives.resolve_mask`),
            e.g. under Lucent's ``render_vis``, whose transforms change the input size. Any other
            mask must fit the layer exactly.
        weight: scalar (default 1.0) or array broadcastable to the layer's output; it multiplies
            the whole map before masking (cnnpref Q11). Must be finite.
        reduction: ``"sum"`` (default, cnnpref) or ``"mean"`` (divide by the number of selected
            (item, unit) pairs).
        batch: None (every item) or an item index: the objective then reads only that item, as
            Lucent's ``batch=`` argument does; a per-item mask or weight is cut to that item's row.

    Returns:
        A ``lucent.optvis.objectives.Objective`` (composes with ``+ - *`` and runs under Lucent's
        ``render_vis``) whose value is a scalar loss. Its attributes ``layers`` (``(layer,)``),
        ``mask`` (bool tensor), ``weight`` (tensor), ``reduction`` and ``batch`` describe it.
        It declares per-item losses (:func:`~lucent_dgn.objectives.item_objective`), and in
        lucent_dgn's render loop it records its activation under the name ``"masked_units"``:
        per item (B,), the signed mean raw activation of the item's selected units (cnnpref
        prints the mean of |f|; the signed mean keeps the direction visible). Gradients use the
        raw, pre-ReLU values.

    Raises:
        MaskError: a mask that is not binary (weights go in ``weight``), has NaN/inf, selects no
            unit, or (at the first evaluation on a map of its size) neither fits the layer's
            feature shape nor resolves against it (another channel count, absolute positions on
            an axis whose size changed, an array of another height/width).
        ConfigError: an unknown ``reduction``, a bad ``batch`` or a non-finite ``weight``.
        ShapeError: (at evaluation) a ``weight`` that does not broadcast to the layer's output.
    """
    _check_args(layer, reduction, batch)
    mask_t = as_bool_mask(mask)
    weight_t = _as_weight(weight)
    func = _MaskedUnits(layer, mask_t, weight_t, reduction, batch)
    objective = item_objective(func, name="masked_units",
                               description=_description(layer, mask_t, weight_t, reduction, batch))
    objective.layers = (layer,)
    objective.mask = mask_t
    objective.weight = weight_t
    objective.reduction = reduction
    objective.batch = func.batch
    return objective
