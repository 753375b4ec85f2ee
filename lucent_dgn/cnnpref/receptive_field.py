"""cnnpref's ``create_receptive_field_mask``: the image region that can influence chosen units."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..layers import resolve_layer
from ..objectives.masks import as_bool_mask
from ..render.hooks import ActivationCapture, frozen, preserve_pre_activations
from ._compat import input_size

__all__ = ["receptive_field_mask"]


def receptive_field_mask(net: nn.Module, layer: Any, feature_mask: Any, image_size: Optional[int] = None,
                         channels: int = 3, trials: int = 3, seed: Optional[int] = 0) -> np.ndarray:
    """(H, W, channels) uint8 mask: 1 inside the bounding box of the units' receptive field.

    The image side is ``image_size``, else the size the model declares (``net.input_size``); a
    model that declares none needs ``image_size`` (ConfigError otherwise). The random probe images
    have the model's input channels (``net.input_space.channels``, else 3).

    As cnnpref: for fc-like masks (1-D, or 1x1 spatial) the whole image. Otherwise, for each of
    ``trials`` random images (integers in [0, 255] minus their own mean), the gradient of the
    selected units (times 10) is taken with respect to the input; pixels with a non-zero
    gradient in any channel are united over the trials, and the mask is their bounding box.
    For AlexNet's conv1 centre unit (27, 27) this is the 11x11 box at rows/cols 108-118.
    """
    mask = as_bool_mask(feature_mask, "feature_mask")
    size = input_size(net, image_size)
    if mask.ndim == 1 or (mask.ndim == 3 and mask.shape[1] == 1 and mask.shape[2] == 1):
        return np.ones((size, size, channels), dtype=np.uint8)
    name, _ = resolve_layer(net, layer, arg="layer")
    in_channels = int(getattr(getattr(net, "input_space", None), "channels", 3))
    ref = next(iter(list(net.parameters()) + list(net.buffers())), torch.empty(0))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    union = torch.zeros(size, size, dtype=torch.bool)
    with frozen(net), preserve_pre_activations(net), ActivationCapture(net, [name]) as cap:
        for _ in range(trials):
            img = torch.randint(0, 256, (1, in_channels, size, size), generator=gen).float()
            img = (img - img.mean()).to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else torch.float32)
            img.requires_grad_(True)
            cap.run(img)
            feat = cap.features[name]
            sel = mask.to(feat.device).unsqueeze(0).expand_as(feat).to(feat.dtype)
            (grad,) = torch.autograd.grad((feat * sel * 10.0).sum(), img)
            union |= (grad[0].abs() > 0).any(0).cpu()
    out = np.zeros((size, size, channels), dtype=np.uint8)
    rows, cols = torch.nonzero(union, as_tuple=True)
    if rows.numel():
        out[rows.min():rows.max() + 1, cols.min():cols.max() + 1, :] = 1
    return out
