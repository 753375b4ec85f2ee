"""Per-step image operations of cnnpref's gradient descent (blur, clipping, roll) and saving helpers.

Torch functions work on a batch ``(N, C, H, W)`` of float32 or float64 images on any device;
each batch item is an independent image, so every percentile is taken per item. Functions whose
name ends in ``_`` change their input in place (under ``torch.no_grad``) and return it.

Percentiles follow ``numpy.percentile`` with its default linear interpolation, computed in
float64. Thresholds use strict ``<`` as in cnnpref (``cnnpref/utils.py``, spec section 8).

The numpy functions :func:`normalise_img` and :func:`clip_extreme_pixel` reproduce cnnpref's
saving path: ``normalise_img(clip_extreme_pixel(img, 0.04))`` gives the uint8 image written to
disk.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import ConfigError, ShapeError, describe

__all__ = [
    "gaussian_kernel1d",
    "gaussian_blur",
    "percentile",
    "pixel_norm",
    "clip_extreme_",
    "clip_small_norm_",
    "clip_small_contribution_",
    "roll_",
    "normalise_img",
    "clip_extreme_pixel",
]


# ----------------------------------------------------------------------------------------- blur
def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tuple[List[float], int]:
    """SciPy's sampled Gaussian: weights ``exp(-k^2 / (2 sigma^2))`` for ``|k| <= radius``, sum 1.

    Args:
        sigma: standard deviation in pixels (> 0).
        truncate: radius in standard deviations; ``radius = int(truncate * sigma + 0.5)``.

    Returns:
        (weights as float64 Python floats, length ``2 * radius + 1``; radius).
    """
    radius = int(truncate * sigma + 0.5)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * k ** 2)
    phi = phi / phi.sum()
    return phi.tolist(), radius


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``radius`` with half-sample symmetry (d c b a | a b c d)."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def _correlate_axis(x: torch.Tensor, weights: List[float], radius: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    padded = x.index_select(dim, _reflect_index(n, radius, x.device))
    out = padded.narrow(dim, 0, n) * weights[0]
    for j in range(1, len(weights)):
        out.add_(padded.narrow(dim, j, n), alpha=weights[j])
    return out


def _check_float(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(describe(name, "a floating-point torch.Tensor", got, raw=True))


def _as_float(value: Union[float, torch.Tensor], name: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise ConfigError(describe(name, "a number", value))
    return float(value)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of the last two axes, equal to ``scipy.ndimage.gaussian_filter`` per channel.

    Same boundary rule as SciPy's default ``mode='reflect'`` (half-sample symmetric: the edge
    pixel is repeated; not torch's ``F.pad(mode='reflect')``, which is SciPy's ``'mirror'``),
    ``truncate=4.0`` and normalised sampled weights. Separable: one pass along H, one along W,
    each a sum of shifted slices (no grouped convolution, which is slow at batch > 1 on CPU).

    Args:
        x: (N, C, H, W) (any shape with at least 2 axes), floating point, any device.
        sigma: standard deviation in pixels, the same for every item; ``sigma <= 0`` -> no-op.

    Returns:
        A new tensor of the same shape and dtype (``x`` itself when ``sigma <= 0``).
    """
    _check_float(x)
    if x.dim() < 2:
        raise ShapeError(describe("x", "a tensor with at least 2 axes (N, C, H, W)", tuple(x.shape)))
    sigma = _as_float(sigma, "sigma")
    if sigma <= 0:
        return x
    weights, radius = gaussian_kernel1d(sigma)
    if radius == 0:
        return x.clone()
    y = _correlate_axis(x, weights, radius, x.dim() - 2)
    return _correlate_axis(y, weights, radius, x.dim() - 1)


# ---------------------------------------------------------------------------------- percentiles
def _clamp_pct(pct: Union[float, torch.Tensor], name: str = "pct") -> float:
    return min(max(_as_float(pct, name), 0.0), 100.0)


def _pair(flat: torch.Tensor, lo: int, hi: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``flat`` (N, M): the values at ascending sorted positions ``lo`` and ``hi``."""
    m = flat.shape[1]
    if hi + 1 <= m - lo:  # take the hi+1 smallest, then the top of those
        part = torch.topk(flat, hi + 1, dim=1, largest=False, sorted=False).values
        top = torch.topk(part, hi - lo + 1, dim=1, largest=True, sorted=True).values
        return top[:, -1], top[:, 0]
    part = torch.topk(flat, m - lo, dim=1, largest=True, sorted=False).values
    bottom = torch.topk(part, hi - lo + 1, dim=1, largest=False, sorted=True).values
    return bottom[:, 0], bottom[:, -1]


def _row_percentile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """``np.percentile(row, q)`` (linear) for every row of ``flat`` (N, M); float64 (N,)."""
    m = flat.shape[1]
    pos = (q / 100.0) * (m - 1)
    if pos >= m - 1:
        lo = hi = m - 1
    else:
        lo = int(math.floor(pos))
        hi = lo + 1
    t = pos - lo
    a, b = (v.to(torch.float64) for v in _pair(flat, lo, hi))
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp


def percentile(x: torch.Tensor, q: Union[float, Sequence[float]]) -> torch.Tensor:
    """Per-item percentiles over all elements of each item, as ``numpy.percentile`` (linear).

    Args:
        x: (N, ...) floating point; item i is ``x[i]`` (all its elements).
        q: percent in [0, 100], a number or a sequence of numbers.

    Returns:
        float64 tensor on ``x.device``: (N,) for a number ``q``, (N, len(q)) for a sequence.
    """
    _check_float(x)
    if x.dim() < 1 or x.numel() == 0:
        raise ShapeError(describe("x", "a non-empty tensor (N, ...)", tuple(x.shape)))
    flat = x.detach().reshape(x.shape[0], -1)
    qs = [q] if not isinstance(q, (list, tuple)) else list(q)
    for value in qs:
        if not 0.0 <= _as_float(value, "q") <= 100.0:
            raise ConfigError(describe("q", "in [0, 100]", value))
    cols = [_row_percentile(flat, float(value)) for value in qs]
    return cols[0] if not isinstance(q, (list, tuple)) else torch.stack(cols, dim=1)


def _check_image(x: torch.Tensor, name: str = "x") -> None:
    _check_float(x, name)
    if x.dim() != 4:
        raise ShapeError(describe(name, "an image batch (N, C, H, W)", tuple(x.shape)))


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 norm over channels: (N, C, H, W) -> (N, H, W) (cnnpref's ``image_norm``)."""
    _check_image(x)
    return x.square().sum(dim=1).sqrt()


@torch.no_grad()
def clip_extreme_(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Clip each item to ``[P_{pct/2}, P_{100-pct/2}]`` of all its elements (in place).

    Args:
        x: (N, ...) floating point.
        pct: percentage in [0, 100] (clamped); 0 leaves ``x`` unchanged.

    Returns:
        ``x``.
    """
    pct = _clamp_pct(pct)
    bounds = percentile(x, [pct / 2.0, 100.0 - pct / 2.0]).to(x.dtype)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    torch.maximum(x, bounds[:, 0].view(shape), out=x)
    torch.minimum(x, bounds[:, 1].view(shape), out=x)
    return x


def _zero_small_(x: torch.Tensor, norms: torch.Tensor, pct: float) -> torch.Tensor:
    threshold = percentile(norms, pct)  # (N,) float64
    small = norms < threshold.view(-1, 1, 1)
    return x.masked_fill_(small.unsqueeze(1), 0.0)


@torch.no_grad()
def clip_small_norm_(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero (all channels) the pixels whose channel norm is strictly below ``P_pct`` of the norms.

    Args:
        x: (N, C, H, W) floating point; percentiles per item over its H*W pixel norms.
        pct: percentage in [0, 100] (clamped).

    Returns:
        ``x`` (changed in place).
    """
    _check_image(x)
    return _zero_small_(x, pixel_norm(x), _clamp_pct(pct))


@torch.no_grad()
def clip_small_contribution_(x: torch.Tensor, grad: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero the pixels whose norm of ``x * grad`` is strictly below ``P_pct`` of those norms (in place).

    Args:
        x: (N, C, H, W) floating point.
        grad: the gradient, same shape as ``x`` (its scale does not matter).
        pct: percentage in [0, 100] (clamped).

    Returns:
        ``x``.
    """
    _check_image(x)
    if grad.shape != x.shape:
        raise ShapeError(describe("grad", f"of the image's shape {tuple(x.shape)}", tuple(grad.shape)))
    return _zero_small_(x, pixel_norm(x * grad), _clamp_pct(pct))


@torch.no_grad()
def roll_(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Circularly shift the last two axes in place by ``(dy, dx)`` (positive = down / right)."""
    if dy or dx:
        x.copy_(torch.roll(x, shifts=(int(dy), int(dx)), dims=(-2, -1)))
    return x


# ------------------------------------------------------------------------------- numpy (saving)
def normalise_img(img: np.ndarray) -> np.ndarray:
    """cnnpref's ``normalise_img``: global min -> 0, global max -> 255, uint8 by truncation.

    Args:
        img: array of any shape (e.g. H x W x 3 RGB), any real dtype.

    Returns:
        uint8 array of the same shape; a constant image gives all zeros.
    """
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        img = img.astype(np.float64)
    img = img - img.min()
    if img.max() > 0:
        img = img * (255.0 / img.max())
    return img.astype(np.uint8)


def clip_extreme_pixel(img: np.ndarray, pct: float = 1.0) -> np.ndarray:
    """cnnpref's ``clip_extreme_pixel``: clip to ``[P_{pct/2}, P_{100-pct/2}]`` of all elements.

    Args:
        img: array of any shape; the percentiles are taken jointly over all its elements.
        pct: percentage, clamped to [0, 100]; default 1. The saving path uses 0.04.

    Returns:
        A new array of the same dtype.
    """
    img = np.asarray(img)
    pct = _clamp_pct(pct)
    lo = np.percentile(img, pct / 2.0)
    hi = np.percentile(img, 100.0 - pct / 2.0)
    return np.clip(img, lo, hi).astype(img.dtype, copy=False)
