"""The value returned by :func:`lucent_dgn.render`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np
import torch

__all__ = ["RenderResult", "StepInfo"]


@dataclass
class StepInfo:
    """What callbacks receive after each outer step."""

    step: int
    """0-based outer step that just finished."""
    loss: float
    """Objective value (a loss: lower = stronger activation) at this step's last evaluation (GD: its only one; L-BFGS: the accepted point)."""
    activation: np.ndarray
    """(N,) per-item activation of the first objective term that reports one (e.g. a
    ``masked_units`` term); an empty array when no term reports."""
    n_evals: int
    """Forward+backward evaluations so far."""
    param: Any
    """The parameterization (read its current state; do not modify it)."""
    activations: Dict[str, np.ndarray] = field(default_factory=dict)
    """(N,) per-item activation of every reporting term, keyed by the term's name
    (``"masked_units"``, ``"masked_units#2"``, ...)."""


@dataclass
class RenderResult:
    """Images and histories of one render.

    Attributes:
        images: (N, H, W, 3) float32 RGB on the 0-1 scale, NOT clipped (out-of-range values
            show that the image left the displayable range; clip for display).
        raw: the final optimised variable as numpy, e.g. the net-space image (N, 3, H, W) or the
            generator codes (N, *code_shape).
        model_input: (N, C, H, W) float32, the final image in the model's input space.
        loss_history: (T,) loss per outer step (its last evaluation: for L-BFGS the accepted point).
        activation_history: (T, N) per-item activation per outer step of the first objective term
            that reports one (e.g. a ``masked_units`` term); (T, 0) when no term reports (values
            are never invented from the loss).
        final_activation: (N,) that term's activation on the final images (one extra forward
            pass without transforms); (0,) when no term reports.
        final_params: the optimised tensor (detached clone, on the render device).
        n_evals: forward+backward evaluations (L-BFGS line searches included).
        steps: outer steps run.
        wall_time: seconds spent in the optimisation loop.
        interrupted: True when a KeyboardInterrupt stopped the render early.
        snapshots: {step: (N, H, W, 3) images} kept by a Snapshot callback.
        settings: the render's settings (for records).
        activations: final (N,) activation of every reporting term, keyed by the term's name
            (``"masked_units"``, ``"masked_units#2"``, ...).
        activation_histories: (T, N) history of every reporting term, same keys.
    """

    images: np.ndarray
    raw: np.ndarray
    model_input: np.ndarray
    loss_history: np.ndarray
    activation_history: np.ndarray
    final_activation: np.ndarray
    final_params: torch.Tensor
    n_evals: int
    steps: int
    wall_time: float
    interrupted: bool = False
    snapshots: Dict[int, np.ndarray] = field(default_factory=dict)
    settings: Dict[str, Any] = field(default_factory=dict)
    activations: Dict[str, np.ndarray] = field(default_factory=dict)
    activation_histories: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def images_255(self) -> np.ndarray:
        """(N, H, W, 3) RGB on cnnpref's 0-255 scale, unclipped."""
        return self.images * 255.0

    def __repr__(self) -> str:
        return (f"RenderResult(images={self.images.shape}, steps={self.steps}, n_evals={self.n_evals}, "
                f"final_activation={np.round(self.final_activation, 4).tolist()}, "
                f"wall_time={self.wall_time:.2f}s, interrupted={self.interrupted})")
