"""Unit masks: boolean tensors that select units of a layer.

A mask has the layer's feature shape without the batch axis, ``(C, H, W)`` for conv/pool layers
or ``(C,)`` for fully connected ones, or a leading batch axis ``(B, C, H, W)`` for one mask per
batch item. ``True`` marks a selected unit.

Index order is ``(channel, y, x)`` = ``(C, H, W)``, as in Captum's tuple selectors (Lucent's
``neuron(..., x, y)`` takes the opposite order).

**Masks that follow the map's size.** A feature map's height and width follow the input size
(Lucent's ``render_vis`` upsamples inputs under 224 px to 224, and its random scale transform
changes the size at every step). The builders here return plain bool tensors that also carry a
:class:`MaskSpec` (``mask.mask_spec``) recording how they were defined; :func:`masked_units`
resolves such a mask against the map the objective actually sees (:func:`resolve_mask`):

* a channel (:func:`channel_mask`) selects that channel at every size;
* a default position (``y``/``x`` None) is the centre ``(H // 2, W // 2)`` of the actual map, so
  :func:`unit_mask` and :func:`unit_masks` (e.g. over :func:`every_nth_channel`) follow the size;
* with ``relative=True``, positions and ranges are fractions of the map's height and width;
* integer positions and ranges are absolute: they resolve only while their axis keeps its size.

A mask without a spec (an array, or a tensor that was edited or combined after it was built) must
fit the map exactly. The channel count never changes: a different one is always an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import MaskError, ShapeError, describe

__all__ = [
    "as_bool_mask",
    "unit_mask",
    "unit_masks",
    "channel_mask",
    "region_mask",
    "every_nth_channel",
    "MaskSpec",
    "resolve_mask",
]

Shape = Union[int, Sequence[int]]
Channels = Union[int, Sequence[int]]


def _shape(shape: Shape) -> Tuple[int, ...]:
    """Validate a feature shape: (C,) or (C, H, W) of positive ints; an int C means (C,)."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        dims = tuple(int(s) for s in shape if not isinstance(s, bool) and int(s) == s)
        ok = len(dims) == len(shape) and len(dims) in (1, 3) and all(d > 0 for d in dims)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ShapeError(describe("shape", "a feature shape (C, H, W) or (C,) of positive ints, without the batch axis",
                                  shape, "Use lucent_dgn.layers.layer_shape(model, layer, input_shape)."))
    return dims


def _index(value: Any, size: int, arg: str) -> int:
    """A validated index in [0, size)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise MaskError(describe(arg, "an int", value))
    if not 0 <= int(value) < size:
        raise MaskError(describe(arg, f"in [0, {size - 1}]", int(value), "Negative indices are not accepted."))
    return int(value)


def _channel_list(channels: Channels, size: int, arg: str) -> List[int]:
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        channels = [channels]
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
        raise MaskError(describe(arg, "an int or a sequence of ints", channels))
    indices = [_index(c, size, arg) for c in channels]
    if not indices:
        raise MaskError(describe(arg, "a non-empty list of channels", channels))
    return indices


def _span(value: Optional[Sequence[int]], size: int, arg: str) -> Tuple[int, int]:
    """A half-open range (start, stop) with 0 <= start < stop <= size; None = (0, size)."""
    if value is None:
        return 0, size
    try:
        start, stop = (int(v) for v in value)
        ok = all(int(v) == v and not isinstance(v, bool) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= start < stop <= size:
        raise MaskError(describe(arg, f"a half-open range (start, stop) with 0 <= start < stop <= {size}", value))
    return start, stop


def _no_spatial(dims: Tuple[int, ...], **coords: Any) -> None:
    for name, value in coords.items():
        if value is not None and len(dims) == 1:
            raise MaskError(describe(name, "None for a layer of shape (C,)", value,
                                     "Fully connected layers have no spatial positions."))


def as_bool_mask(mask: Any, arg: str = "mask") -> torch.Tensor:
    """Validate a mask and return it as a CPU ``torch.bool`` tensor.

    Args:
        mask: a torch tensor, numpy array or nested sequence with values in {0, 1}
            (bool, int or float); shape (C,), (C, H, W) or with a batch axis.
        arg: the argument name used in error messages.

    Returns:
        The mask; it keeps the :class:`MaskSpec` of a builder's mask (``mask_spec``) as long as the
        spec still describes its values (a mask edited after it was built loses it).

    Raises:
        MaskError: values other than 0 and 1 (weights belong in ``weight``), NaN or infinite
            values, a 0-d mask, or no selected unit.
    """
    spec = getattr(mask, "mask_spec", None)
    try:
        tensor = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MaskError(describe(arg, "a tensor or array of 0/1 values", mask)) from exc
    tensor = tensor.detach().cpu()
    if tensor.ndim == 0:
        raise MaskError(describe(arg, "an array with the layer's feature shape", tensor,
                                 "Build one with lucent_dgn.objectives.unit_mask(shape, channel)."))
    if tensor.dtype != torch.bool:
        if tensor.is_complex():
            raise MaskError(describe(arg, "boolean or real-valued", tensor.dtype))
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise MaskError(describe(arg, "finite (0 or 1 everywhere)", "NaN or infinite values", raw=True))
        binary = (tensor == 0) | (tensor == 1)
        if not bool(binary.all()):
            bad = sorted({float(v) for v in tensor[~binary].flatten()[:5].tolist()})
            raise MaskError(describe(arg, "binary (bool or values in {0, 1})", f"values such as {bad}", raw=True) +
                            " Unit weights belong in `weight`, not in the mask.")
        tensor = tensor == 1
    if not bool(tensor.any()):
        raise MaskError(describe(arg, "a mask selecting at least one unit", "an empty mask (all False)", raw=True))
    if isinstance(spec, MaskSpec) and spec.describes(tensor):
        tensor.mask_spec = spec
    return tensor


def _fraction(value: Any, arg: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(value) <= 1.0:
        raise MaskError(describe(arg, "a fraction of the map in [0, 1] (relative=True)", value))
    return float(value)


def _position(value: Any, size: int, arg: str, relative: bool) -> int:
    """A row/column: None = the centre ``size // 2``; an index; or (relative) the one holding the fraction."""
    if value is None:
        return size // 2
    if relative:
        return min(int(_fraction(value, arg) * size), size - 1)
    return _index(value, size, arg)


def _range(value: Any, size: int, arg: str, relative: bool) -> Tuple[int, int]:
    """A half-open range: None = everything; indices; or (relative) the rows whose centres lie in
    ``[a, b)`` of the map (at least the one holding the midpoint)."""
    if value is None or not relative:
        return _span(value, size, arg)
    try:
        a, b = (_fraction(v, arg) for v in value)
    except (TypeError, ValueError):
        raise MaskError(describe(arg, "a pair of fractions (start, stop) with 0 <= start < stop <= 1", value)) from None
    if not a < b:
        raise MaskError(describe(arg, "a pair of fractions (start, stop) with 0 <= start < stop <= 1", value))
    start, stop = max(0, math.ceil(a * size - 0.5)), min(size, math.ceil(b * size - 0.5))
    if stop <= start:
        start = min(int((a + b) / 2 * size), size - 1)
        stop = start + 1
    return start, stop


def _absolute_axes(relative: bool, **coords: Any) -> Tuple[str, ...]:
    """The spatial axes given in absolute positions (set and not relative)."""
    if relative:
        return ()
    return tuple(name for name, value in coords.items()
                 if value is not None and not (isinstance(value, (list, tuple)) and all(v is None for v in value)))


@dataclass(frozen=True, eq=False)
class MaskSpec:
    """How a builder defined a mask, so that it can be rebuilt for a map of another height and width.

    The builders attach one to the masks they return (``mask.mask_spec``); :func:`resolve_mask`
    (and :func:`~lucent_dgn.objectives.masked_units`) use it when the map the objective sees has
    another size than ``shape``.

    Attributes:
        builder: the builder's name: ``"unit_mask"``, ``"channel_mask"``, ``"region_mask"`` or
            ``"unit_masks"``.
        shape: the feature shape the mask was built for, ``(C,)`` or ``(C, H, W)``.
        arguments: the builder's other arguments (as validated).
        absolute: the spatial axes (``"y"``, ``"x"``) given in absolute positions; the mask
            resolves only against maps whose size along those axes is unchanged.
    """

    builder: str
    shape: Tuple[int, ...]
    arguments: Dict[str, Any] = field(default_factory=dict)
    absolute: Tuple[str, ...] = ()

    def __str__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.arguments.items() if v is not None and v is not False)
        return f"{self.builder}({self.shape}{args})"

    def mismatch(self, shape: Shape) -> Optional[str]:
        """Why the mask cannot be rebuilt for the feature shape ``shape``; None when it can."""
        dims = _shape(shape)
        if len(dims) != len(self.shape):
            return (f"It was built for a layer of shape {self.shape}; masks of fully connected (C,) and "
                    "convolutional (C, H, W) layers do not convert.")
        if dims[0] != self.shape[0]:
            return (f"It selects among {self.shape[0]} channels and the layer has {dims[0]}: the channel count "
                    "must match (is it the right layer?).")
        axes = [a for a, i in (("y", 1), ("x", 2)) if len(dims) == 3 and dims[i] != self.shape[i] and a in self.absolute]
        if axes:
            return (f"Its {' and '.join(axes)} {'is' if len(axes) == 1 else 'are'} given in absolute positions of the "
                    f"{self.shape[1]}x{self.shape[2]} map, and the map here is {dims[1]}x{dims[2]}. Leave them None "
                    "(centre, or the whole range), pass relative=True with fractions in [0, 1], or feed the input size "
                    "the mask was made for (under Lucent's render_vis: fixed_image_size=...).")
        return None

    def resolve(self, shape: Shape) -> torch.Tensor:
        """The mask rebuilt for the feature shape ``shape`` (a bool tensor carrying its own spec).

        Raises:
            MaskError: when :meth:`mismatch` gives a reason (channel count, layer kind, absolute
                positions on an axis whose size changed).
        """
        dims = _shape(shape)
        reason = self.mismatch(dims)
        if reason is not None:
            raise MaskError(describe("mask", f"resolvable against the feature shape {dims}", str(self), reason, raw=True))
        return _BUILDERS[self.builder](dims, **self.arguments)

    def describes(self, mask: torch.Tensor) -> bool:
        """True when rebuilding the mask for :attr:`shape` gives exactly ``mask`` (not edited since)."""
        try:
            rebuilt = self.resolve(self.shape)
        except MaskError:
            return False
        return tuple(rebuilt.shape) == tuple(mask.shape) and bool(torch.equal(rebuilt, mask.to(torch.bool)))


def _with_spec(mask: torch.Tensor, spec: MaskSpec) -> torch.Tensor:
    mask.mask_spec = spec
    return mask


def resolve_mask(mask: torch.Tensor, shape: Shape) -> torch.Tensor:
    """The mask for a feature map of shape ``shape`` = (C, H, W) or (C,), without the batch axis.

    A mask built for that shape, or one without a :class:`MaskSpec` (an array), is returned as it
    is (the caller checks that it fits); a builder's mask built for another height/width is
    rebuilt from its spec: channels stay, default positions are the centre of the new map,
    relative positions and ranges scale with it.

    Raises:
        MaskError: a spec'd mask that cannot be rebuilt (another channel count or layer kind, or
            absolute positions on an axis whose size changed); the message says which.
    """
    spec = getattr(mask, "mask_spec", None)
    dims = _shape(shape)
    if not isinstance(spec, MaskSpec) or spec.shape == dims:
        return mask
    return spec.resolve(dims)


def unit_mask(shape: Shape, channel: int, y: Optional[float] = None, x: Optional[float] = None,
              relative: bool = False) -> torch.Tensor:
    """Select one unit.

    Args:
        shape: feature shape (C, H, W) or (C,).
        channel: channel index in [0, C).
        y: row in [0, H); default ``H // 2`` (cnnpref: ``int(55 / 2) = 27`` for AlexNet conv1),
            the centre of whatever map the mask is resolved against.
        x: column in [0, W); default ``W // 2``.
        relative: ``y`` and ``x`` are fractions in [0, 1] of the map's height and width: the unit
            is row ``min(int(y * H), H - 1)`` (0.5 = the centre) on a map of any size.

    Returns:
        bool tensor of ``shape`` with exactly one True, carrying its :class:`MaskSpec`.
    """
    dims = _shape(shape)
    _no_spatial(dims, y=y, x=x)
    mask = torch.zeros(dims, dtype=torch.bool)
    c = _index(channel, dims[0], "channel")
    if len(dims) == 1:
        mask[c] = True
    else:
        mask[c, _position(y, dims[1], "y", relative), _position(x, dims[2], "x", relative)] = True
    return _with_spec(mask, MaskSpec("unit_mask", dims, {"channel": c, "y": y, "x": x, "relative": bool(relative)},
                                     _absolute_axes(relative, y=y, x=x)))


def channel_mask(shape: Shape, channel: Channels) -> torch.Tensor:
    """Select every spatial position of one channel (or of several, given a sequence).

    Returns:
        bool tensor of ``shape``, carrying its :class:`MaskSpec` (it resolves against a map of any
        height and width with the same channel count).
    """
    dims = _shape(shape)
    mask = torch.zeros(dims, dtype=torch.bool)
    chans = _channel_list(channel, dims[0], "channel")
    mask[chans] = True
    return _with_spec(mask, MaskSpec("channel_mask", dims, {"channel": tuple(chans)}))


def region_mask(shape: Shape, channels: Optional[Channels] = None, y: Optional[Sequence[float]] = None,
                x: Optional[Sequence[float]] = None, relative: bool = False) -> torch.Tensor:
    """Select a rectangle of positions in some channels.

    Args:
        shape: feature shape (C, H, W) or (C,).
        channels: channel index or indices; default all channels.
        y: half-open row range ``(y0, y1)``; default all rows.
        x: half-open column range ``(x0, x1)``; default all columns.
        relative: ``y`` and ``x`` are fractions ``0 <= start < stop <= 1`` of the map's height and
            width: the rows (columns) whose centres lie in ``[start, stop)`` of the map, at least
            one, on a map of any size (``(0.25, 0.75)`` is the middle half).

    Returns:
        bool tensor of ``shape``; ``mask[c, y0:y1, x0:x1]`` is True for the chosen channels. It
        carries its :class:`MaskSpec`.
    """
    dims = _shape(shape)
    _no_spatial(dims, y=y, x=x)
    chans = list(range(dims[0])) if channels is None else _channel_list(channels, dims[0], "channels")
    mask = torch.zeros(dims, dtype=torch.bool)
    if len(dims) == 1:
        mask[chans] = True
    else:
        y0, y1 = _range(y, dims[1], "y", relative)
        x0, x1 = _range(x, dims[2], "x", relative)
        mask[chans, y0:y1, x0:x1] = True
    arguments = {"channels": None if channels is None else tuple(chans),
                 "y": None if y is None else tuple(y), "x": None if x is None else tuple(x), "relative": bool(relative)}
    return _with_spec(mask, MaskSpec("region_mask", dims, arguments, _absolute_axes(relative, y=y, x=x)))


def _per_item(value: Any, n: int, arg: str) -> List[Any]:
    if value is None or isinstance(value, (int, float, np.integer, np.floating)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise MaskError(describe(arg, f"None, a number or a sequence of {n} (one per channel)", value))
    return values


def unit_masks(shape: Shape, channels: Channels, y: Any = None, x: Any = None, relative: bool = False) -> torch.Tensor:
    """One single-unit mask per batch item: item ``i`` selects unit ``(channels[i], y[i], x[i])``.

    Args:
        shape: feature shape (C, H, W) or (C,).
        channels: channel indices, one per batch item (e.g. :func:`every_nth_channel`).
        y: None (centre), an int for every item, or one row per item.
        x: None (centre), an int for every item, or one column per item.
        relative: ``y`` and ``x`` are fractions of the map, as in :func:`unit_mask`.

    Returns:
        bool tensor (B, *shape) with B = len(channels), one True per item, carrying its
        :class:`MaskSpec`.
    """
    dims = _shape(shape)
    chans = _channel_list(channels, dims[0], "channels")
    ys, xs = _per_item(y, len(chans), "y"), _per_item(x, len(chans), "x")
    masks = torch.stack([unit_mask(dims, c, yy, xx, relative) for c, yy, xx in zip(chans, ys, xs)])
    arguments = {"channels": tuple(chans), "y": None if y is None else tuple(ys), "x": None if x is None else tuple(xs),
                 "relative": bool(relative)}
    return _with_spec(masks, MaskSpec("unit_masks", dims, arguments, _absolute_axes(relative, y=y, x=x)))


def every_nth_channel(shape: Shape, step: Optional[int] = None) -> List[int]:
    """cnnpref's example channel list: ``range(0, C, step)``.

    Args:
        shape: feature shape (C, ...) or the channel count C.
        step: channel stride; default ``int(C / 25)`` (at least 1), so AlexNet conv1 (96 channels)
            gives 0, 3, ..., 93 (32 channels) and fc8 (1000) gives 0, 40, ..., 960 (25 channels).

    Returns:
        list of channel indices.
    """
    n_channels = _shape(shape)[0]
    if step is None:
        step = max(1, int(n_channels / 25))
    elif isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise MaskError(describe("step", "a positive int", step))
    return list(range(0, n_channels, int(step)))


_BUILDERS: Dict[str, Callable[..., torch.Tensor]] = {
    "unit_mask": unit_mask, "channel_mask": channel_mask, "region_mask": region_mask, "unit_masks": unit_masks,
}
