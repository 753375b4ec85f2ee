"""Option checks and box bounds shared by the L-BFGS optimizers."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import BoundsError, ConfigError, describe
from .problem import Problem

__all__ = ["box_bounds", "Box"]

Box = Optional[Tuple[torch.Tensor, torch.Tensor]]


def _check(name: str, value, ok: bool, rule: str):
    if not ok:
        raise ConfigError(describe(name, rule, value))
    return value


def _num(name: str, value, integer: bool = False):
    """A positive int (``integer``) or a number >= 0, else ConfigError."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and (value > 0 if integer else value >= 0)
    rule = "a positive integer" if integer else "a number >= 0"
    return (int if integer else float)(_check(name, value, ok, rule))


def _limit(max_iter: Optional[int], problem: Problem) -> int:
    limits = [int(v) for v in (max_iter, getattr(problem, "n_steps", None)) if v is not None]
    return min(limits) if limits else 500


def box_bounds(problem: Problem, dtype: Optional[torch.dtype] = None) -> Box:
    """``problem.param.bounds()`` as contiguous (lower, upper) of the variable's shape (N, ...).

    Returns None when there are no bounds or all are infinite. ``dtype`` defaults to the
    variable's. Raises BoundsError when not broadcastable, NaN, or lower > upper somewhere.
    """
    var, raw = problem.param.variable, problem.param.bounds()
    if raw is None:
        return None
    rule = f"two tensors broadcastable to {tuple(var.shape)}, free of NaN, with lower <= upper"
    try:
        lower, upper = (torch.as_tensor(b, device=var.device).to(dtype or var.dtype)
                        .expand(var.shape).contiguous() for b in raw)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise BoundsError(describe("bounds()", rule, str(exc), raw=True)) from exc
    if bool(torch.isnan(lower).any() | torch.isnan(upper).any() | (lower > upper).any()):
        raise BoundsError(describe("bounds()", rule, "NaN or lower > upper", raw=True))
    return None if bool(torch.isneginf(lower).all() & torch.isposinf(upper).all()) else (lower, upper)

