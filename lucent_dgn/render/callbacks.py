"""Callbacks for :func:`lucent_dgn.render`: called after every outer step with a StepInfo.

A callback is any callable ``cb(info: StepInfo) -> Optional[bool]``; returning True stops the render.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..errors import ConfigError, describe
from .result import StepInfo

__all__ = ["Snapshot", "StopAfter", "StopWhenActivation"]


class Snapshot:
    """Keep the current images every ``every`` steps (cnnpref's ``save_intermediate``).

    Images are kept in memory as (N, H, W, 3) RGB 0-1 arrays keyed by the 1-based step number
    (cnnpref names snapshots ``%05d`` of t+1); save them after the render with
    :func:`lucent_dgn.viz.save_snapshots`.
    """

    def __init__(self, every: int = 10) -> None:
        if int(every) <= 0:
            raise ConfigError(describe("every", "a positive integer", every))
        self.every = int(every)
        self.images: Dict[int, np.ndarray] = {}

    def __call__(self, info: StepInfo) -> None:
        if (info.step + 1) % self.every == 0:
            self.images[info.step + 1] = info.param.image_for_display().cpu().numpy()


class StopAfter:
    """Stop after ``n_evals`` forward+backward evaluations."""

    def __init__(self, n_evals: int) -> None:
        self.n_evals = int(n_evals)

    def __call__(self, info: StepInfo) -> bool:
        return info.n_evals >= self.n_evals


class StopWhenActivation:
    """Stop once every item's activation reaches ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def __call__(self, info: StepInfo) -> bool:
        return bool(np.all(info.activation >= self.threshold))
