"""Checks of scalar arguments shared by several modules (seeds)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .errors import ConfigError, describe

__all__ = ["check_seed", "MAX_SEED"]

MAX_SEED = 2**64 - 1
"""The largest seed torch's generators accept."""


def check_seed(seed: Any, arg: str = "seed", allow_none: bool = True) -> Optional[int]:
    """``seed`` as an int in [0, 2**64 - 1], or None where ``allow_none``; ConfigError otherwise."""
    if seed is None and allow_none:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        rule = ("None or " if allow_none else "") + "an integer in [0, 2**64 - 1]"
        raise ConfigError(describe(arg, rule, seed))
    return int(seed)
