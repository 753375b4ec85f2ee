"""Parameterizations: pixel images, deep generator network codes, and Lucent ``param_f`` adapters."""
from __future__ import annotations

from .base import Bounds, Parameterization
from .codes import code_bounds, estimate_code_bounds, initial_code, load_act_range
from .dgn import DGNImage
from .lucent_adapter import LucentParam
from .pixel import PixelImage

__all__ = ["Parameterization", "Bounds", "PixelImage", "DGNImage", "LucentParam", "initial_code",
           "code_bounds", "load_act_range", "estimate_code_bounds"]
