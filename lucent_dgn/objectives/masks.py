"""Unit masks: boolean tensors that select units of a layer.

A mask has the layer's feature shape without the batch axis, ``(C, H, W)`` for conv/pool layers
or ``(C,)`` for fully connected ones, or a leading batch axis ``(B, C, H, W)`` for one mask per
batch item. ``True`` marks a selected unit.

Index order is ``(channel, y, x)`` = ``(C, H, W)``, as in Captum's tuple selectors (Lucent's
``neuron(..., x, y)`` takes the opposite order).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

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

    Raises:
        MaskError: values other than 0 and 1 (weights belong in ``weight``), NaN or infinite
            values, a 0-d mask, or no selected unit.
    """
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
    return tensor


def unit_mask(shape: Shape, channel: int, y: Optional[int] = None, x: Optional[int] = None) -> torch.Tensor:
    """Select one unit.

    Args:
        shape: feature shape (C, H, W) or (C,).
        channel: channel index in [0, C).
        y: row in [0, H); default ``H // 2`` (cnnpref: ``int(55 / 2) = 27`` for AlexNet conv1).
        x: column in [0, W); default ``W // 2``.

    Returns:
        bool tensor of ``shape`` with exactly one True.
    """
    dims = _shape(shape)
    _no_spatial(dims, y=y, x=x)
    mask = torch.zeros(dims, dtype=torch.bool)
    c = _index(channel, dims[0], "channel")
    if len(dims) == 1:
        mask[c] = True
        return mask
    yy = dims[1] // 2 if y is None else _index(y, dims[1], "y")
    xx = dims[2] // 2 if x is None else _index(x, dims[2], "x")
    mask[c, yy, xx] = True
    return mask


def channel_mask(shape: Shape, channel: Channels) -> torch.Tensor:
    """Select every spatial position of one channel (or of several, given a sequence).

    Returns:
        bool tensor of ``shape``.
    """
    dims = _shape(shape)
    mask = torch.zeros(dims, dtype=torch.bool)
    mask[_channel_list(channel, dims[0], "channel")] = True
    return mask


def region_mask(shape: Shape, channels: Optional[Channels] = None, y: Optional[Sequence[int]] = None,
                x: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Select a rectangle of positions in some channels.

    Args:
        shape: feature shape (C, H, W) or (C,).
        channels: channel index or indices; default all channels.
        y: half-open row range ``(y0, y1)``; default all rows.
        x: half-open column range ``(x0, x1)``; default all columns.

    Returns:
        bool tensor of ``shape``; ``mask[c, y0:y1, x0:x1]`` is True for the chosen channels.
    """
    dims = _shape(shape)
    _no_spatial(dims, y=y, x=x)
    chans = list(range(dims[0])) if channels is None else _channel_list(channels, dims[0], "channels")
    mask = torch.zeros(dims, dtype=torch.bool)
    if len(dims) == 1:
        mask[chans] = True
        return mask
    y0, y1 = _span(y, dims[1], "y")
    x0, x1 = _span(x, dims[2], "x")
    mask[chans, y0:y1, x0:x1] = True
    return mask


def _per_item(value: Any, n: int, arg: str) -> List[Optional[int]]:
    if value is None or isinstance(value, (int, np.integer)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise MaskError(describe(arg, f"None, an int or a sequence of {n} ints (one per channel)", value))
    return values


def unit_masks(shape: Shape, channels: Channels, y: Any = None, x: Any = None) -> torch.Tensor:
    """One single-unit mask per batch item: item ``i`` selects unit ``(channels[i], y[i], x[i])``.

    Args:
        shape: feature shape (C, H, W) or (C,).
        channels: channel indices, one per batch item (e.g. :func:`every_nth_channel`).
        y: None (centre), an int for every item, or one row per item.
        x: None (centre), an int for every item, or one column per item.

    Returns:
        bool tensor (B, *shape) with B = len(channels), one True per item.
    """
    dims = _shape(shape)
    chans = _channel_list(channels, dims[0], "channels")
    ys, xs = _per_item(y, len(chans), "y"), _per_item(x, len(chans), "x")
    return torch.stack([unit_mask(dims, c, yy, xx) for c, yy, xx in zip(chans, ys, xs)])


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
