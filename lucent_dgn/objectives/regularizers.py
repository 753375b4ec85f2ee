"""Image regularisers of cnnpref (``p_norm``, ``TV_norm``, spec §8) as Lucent objectives.

cnnpref ships both but neither runs (spec Q1, Q2). These are the intended versions. Both read
``T("input")``: in lucent_dgn's render loop that is the image the model saw; under Lucent's
``render_vis`` it is the parameterized image before transforms. Their values are penalties
(positive), so adding them to a masked-unit loss regularises the image.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from lucent.optvis.objectives import Objective

from ..errors import ConfigError, describe
from ._access import item_objective, read_activation

__all__ = ["p_norm", "total_variation", "tv_map"]


def _positive(value: Any, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(describe(arg, "a finite number > 0", value))
    return float(value)


def _finite(value: Any, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(describe(arg, "a finite number", value))
    return float(value)


def p_norm(p: float = 3, weight: float = 1.0) -> Objective:
    """``weight * sum |x|^p`` over the input image x (every item, channel and pixel).

    Args:
        p: exponent > 0 (default 3). For p < 1 the gradient at 0 is infinite.
        weight: multiplier (cnnpref's ``lamda``), default 1.0.

    Returns:
        A Lucent ``Objective`` with per-item values (each item's own sum); its gradient is
        ``weight * p * |x|^(p-1) * sign(x)`` (spec §8).
    """
    p = _positive(p, "p")
    weight = _finite(weight, "weight")

    def func(T: Any) -> torch.Tensor:
        x = read_activation(T, "input")
        return weight * x.abs().pow(p).flatten(1).sum(1)

    objective = item_objective(func, name="p_norm", description=f"P Norm [p={p:g}, weight={weight:g}]")
    objective.layers = ("input",)
    return objective


def tv_map(x: torch.Tensor, beta: float = 2) -> torch.Tensor:
    """Per-pixel total variation ``(d1^2 + d2^2)^(beta/2)`` of x (..., H, W), per channel.

    ``d1`` and ``d2`` are forward differences along H and W (``x[i+1] - x[i]``), set to 0 at the
    last row and column. Where both are 0 the value and its gradient are 0 (no NaN for beta < 2).

    Args:
        x: image tensor (..., H, W), e.g. (N, C, H, W), floating point.
        beta: exponent ``TVbeta`` > 0; default 2.

    Returns:
        tensor of x's shape.
    """
    d1 = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    d2 = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    squared = d1 * d1 + d2 * d2
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.pow(beta / 2), torch.zeros_like(squared))


def total_variation(beta: float = 2, weight: float = 1.0) -> Objective:
    """``weight * sum (d1^2 + d2^2)^(beta/2)`` over the input image (cnnpref's ``TV_norm``).

    Args:
        beta: exponent ``TVbeta`` > 0 (default 2, cnnpref's generate_image default).
        weight: multiplier (cnnpref's ``TVlamda``), default 1.0.

    Returns:
        A Lucent ``Objective`` with per-item values. Forward differences along H and W, 0 at the last row/column,
        per channel and item (see :func:`tv_map`). Unlike cnnpref, no 1e-5 floor is applied to the
        gradient; away from flat regions the gradient equals cnnpref's analytic one.
    """
    beta = _positive(beta, "beta")
    weight = _finite(weight, "weight")

    def func(T: Any) -> torch.Tensor:
        x = read_activation(T, "input")
        return weight * tv_map(x, beta).flatten(1).sum(1)

    objective = item_objective(func, name="total_variation",
                          description=f"Total Variation [beta={beta:g}, weight={weight:g}]")
    objective.layers = ("input",)
    return objective
