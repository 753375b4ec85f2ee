"""Image spaces and exact, clamp-free conversions between them.

A *space* says how a model's input tensor (N, C, H, W) encodes an image:

* :class:`CaffeSpace` -- cnnpref's "net space": BGR, per-channel mean subtracted, 0-255 scale.
  Default mean :data:`CAFFE_MEAN_BGR` = (104.00699, 116.66877, 122.67892).
* :class:`TorchvisionSpace` -- RGB on the 0-1 scale, normalised ``(x - mean) / std``
  (ImageNet statistics by default).
* :class:`UnitSpace` -- values on the 0-1 scale, RGB (3 channels) or grey (1 channel).

Every space maps to and from a common RGB 0-1 tensor (N, 3, H, W). Conversions are affine and
never clamp, so gradients pass through unchanged; clamping is for display only.
For grey spaces, RGB -> grey takes the channel mean and grey -> RGB repeats the channel.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

from .errors import ConfigError, describe

__all__ = [
    "CAFFE_MEAN_BGR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageSpace",
    "CaffeSpace",
    "TorchvisionSpace",
    "UnitSpace",
    "convert",
    "get_space",
    "img_preprocess",
    "img_deprocess",
]

CAFFE_MEAN_BGR: Tuple[float, float, float] = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def _col(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


class ImageSpace:
    """An image encoding. Subclasses implement :meth:`to_rgb01` and :meth:`from_rgb01`."""

    channels: int = 3
    name: str = "space"

    def to_rgb01(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in this space -> (N, 3, H, W) RGB on the 0-1 scale."""
        raise NotImplementedError

    def from_rgb01(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB 0-1 -> (N, C, H, W) in this space."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CaffeSpace(ImageSpace):
    """BGR, mean-subtracted, 0-255 scale (Caffe's ``data`` blob; DeePSiM generator output).

    Args:
        mean_bgr: per-channel mean in BGR order, 0-255 scale. Default :data:`CAFFE_MEAN_BGR`.
    """

    name = "caffe"

    def __init__(self, mean_bgr: Sequence[float] = CAFFE_MEAN_BGR) -> None:
        if len(mean_bgr) != 3:
            raise ConfigError(describe("mean_bgr", "three numbers (B, G, R)", mean_bgr))
        self.mean_bgr = tuple(float(m) for m in mean_bgr)

    def to_rgb01(self, x: torch.Tensor) -> torch.Tensor:
        return (x + _col(self.mean_bgr, x)).flip(1) / 255.0

    def from_rgb01(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb * 255.0).flip(1) - _col(self.mean_bgr, rgb)

    def __repr__(self) -> str:
        return f"CaffeSpace(mean_bgr={self.mean_bgr})"


class TorchvisionSpace(ImageSpace):
    """RGB 0-1 normalised by ``(x - mean) / std`` (torchvision's ImageNet models)."""

    name = "torchvision"

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(describe("mean/std", "three numbers each", (mean, std)))
        if any(s <= 0 for s in std):
            raise ConfigError(describe("std", "positive numbers", std))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def to_rgb01(self, x: torch.Tensor) -> torch.Tensor:
        return x * _col(self.std, x) + _col(self.mean, x)

    def from_rgb01(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - _col(self.mean, rgb)) / _col(self.std, rgb)

    def __repr__(self) -> str:
        return f"TorchvisionSpace(mean={self.mean}, std={self.std})"


class UnitSpace(ImageSpace):
    """Values on the 0-1 scale, RGB (``channels=3``) or grey (``channels=1``)."""

    name = "unit"

    def __init__(self, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ConfigError(describe("channels", "1 (grey) or 3 (RGB)", channels))
        self.channels = channels

    def to_rgb01(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if self.channels == 1 else x

    def from_rgb01(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb.mean(dim=1, keepdim=True) if self.channels == 1 else rgb

    def __repr__(self) -> str:
        return f"UnitSpace(channels={self.channels})"


def get_space(space: "ImageSpace | str") -> ImageSpace:
    """Return ``space`` itself, or build one by name: ``"caffe"``, ``"torchvision"``, ``"unit"``, ``"gray"``."""
    if isinstance(space, ImageSpace):
        return space
    table = {"caffe": CaffeSpace, "torchvision": TorchvisionSpace, "unit": UnitSpace, "rgb": UnitSpace,
             "gray": lambda: UnitSpace(1), "grey": lambda: UnitSpace(1)}
    if not isinstance(space, str) or space not in table:
        raise ConfigError(describe("space", f"an ImageSpace or one of {sorted(table)}", space))
    return table[space]()


def convert(x: torch.Tensor, src: ImageSpace, dst: ImageSpace) -> torch.Tensor:
    """Re-encode ``x`` from space ``src`` to ``dst`` (``x`` itself when the spaces are equal)."""
    if src is dst or src == dst:
        return x
    return dst.from_rgb01(src.to_rgb01(x))


def img_preprocess(img: np.ndarray, mean_bgr: Sequence[float] = CAFFE_MEAN_BGR) -> np.ndarray:
    """cnnpref's ``img_preprocess``: RGB HWC 0-255 -> BGR CHW float32 minus the mean (net space)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(describe("img", "an RGB image of shape (H, W, 3)", img.shape))
    mean = np.asarray(mean_bgr, dtype=np.float32).reshape(3, 1, 1)
    return np.float32(img.transpose(2, 0, 1)[::-1]) - mean


def img_deprocess(img: np.ndarray, mean_bgr: Sequence[float] = CAFFE_MEAN_BGR) -> np.ndarray:
    """cnnpref's ``img_deprocess``: net space CHW -> RGB HWC 0-255; no clipping, rounding or cast."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ConfigError(describe("img", "a net-space image of shape (3, H, W)", img.shape))
    mean = np.asarray(mean_bgr, dtype=np.float32).reshape(3, 1, 1)
    return np.dstack((img + mean)[::-1])
