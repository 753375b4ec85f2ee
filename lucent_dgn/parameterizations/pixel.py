"""Pixel parameterization: the image itself is optimised (cnnpref prefer_img_gd / prefer_img_lbfgs)."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .._validate import check_seed
from ..errors import ConfigError, ShapeError, describe
from ..spaces import ImageSpace, convert, get_space
from .base import Bounds, Parameterization

__all__ = ["PixelImage"]

InitSpec = Union[str, np.ndarray, torch.Tensor]


class PixelImage(Parameterization):
    """A batch of images stored in a pixel space and optimised directly.

    The stored tensor :attr:`variable` (N, C, H, W) lives in ``space``:

    * ``"caffe"`` (default): cnnpref's net space -- BGR, mean-subtracted, 0-255 scale. Decay
      ``x <- (1-d) x`` then pulls every pixel towards the mean colour, as cnnpref does (Q4).
    * ``"unit"``/``"gray"`` or a :class:`~lucent_dgn.spaces.UnitSpace`: values on the 0-1 scale
      (Lucent's RGB [0, 1]); decay pulls towards black.

    ``forward(space)`` converts the stored image to the model's input encoding (Caffe net space,
    torchvision-normalised RGB, ...), which the render loop resolves per call (see
    :func:`lucent_dgn.render`); ``model_space`` declares it on the parameterization instead.

    Args:
        size: image height and width, an int or (H, W).
        batch: number of images N. Default 1.
        space: storage space (see above). Default ``"caffe"``.
        model_space: the model's input space, if you want to declare it here; None (default) =
            resolved by each render.
        init: ``"random"`` (cnnpref: integers uniform in [0, 255] per pixel and channel),
            ``"black"``, ``"mean"`` (the space's zero / mean colour), ``"gray"`` (0.5), or an image:
            RGB HWC / NHWC on the 0-255 scale (numpy or tensor).
        bounded: declare the valid pixel range (raw [0, 255]) as bounds; L-BFGS-B uses them and
            gradient descent projects onto them when its ``project`` option is on. Default True.
        seed: seed of the random initial image (a local generator; the global RNG is untouched).
    """

    def __init__(self, size: Union[int, Tuple[int, int]] = 227, batch: int = 1,
                 space: Union[str, ImageSpace] = "caffe", model_space: Optional[ImageSpace] = None,
                 init: InitSpec = "random", bounded: bool = True, seed: Optional[int] = None) -> None:
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if h <= 0 or w <= 0:
            raise ConfigError(describe("size", "positive height and width", size))
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch <= 0:
            raise ConfigError(describe("batch", "a positive integer", batch))
        seed = check_seed(seed)
        self.space = get_space(space)
        self.model_space = model_space
        self.bounded = bounded
        if isinstance(init, str) and init == "mean":
            start = torch.zeros(batch, self.space.channels, h, w)
        else:
            start = self.space.from_rgb01(self._initial_rgb01(init, batch, h, w, seed))
        self.variable = nn.Parameter(start.contiguous())

    @staticmethod
    def _initial_rgb01(init: InitSpec, batch: int, h: int, w: int, seed: Optional[int]) -> torch.Tensor:
        if isinstance(init, str):
            if init == "random":
                gen = torch.Generator().manual_seed(seed) if seed is not None else None
                noise = torch.randint(0, 256, (batch, h, w, 3), generator=gen).float()
                return noise.permute(0, 3, 1, 2) / 255.0
            if init == "black":
                return torch.zeros(batch, 3, h, w)
            if init == "gray":
                return torch.full((batch, 3, h, w), 0.5)
            raise ConfigError(describe("init", "'random', 'black', 'gray', 'mean' or an RGB image", init))
        img = torch.as_tensor(np.asarray(init) if not isinstance(init, torch.Tensor) else init).float()
        if img.ndim == 3:
            img = img.unsqueeze(0)
        if img.ndim != 4 or img.shape[-1] != 3 or tuple(img.shape[1:3]) != (h, w):
            raise ShapeError(describe("init", f"an RGB image of shape ({h}, {w}, 3) or (N, {h}, {w}, 3) on the 0-255 scale",
                                      tuple(img.shape), "Resize it or change `size`."))
        if img.shape[0] not in (1, batch):
            raise ShapeError(describe("init", f"1 or {batch} images", img.shape[0]))
        return img.expand(batch, -1, -1, -1).permute(0, 3, 1, 2) / 255.0

    @property
    def native_space(self) -> ImageSpace:
        """The storage space."""
        return self.space

    def forward(self, space: Optional[ImageSpace] = None) -> torch.Tensor:
        """The image in ``space`` (default: :meth:`target_space`), (N, C, H, W)."""
        return convert(self.variable, self.space, self.target_space(space))

    def bounds(self) -> Optional[Bounds]:
        """Raw pixels in [0, 255] expressed in the storage space, shape (1, C, 1, 1); None if unbounded."""
        if not self.bounded:
            return None
        v = self.variable
        lo = torch.zeros(1, 3, 1, 1, dtype=v.dtype, device=v.device)
        lower = self.space.from_rgb01(lo)
        upper = self.space.from_rgb01(lo + 1.0)
        return torch.minimum(lower, upper), torch.maximum(lower, upper)

    def extra_repr(self) -> str:
        n, c, h, w = self.variable.shape
        return f"batch={n}, channels={c}, size=({h}, {w}), space={self.space!r}, model_space={self.model_space!r}"
