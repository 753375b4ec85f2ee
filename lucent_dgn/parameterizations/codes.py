"""Initial generator codes and code bounds for the DGN parameterization."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .._validate import check_seed
from ..errors import BoundsError, ConfigError, ShapeError, describe

__all__ = ["initial_code", "load_act_range", "code_bounds", "estimate_code_bounds", "BoundSpec"]

BoundSpec = Union[None, float, int, Sequence[float], np.ndarray, torch.Tensor, str, os.PathLike]


def initial_code(kind: Union[str, np.ndarray, torch.Tensor], batch: int, code_shape: Tuple[int, ...],
                 seed: Optional[int] = None, mean: Optional[torch.Tensor] = None,
                 std: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Initial codes, shape (batch, *code_shape), float32.

    Args:
        kind: ``"cnnpref"`` -- ``10 * max(0, N(0, 1))`` (cnnpref; about half the units are 0);
            ``"normal"`` -- N(0, 1) (DGN-AM, icnn); ``"zeros"``; ``"stats"`` -- ``mean + std * N(0, 1)``
            from per-unit statistics (``mean``/``std`` required); or an array of shape code_shape or
            (batch, *code_shape).
        seed: seed of a local generator (the global RNG is untouched).
    """
    shape = (batch,) + tuple(code_shape)
    seed = check_seed(seed)
    if not isinstance(kind, str):
        code = torch.as_tensor(np.asarray(kind) if not isinstance(kind, torch.Tensor) else kind).float()
        if tuple(code.shape) == tuple(code_shape):
            code = code.unsqueeze(0).expand(shape)
        if tuple(code.shape) != shape:
            raise ShapeError(describe("initial code", f"shape {tuple(code_shape)} or {shape}", tuple(code.shape)))
        return code.clone()
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    if kind == "cnnpref":
        return 10.0 * torch.randn(shape, generator=gen).clamp_min(0.0)
    if kind == "normal":
        return torch.randn(shape, generator=gen)
    if kind == "zeros":
        return torch.zeros(shape)
    if kind == "stats":
        if mean is None or std is None:
            raise ConfigError(describe("init", "used with per-unit statistics", kind,
                                       "Pass a generator that ships statistics, or choose 'cnnpref', 'normal' or 'zeros'."))
        return mean.reshape(code_shape) + std.reshape(code_shape) * torch.randn(shape, generator=gen)
    raise ConfigError(describe("init", "'cnnpref', 'normal', 'zeros', 'stats' or an array", kind))


def load_act_range(path: Union[str, os.PathLike], expected: Optional[int] = None) -> np.ndarray:
    """Read a cnnpref / DGN-AM ``act_range`` file: whitespace-separated numbers, one per code unit.

    Raises:
        BoundsError: missing file, non-numeric values, or a count different from ``expected``.
    """
    p = Path(path)
    if not p.is_file():
        raise BoundsError(describe("bounds file", "an existing text file", str(p)))
    try:
        values = np.array([float(v) for v in p.read_text().split()], dtype=np.float32)
    except ValueError as err:
        raise BoundsError(describe("bounds file", "whitespace-separated numbers", f"{p} ({err})", raw=True)) from None
    if expected is not None and values.size != expected:
        raise BoundsError(describe("bounds file", f"{expected} values (one per code unit)",
                                   f"{values.size} values in {p}", raw=True))
    return values


def _as_bound(spec: BoundSpec, code_shape: Tuple[int, ...], name: str, default: float) -> torch.Tensor:
    size = int(np.prod(code_shape))
    if spec is None:
        return torch.full(code_shape, default)
    if isinstance(spec, (str, os.PathLike)):
        return torch.from_numpy(load_act_range(spec, expected=size)).reshape(code_shape)
    try:
        t = torch.as_tensor(np.asarray(spec, dtype=np.float32) if not isinstance(spec, torch.Tensor) else spec).float()
    except (TypeError, ValueError) as err:
        raise BoundsError(describe(name, "a number, an array of numbers or an act_range file path", spec)) from err
    if torch.isnan(t).any():
        raise BoundsError(describe(name, "numbers (use inf for no bound)", "NaN"))
    if t.ndim == 0:
        return t.expand(code_shape).clone()
    if t.numel() != size:
        raise BoundsError(describe(name, f"a scalar or {size} values (one per code unit)", f"{t.numel()} values", raw=True))
    return t.reshape(code_shape).clone()


def code_bounds(lower: BoundSpec, upper: BoundSpec, code_shape: Tuple[int, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-unit bounds (code_shape each). None -> unbounded on that side (-inf / +inf).

    Each of ``lower``/``upper`` may be a scalar, an array with one value per unit, or a path to an
    act_range text file (e.g. cnnpref's ``act_range/3x/fc6.txt``).

    Raises:
        BoundsError: wrong length, NaN, unreadable file, or lower > upper for some unit.
    """
    lo = _as_bound(lower, code_shape, "lower", -float("inf"))
    hi = _as_bound(upper, code_shape, "upper", float("inf"))
    bad = (lo > hi).nonzero()
    if bad.numel():
        i = tuple(bad[0].tolist())
        raise BoundsError(describe("lower", "<= upper for every code unit",
                                   f"lower {lo[i].item():g} > upper {hi[i].item():g} at unit {i}", raw=True))
    return lo, hi


@torch.no_grad()
def estimate_code_bounds(encoder: torch.nn.Module, layer, images: torch.Tensor, k: float = 3.0,
                         batch_size: int = 64) -> Tuple[torch.Tensor, torch.Tensor, dict]:
    """Estimate DGN-AM-style code bounds ``[0, mean + k * std]`` from an encoder layer's activations.

    "3x" in DGN-AM's act_range files means k = 3 standard deviations above the mean activation.

    Args:
        encoder: the network whose layer the generator inverts (e.g. CaffeNet/AlexNet for fc6).
        layer: layer reference of the code layer.
        images: (M, C, H, W) images in the encoder's input space.
        k: number of standard deviations. Default 3.

    Returns:
        (lower, upper, stats) with lower = 0, upper = clamp(mean + k std, min=0) per unit, and
        stats = {"mean", "std", "max"} tensors.
    """
    from ..layers import resolve_layer
    from ..render.hooks import ActivationCapture

    name, _ = resolve_layer(encoder, layer)
    feats = []
    with ActivationCapture(encoder, [name]) as cap:
        for start in range(0, images.shape[0], batch_size):
            cap.run(images[start:start + batch_size])
            feats.append(cap.features[name].detach().flatten(1).float())
    f = torch.cat(feats)
    mean, std, mx = f.mean(0), f.std(0), f.max(0).values
    upper = (mean + k * std).clamp_min(0.0)
    return torch.zeros_like(upper), upper, {"mean": mean, "std": std, "max": mx}
