"""Checks of scalar arguments shared by several modules (seeds)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .errors import ConfigError, describe

__all__ = ["check_seed", "MAX_SEED"]

MAX_SEED = 2**64 - 1
"""The largest seed torch's generators accept."""


def check_seed(seed: Any, arg: str = "seed") -> Optional[int]:
    """``seed`` as an int in [0, 2**64 - 1], or None; ConfigError otherwise."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(describe(arg, "None or an integer in [0, 2**64 - 1]", seed))
    return int(seed)
