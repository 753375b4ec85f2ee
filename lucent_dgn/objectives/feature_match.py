"""``feature_match``: icnn's feature-matching loss (Shen et al. 2019) as a Lucent ``Objective``.

Feature inversion reconstructs an image whose features match target features: those of a real
image (:func:`lucent_dgn.features_of`) or features decoded from brain activity. For target layers
``l = 1..L`` with activations ``a_l`` (B, *F_l) of the current images, targets ``t_l`` (one shared
by every item, or one per item), binary masks ``m_l`` selecting units (all units by default) and
layer weights ``w_{l,b}``, the loss of batch item ``b`` is

    L_b = sum_l  w_{l,b} * D(a_{l,b}, t_{l,b})

and the objective's value is ``sum_b L_b`` (a loss to minimise, as every lucent_dgn objective).
``D`` runs over the ``K`` units the mask selects for that item:

=========  =====================================================================  ==================
metric     D                                                                      reduction="mean"
=========  =====================================================================  ==================
``mse``    ``sum_k (a_k - t_k)^2``  (bdpy's ``MSELoss(reduction='sum')``,        divided by ``K``
           icnn's ``L2_loss``: a *sum* of squared errors, not a mean)
``inner``  ``- sum_k a_k t_k``  (icnn's ``inner_loss``)                           divided by ``K``
``corr``   ``1 - r`` with Pearson's ``r = sum_k (a_k - mean a)(t_k - mean t) /    (scale-free; no
           (||a - mean a|| * ||t - mean t||)``, in [0, 2], 0 = perfectly          reduction)
           correlated
=========  =====================================================================  ==================

Layer weights ``w_{l,b}``:

* ``None`` or ``"equal"`` (default): ``1 / L`` for every layer -- bdpy's ``icnn.reconstruct`` and
  icnn's ``reconstruct_image`` default (ones normalised to sum to 1).
* ``"inverse_norm"``: ``(1 / ||t_{l,b}||^2) / sum_l' (1 / ||t_{l',b}||^2)`` -- the inverse squared
  norm of each layer's target, normalised to sum to 1 per item, as the example scripts of icnn
  (``examples/recon_img_from_*_feature_icnn_*.py``, the code of Shen et al. 2019) weight them. The
  norm is taken over the selected units (icnn's scripts use masks of all ones, so it is the same).
* a mapping ``{layer: weight}``: used as given, like bdpy and icnn (no normalisation); every
  target layer needs a weight, and a weight for a layer without a target is an error.

Each layer is one term built with :func:`~lucent_dgn.objectives.item_objective`: per-item losses
are declared (not inferred), so batches work with per-item optimizers (L-BFGS-B keeps one history
per item) and each item's image equals a one-item render; and each layer's weighted loss is
recorded per step (``result.activation_histories["feature_match:<layer>"]``).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from lucent.optvis.objectives import Objective
from torch import nn

from ..errors import ConfigError, LayerNotFoundError, MaskError, ShapeError, describe
from ..layers import layer_shapes, resolve_layer
from ._access import item_objective, read_activation, report_activation
from .masks import as_bool_mask

__all__ = ["feature_match", "METRICS", "LAYER_WEIGHT_RULES", "layer_weights_for"]

METRICS = ("mse", "inner", "corr")
REDUCTIONS = ("sum", "mean")
LAYER_WEIGHT_RULES = ("equal", "inverse_norm")
_EPS = 1e-12


# ---------------------------------------------------------------------------------- validation
def _as_target(layer: str, value: Any) -> torch.Tensor:
    """One target as a real floating CPU tensor (float32 unless it is float64); finite everywhere."""
    arg = f"targets[{layer!r}]"
    try:
        tensor = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(describe(arg, "an array of numbers", type(value).__name__)) from exc
    if tensor.dtype == torch.bool or tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ConfigError(describe(arg, "an array of real numbers", f"dtype {tensor.dtype}", raw=True))
    if tensor.ndim == 0 or tensor.numel() == 0:
        raise ShapeError(describe(arg, "an array of the layer's feature shape, e.g. (C, H, W) or (C,)",
                                  f"shape {tuple(tensor.shape)}", raw=True))
    if tensor.dtype != torch.float64:
        tensor = tensor.float()
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        n_nan = int(torch.isnan(tensor).sum())
        what = f"{n_nan} NaN" + (f" and {int(bad.sum()) - n_nan} infinite" if int(bad.sum()) > n_nan else "")
        raise ConfigError(describe(arg, "finite everywhere", f"{what} value(s) of {tensor.numel()}", raw=True,
                                   hint="Decoded features with missing units can be excluded with `masks`."))
    return tensor


def _check_keys(arg: str, given: Mapping[str, Any], targets: Mapping[str, Any], what: str) -> None:
    extra = [k for k in given if k not in targets]
    if extra:
        raise ConfigError(describe(arg, f"{what} only for layers with a target ({', '.join(map(repr, targets))})",
                                   f"{what} for {', '.join(map(repr, extra))}", raw=True,
                                   hint="Add a target for that layer or remove the entry."))


def _layer_weights(layer_weights: Any, targets: Mapping[str, Any]) -> Union[str, Dict[str, float]]:
    if layer_weights is None:
        return "equal"
    if isinstance(layer_weights, str):
        if layer_weights not in LAYER_WEIGHT_RULES:
            raise ConfigError(describe("layer_weights", "None, 'equal', 'inverse_norm' or a mapping {layer: weight}",
                                       layer_weights))
        return layer_weights
    if not isinstance(layer_weights, Mapping):
        raise ConfigError(describe("layer_weights", "None, 'equal', 'inverse_norm' or a mapping {layer: weight}",
                                   type(layer_weights).__name__))
    _check_keys("layer_weights", layer_weights, targets, "a weight")
    missing = [k for k in targets if k not in layer_weights]
    if missing:
        raise ConfigError(describe("layer_weights", "one weight for every target layer",
                                   f"no weight for {', '.join(map(repr, missing))}", raw=True,
                                   hint="Give every layer a weight, or use 'equal' / 'inverse_norm'."))
    out = {}
    for key, value in layer_weights.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        elif isinstance(value, np.ndarray) and value.size == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ConfigError(describe(f"layer_weights[{key!r}]", "a finite number >= 0", value))
        out[key] = float(value)
    return out


# ------------------------------------------------------------------------------- one layer
class _Bound(NamedTuple):
    """What one layer needs at one activation shape: targets (R, N') with R = 1 or B rows, over the
    selected units when the mask is shared (``index``), else over all N units with a (B, N) mask."""

    index: Optional[torch.Tensor]   # flat indices of a shared mask's units (K,), or None
    mask: Optional[torch.Tensor]    # per-item mask (B, N) float, or None
    count: torch.Tensor             # selected units per item (B,)
    target: torch.Tensor            # (R, N') targets over the units used
    centred: Optional[torch.Tensor]  # corr: centred targets (R, N') (zero outside a per-item mask)
    norm: Optional[torch.Tensor]    # corr: ||centred|| per row (R,)
    sq_norm: torch.Tensor           # ||target over selected units||^2 per item (B,)


class _Layer:
    """One target layer: its target, optional mask, and the evaluation of D per item."""

    def __init__(self, key: str, target: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        self.key = key
        self.target = target
        self.mask = mask
        self._cache: Dict[Any, _Bound] = {}

    # -- shapes ------------------------------------------------------------------------------
    @staticmethod
    def _rows(t: torch.Tensor, feature: Tuple[int, ...], batch: int) -> Optional[torch.Tensor]:
        """``t`` as (R, *feature) with R = 1 (shared) or ``batch``; None when it has neither shape."""
        if tuple(t.shape) == feature:
            return t.unsqueeze(0)
        if t.ndim == len(feature) + 1 and tuple(t.shape[1:]) == feature and t.shape[0] in (1, batch):
            return t
        return None

    def _target_rows(self, feature: Tuple[int, ...], batch: int) -> torch.Tensor:
        """The target as (R, *feature) with R = 1 (shared) or ``batch``; ShapeError otherwise."""
        rows = self._rows(self.target, feature, batch)
        if rows is not None:
            return rows
        rule = (f"the feature shape of layer {self.key!r}, {feature}, or one target per batch item, "
                f"{(batch,) + feature} (batch size {batch})")
        hint = "Targets from lucent_dgn.features_of(model, image, layers) have the right shape."
        raise ShapeError(describe(f"targets[{self.key!r}]", rule, f"shape {tuple(self.target.shape)}", hint, raw=True))

    def _mask_rows(self, feature: Tuple[int, ...], batch: int) -> Optional[torch.Tensor]:
        """The mask as (R, *feature), or None without a mask; MaskError for another shape."""
        if self.mask is None:
            return None
        rows = self._rows(self.mask, feature, batch)
        if rows is not None:
            return rows
        rule = (f"the feature shape of layer {self.key!r}, {feature}, or one mask per batch item, "
                f"{(batch,) + feature} (batch size {batch})")
        raise MaskError(describe(f"masks[{self.key!r}]", rule, f"shape {tuple(self.mask.shape)}", raw=True))

    def bind(self, feature: Tuple[int, ...], batch: int, metric: str) -> _Bound:
        """Check the target (and mask) against ``feature`` and ``batch``; prepare CPU tensors."""
        key = (tuple(feature), batch, metric)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._bind(tuple(feature), batch, metric)
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def bound_like(self, act: torch.Tensor, metric: str) -> _Bound:
        """:meth:`bind` for activations ``act`` (B, *feature), on their device and dtype."""
        key = (tuple(act.shape), metric, act.device, act.dtype)
        hit = self._cache.get(key)
        if hit is None:
            cpu = self.bind(tuple(act.shape[1:]), act.shape[0], metric)
            hit = _Bound(*[None if v is None else v.to(act.device) if v is cpu.index else
                           v.to(act.device, act.dtype) for v in cpu])
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _bind(self, feature: Tuple[int, ...], batch: int, metric: str) -> _Bound:
        n = int(np.prod(feature, dtype=np.int64))
        target = self._target_rows(feature, batch).reshape(-1, n)
        mask = self._mask_rows(feature, batch)
        index, mask_f = None, None
        if mask is None:
            count = torch.full((batch,), float(n), dtype=torch.float64)
        else:
            mask = mask.reshape(mask.shape[0], n)
            count = mask.sum(1).double().expand(batch).clone()
            if not bool((count > 0).all()):
                empty = torch.nonzero(count == 0).flatten().tolist()
                raise MaskError(describe(f"masks[{self.key!r}]", "a mask selecting at least one unit of every "
                                         "batch item", f"no unit for item(s) {empty[:10]}", raw=True))
            if mask.shape[0] == 1:
                index = mask[0].nonzero().flatten()
                target = target[:, index]
            else:
                mask_f = mask.to(target.dtype)
        sq_norm = self._sq_norm(target, mask_f).expand(batch).clone()
        centred = norm = None
        if metric == "corr":
            centred, norm = self._centre(target, mask_f, count if mask_f is not None else None)
            scale = (target if mask_f is None else target * mask_f).abs().amax(1)
            flat = torch.nonzero(norm <= 1e-6 * scale + _EPS).flatten().tolist()
            if flat:
                got = f"a constant target for item(s) {flat[:10]}" if centred.shape[0] > 1 else "a constant target"
                raise ConfigError(describe(f"targets[{self.key!r}]", "not constant over the selected units "
                                           "(metric='corr' needs variation)", got, raw=True,
                                           hint="Use metric='mse' or select more units."))
        return _Bound(index, mask_f, count, target, centred, norm, sq_norm)

    @staticmethod
    def _sq_norm(target: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        t = target if mask is None else target * mask
        return (t.double() ** 2).sum(1)

    @staticmethod
    def _centre(target: torch.Tensor, mask: Optional[torch.Tensor], count: Optional[torch.Tensor]):
        if mask is None:
            centred = target - target.mean(1, keepdim=True)
        else:
            mean = (target * mask).sum(1, keepdim=True) / count.to(target.dtype)[:, None]
            centred = (target - mean) * mask
        return centred, centred.norm(dim=1)

    # -- evaluation --------------------------------------------------------------------------
    def distance(self, act: torch.Tensor, metric: str, reduction: str) -> torch.Tensor:
        """D per item (B,) for activations ``act`` (B, *feature)."""
        batch = act.shape[0]
        b = self.bound_like(act, metric)
        a = act.reshape(batch, -1)
        if b.index is not None:
            a = a[:, b.index]
        if metric == "mse":
            d = a - b.target
            if b.mask is not None:
                d = d * b.mask
            value = (d * d).sum(1)
        elif metric == "inner":
            p = a * b.target
            if b.mask is not None:
                p = p * b.mask
            value = -p.sum(1)
        else:  # corr
            if b.mask is None:
                ac = a - a.mean(1, keepdim=True)
            else:
                mean = (a * b.mask).sum(1, keepdim=True) / b.count.to(a.dtype)[:, None]
                ac = (a - mean) * b.mask
            r = (ac * b.centred).sum(1) / (ac.norm(dim=1).clamp_min(_EPS) * b.norm)
            return 1.0 - r
        if reduction == "mean":
            value = value / b.count.to(value.dtype)
        return value


# ------------------------------------------------------------------------------- objective
def layer_weights_for(rule: Union[str, Mapping[str, float]], sq_norms: Mapping[str, torch.Tensor]
                      ) -> Dict[str, torch.Tensor]:
    """Layer weights per item.

    Args:
        rule: ``"equal"``, ``"inverse_norm"`` or a mapping {layer: weight} (used as given).
        sq_norms: layer -> (B,) squared norm of the target over the selected units (float64).

    Returns:
        layer -> (B,) float64 weights (``"equal"``: 1/L; ``"inverse_norm"``: 1/||t||^2 normalised to
        sum to 1 over layers, per item).

    Raises:
        ConfigError: ``"inverse_norm"`` with a target that is zero over its selected units.
    """
    keys = list(sq_norms)
    if isinstance(rule, Mapping):
        return {k: torch.full_like(sq_norms[k], float(rule[k])) for k in keys}
    if rule == "equal":
        return {k: torch.full_like(sq_norms[k], 1.0 / len(keys)) for k in keys}
    for k in keys:
        zero = torch.nonzero(sq_norms[k] <= 0).flatten().tolist()
        if zero:
            raise ConfigError(describe("layer_weights", "'inverse_norm' only with targets that are not all zero",
                                       f"a zero target for layer {k!r}" + (f", item(s) {zero[:10]}" if
                                                                           len(sq_norms[k]) > 1 else ""), raw=True,
                                       hint="Use 'equal' or explicit weights."))
    inverse = {k: 1.0 / sq_norms[k] for k in keys}
    total = sum(inverse.values())
    return {k: v / total for k, v in inverse.items()}


class _FeatureMatch:
    """The objective's functions: per-layer, per-item weighted losses."""

    def __init__(self, layers: List[_Layer], weights: Union[str, Dict[str, float]], metric: str,
                 reduction: str) -> None:
        self.layers = layers
        self.weights = weights
        self.metric = metric
        self.reduction = reduction
        self._weight_cache: Dict[Any, Dict[str, torch.Tensor]] = {}

    def _weights(self, bounds: Dict[str, _Bound], batch: int, device, dtype) -> Dict[str, torch.Tensor]:
        key = (tuple((k, tuple(b.target.shape)) for k, b in bounds.items()), batch, device, dtype)
        hit = self._weight_cache.get(key)
        if hit is None:
            sq = {k: b.sq_norm.double().cpu() for k, b in bounds.items()}
            hit = {k: w.to(device=device, dtype=dtype) for k, w in layer_weights_for(self.weights, sq).items()}
            if len(self._weight_cache) > 8:
                self._weight_cache.clear()
            self._weight_cache[key] = hit
        return hit

    def check(self, shapes: Mapping[str, Tuple[int, ...]], batch: int) -> Dict[str, torch.Tensor]:
        """Bind every layer to ``shapes`` (key -> feature shape) and ``batch``; returns the weights
        per layer (B,). Raises the same errors as the first evaluation would."""
        bounds = {layer.key: layer.bind(tuple(shapes[layer.key]), batch, self.metric) for layer in self.layers}
        return self._weights(bounds, batch, None, torch.float64)

    def _layer_weights(self, acts: Mapping[str, torch.Tensor], like: torch.Tensor) -> Dict[str, torch.Tensor]:
        bounds = {layer.key: layer.bound_like(acts[layer.key], self.metric) for layer in self.layers}
        return self._weights(bounds, like.shape[0], like.device, like.dtype)

    def layer_losses(self, acts: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Weighted per-item losses (B,) of each layer, from activations keyed like the targets."""
        out = {layer.key: layer.distance(acts[layer.key], self.metric, self.reduction) for layer in self.layers}
        weights = self._layer_weights(acts, next(iter(out.values())))
        return {k: weights[k] * v for k, v in out.items()}

    def term(self, index: int) -> Callable[[Any], torch.Tensor]:
        """``T -> (B,)``: the weighted per-item loss of layer ``index``, recorded as its activation."""
        layer = self.layers[index]
        reads_all = self.weights == "inverse_norm"  # the weights need every layer's target (bound to its shape)

        def func(T: Any) -> torch.Tensor:
            act = read_activation(T, layer.key)
            loss = layer.distance(act, self.metric, self.reduction)
            if isinstance(self.weights, str) and not reads_all:
                weight = 1.0 / len(self.layers)
            elif not reads_all:
                weight = self.weights[layer.key]
            else:
                acts = {other.key: act if other is layer else read_activation(T, other.key) for other in self.layers}
                weight = self._layer_weights(acts, loss)[layer.key]
            loss = weight * loss
            report_activation(T, loss.detach())
            return loss
        return func


def _normalise_targets(targets: Any) -> Dict[str, torch.Tensor]:
    if not isinstance(targets, Mapping) or not targets:
        raise ConfigError(describe("targets", "a non-empty mapping {layer name: array}", type(targets).__name__,
                                   hint="Use lucent_dgn.features_of(model, image, layers) or "
                                        "lucent_dgn.load_features(path)."))
    out = {}
    for key, value in targets.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(describe("targets", "keyed by layer names (non-empty str)", key))
        out[key] = _as_target(key, value)
    return out


def _normalise_masks(masks: Any, targets: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    if masks is None:
        return {}
    if not isinstance(masks, Mapping):
        raise MaskError(describe("masks", "None or a mapping {layer name: mask}", type(masks).__name__))
    _check_keys("masks", masks, targets, "a mask")
    out = {}
    for key, value in masks.items():
        try:
            out[key] = as_bool_mask(value)
        except MaskError as err:
            raise MaskError(f"masks[{key!r}]: {err}") from None
    return out


def _description(layers: Sequence[str], weights: Any, metric: str, reduction: str, masks: Mapping) -> str:
    w = weights if isinstance(weights, str) else "{" + ", ".join(f"{k}: {v:g}" for k, v in weights.items()) + "}"
    parts = [", ".join(layers), metric, f"weights={w}"]
    if reduction != "sum":
        parts.append(reduction)
    if masks:
        parts.append("masked " + ", ".join(masks))
    return "Feature Match [" + "; ".join(parts) + "]"


def feature_match(targets: Mapping[str, Any], layer_weights: Any = None, masks: Optional[Mapping[str, Any]] = None,
                  metric: str = "mse", *, reduction: str = "sum") -> Objective:
    """icnn's feature-matching loss over several layers (see the module docstring for the formulas).

    Args:
        targets: layer name -> target features: one target with the layer's feature shape
            (C, H, W) or (C,) shared by every batch item, or one per item (B, C, H, W) / (B, C)
            (a leading axis of 1 is shared too). Numpy arrays, tensors or nested lists; finite.
            Names are dotted paths (``"features.8"``) or Lucent underscore names.
        layer_weights: None / ``"equal"`` (default, 1/L each, bdpy's and icnn's default),
            ``"inverse_norm"`` (1/||t||^2 normalised to sum to 1, icnn's example scripts), or a
            mapping {layer: weight >= 0} used as given.
        masks: optional layer -> binary mask selecting the units that count: the layer's feature
            shape, or one mask per item (B, ...). Layers without a mask use every unit.
        metric: ``"mse"`` (default: sum of squared errors, bdpy/icnn), ``"inner"`` (minus the inner
            product) or ``"corr"`` (1 - Pearson correlation).
        reduction: ``"sum"`` (default, bdpy/icnn) or ``"mean"`` (divide ``mse``/``inner`` by the
            number of selected units; ``corr`` is already scale-free).

    Returns:
        A ``lucent.optvis.objectives.Objective`` (composes with ``+ - *``, runs under Lucent's
        ``render_vis``) whose value is the loss summed over the batch. Attributes: ``layers``
        (the target names), ``targets`` (tensors), ``masks``, ``metric``, ``reduction``,
        ``layer_weights`` (the rule or mapping), ``layer_losses(acts) -> {layer: (B,)}`` (weighted
        per-item losses from a dict of activations such as :func:`lucent_dgn.features_of`
        returns), ``item_losses(acts) -> (B,)`` (their sum), and ``check(model, input_shape,
        batch=1)``, which validates the targets against the model before any work. Each layer is
        one per-item term (:func:`lucent_dgn.objectives.item_objective`) named
        ``"feature_match:<layer>"``; in lucent_dgn's render loop it records its weighted per-item
        loss as the term's activation, so ``result.activation_histories["feature_match:relu3"]``
        is that layer's loss per step.

    Raises:
        ConfigError: targets that are not a non-empty mapping of finite real arrays (NaN or inf
            named), a bad ``layer_weights`` (unknown rule, negative or non-finite weight, a weight
            for a layer without a target, a target layer without a weight), an unknown ``metric``
            or ``reduction``.
        MaskError: a non-binary mask, or a mask for a layer without a target.
        ShapeError / LayerNotFoundError (from :meth:`check` or the first evaluation): a target
            whose shape does not fit its layer, or a layer the model does not have.
    """
    if metric not in METRICS:
        raise ConfigError(describe("metric", "one of " + ", ".join(map(repr, METRICS)), metric))
    if reduction not in REDUCTIONS:
        raise ConfigError(describe("reduction", "one of " + ", ".join(map(repr, REDUCTIONS)), reduction))
    target_t = _normalise_targets(targets)
    weights = _layer_weights(layer_weights, target_t)
    mask_t = _normalise_masks(masks, target_t)
    layers = [_Layer(key, t, mask_t.get(key)) for key, t in target_t.items()]
    func = _FeatureMatch(layers, weights, metric, reduction)
    terms = [item_objective(func.term(i), f"feature_match:{layer.key}",
                            _description([layer.key], weights, metric, reduction, mask_t))
             for i, layer in enumerate(layers)]
    objective = terms[0] if len(terms) == 1 else Objective.sum(terms)
    objective.description = _description(list(target_t), weights, metric, reduction, mask_t)
    objective.layers = tuple(target_t)
    objective.targets = target_t
    objective.masks = mask_t
    objective.metric = metric
    objective.reduction = reduction
    objective.layer_weights = weights
    objective.layer_losses = func.layer_losses
    objective.item_losses = lambda acts: sum(func.layer_losses(acts).values())

    def check(model: nn.Module, input_shape: Sequence[int], batch: int = 1) -> Dict[str, torch.Tensor]:
        """Validate the targets (and masks) against ``model`` for inputs of ``input_shape``
        ((C, H, W) or (N, C, H, W)) and ``batch`` items; returns the layer weights (B,) per layer.

        Raises LayerNotFoundError (unknown layer, with close names; or a module forward() never
        calls), ShapeError (target shape), MaskError (mask shape, empty mask), ConfigError
        (constant target with ``corr``, zero target with ``inverse_norm``)."""
        return check_targets(model, objective, input_shape, batch)

    objective.check = check
    objective._feature_match = func
    return objective


def check_targets(model: nn.Module, objective: Objective, input_shape: Sequence[int], batch: int = 1
                  ) -> Dict[str, torch.Tensor]:
    """See ``feature_match(...).check``."""
    func: _FeatureMatch = objective._feature_match
    names = {layer.key: resolve_layer(model, layer.key, arg=f"targets[{layer.key!r}]")[0] for layer in func.layers}
    seen: Dict[str, str] = {}
    for key, name in names.items():
        if name in seen:
            raise ConfigError(describe("targets", "one target per layer", f"{seen[name]!r} and {key!r} both name "
                                       f"layer {name!r}", raw=True))
        seen[name] = key
    shapes = layer_shapes(model, list(names.values()), input_shape)
    missing = [k for k, n in names.items() if n not in shapes]
    if missing:
        raise LayerNotFoundError(describe(f"targets[{missing[0]!r}]", "a layer that runs in the model's forward pass",
                                          names[missing[0]], hint="The module exists but forward() does not call it."))
    return func.check({k: shapes[n] for k, n in names.items()}, batch)
