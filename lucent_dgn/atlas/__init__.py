"""The atlas: a static, browsable site of a sweep (index of layers, unit grids, unit pages).

>>> import lucent_dgn as ld
>>> ld.atlas.build_atlas("fashion_sweep")      # doctest: +SKIP
PosixPath('fashion_sweep/atlas/index.html')
"""
from __future__ import annotations

from .site import PER_PAGE, THUMB, build_atlas

__all__ = ["build_atlas", "PER_PAGE", "THUMB"]
