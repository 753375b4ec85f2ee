"""Deep generator network (DGN) parameterization: optimise the input code of an image generator.

    code z (N, *code_shape) --generator--> image (N, C, G, G) in the generator's output space
        --centre crop (or resize) to S--> --convert to the model's input space--> model

This is the image prior of Nguyen et al. 2016 (DGN-AM, arXiv:1605.09304) with the DeePSiM
generators of Dosovitskiy & Brox 2016 (arXiv:1602.02644), as used by cnnpref's
``prefer_img_dgn_gd`` / ``prefer_img_dgn_lbfgs``. In lucent_dgn's render loop no clamp sits in
the gradient path: the model sees the raw generator output (clamping is for display only), and
pixels outside the crop get exactly zero gradient. Under Lucent's ``render_vis``
(:meth:`~lucent_dgn.parameterizations.base.Parameterization.lucent_param_f`) the image is RGB
clipped to [0, 1] with a straight-through gradient, the code is projected into its bounds after
every optimizer step, and the generator is called statelessly (detached weights, eval mode).
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, LucentDGNError, describe
from ..spaces import ImageSpace, convert
from .base import Bounds, Parameterization
from .codes import BoundSpec, code_bounds, initial_code

__all__ = ["DGNImage"]


class DGNImage(Parameterization):
    """Images produced by a generator from optimised codes.

    Args:
        generator: an ``nn.Module`` mapping codes (N, *code_shape) to images (N, C, G, G), with
            attributes ``code_shape`` (tuple) and ``output_space`` (an ImageSpace; the DeePSiM
            generators output Caffe net space: BGR, mean-subtracted, 0-255).
        batch: number of codes N. Default 1.
        input_size: the model's input size S; the generator output is centre-cropped to S x S at
            offset ((G-S)//2, (G-S)//2) (cnnpref: 256 -> 227 at 14). None = the full output.
        fit: ``"crop"`` (default) or ``"resize"`` (bilinear) when the sizes differ.
        model_space: the model's input space, if you want to declare it here; None (default) =
            resolved by each render (see :func:`lucent_dgn.render`).
        init: initial code: ``"cnnpref"`` (10·ReLU(N(0,1)), default), ``"normal"`` (N(0,1), DGN-AM),
            ``"zeros"``, ``"stats"`` (mean + std·N(0,1) from the generator's code statistics) or an array.
        lower, upper: code bounds: scalar, one value per unit, or an act_range file path; None
            = unbounded on that side. Defaults 0 and 100 (cnnpref's defaults).
        clip_initial: clip the initial code into the bounds (cnnpref's DGN-GD does not; L-BFGS-B
            always does). Default False.
        seed: seed for the random initial code (local generator).
    """

    def __init__(self, generator: nn.Module, batch: int = 1, input_size: Optional[int] = None,
                 fit: str = "crop", model_space: Optional[ImageSpace] = None,
                 init: Union[str, np.ndarray, torch.Tensor] = "cnnpref",
                 lower: BoundSpec = 0.0, upper: BoundSpec = 100.0, clip_initial: bool = False,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        for attr in ("code_shape", "output_space"):
            if not hasattr(generator, attr):
                raise ConfigError(describe("generator", f"a generator module with a `{attr}` attribute",
                                           type(generator).__name__))
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch <= 0:
            raise ConfigError(describe("batch", "a positive integer", batch))
        if fit not in ("crop", "resize"):
            raise ConfigError(describe("fit", "'crop' or 'resize'", fit))
        self.generator = generator
        self.code_shape: Tuple[int, ...] = tuple(int(s) for s in generator.code_shape)
        self.input_size = input_size
        self.fit = fit
        self.model_space = model_space
        try:
            stats = getattr(generator, "code_stats", None) or {}
        except LucentDGNError:  # a generator without stored statistics
            stats = {}
        code = initial_code(init, batch, self.code_shape, seed=seed,
                            mean=_stat(stats, "mean"), std=_stat(stats, "std"))
        lo, hi = code_bounds(lower, upper, self.code_shape)
        self.register_buffer("lower", lo.unsqueeze(0), persistent=False)
        self.register_buffer("upper", hi.unsqueeze(0), persistent=False)
        try:
            ref = next(generator.parameters())
            dtype = ref.dtype if ref.is_floating_point() else code.dtype
            code = code.to(ref.device, dtype)
            self.lower, self.upper = self.lower.to(ref.device, dtype), self.upper.to(ref.device, dtype)
        except StopIteration:
            pass
        self.variable = nn.Parameter(code.contiguous())
        if clip_initial:
            self.project_()

    def frozen_modules(self) -> List[nn.Module]:
        """Modules the render loop freezes (the generator), called through :meth:`call_frozen`."""
        return [self.generator]

    def generate(self) -> torch.Tensor:
        """Full generator output (N, C, G, G) in the generator's output space."""
        return self.call_frozen(self.generator, self.variable)

    def fit_to_model(self, image: torch.Tensor) -> torch.Tensor:
        """Crop or resize a generator image to the model's input size (no clamp)."""
        size = self.input_size
        if size is None or (image.shape[-2] == size and image.shape[-1] == size):
            return image
        if self.fit == "resize":
            return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
        h, w = image.shape[-2:]
        if size > h or size > w:
            raise ConfigError(describe("input_size", f"at most the generator's output size {h}x{w}", size,
                                       "Use fit='resize' to upsample."))
        top, left = (h - size) // 2, (w - size) // 2
        return image[..., top:top + size, left:left + size]

    @property
    def native_space(self) -> ImageSpace:
        """The generator's output space."""
        return self.generator.output_space

    def forward(self, space: Optional[ImageSpace] = None) -> torch.Tensor:
        """The model input (N, C, S, S) in ``space`` (default: :meth:`target_space`)."""
        image = self.fit_to_model(self.generate())
        return convert(image, self.generator.output_space, self.target_space(space))

    def bounds(self) -> Optional[Bounds]:
        if torch.isinf(self.lower).all() and torch.isinf(self.upper).all():
            return None
        return self.lower, self.upper

    def extra_repr(self) -> str:
        return (f"batch={self.batch_size}, code_shape={self.code_shape}, input_size={self.input_size}, "
                f"fit={self.fit!r}, model_space={self.model_space!r}")


def _stat(stats: dict, key: str) -> Optional[torch.Tensor]:
    value = stats.get(key) if isinstance(stats, dict) else None
    return None if value is None else torch.as_tensor(value).float()
