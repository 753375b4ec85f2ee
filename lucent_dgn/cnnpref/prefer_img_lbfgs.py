"""cnnpref-compatible ``prefer_img_lbfgs.generate_image`` (pixel-space L-BFGS-B, pixels in [0, 255]).

Differences from cnnpref (cnnpref_spec §11): the loss is the scalar sum over the selected units
(Q6: cnnpref returned a vector); snapshots are PNG, one per L-BFGS iteration (cnnpref numbered them
by function evaluation, Q7); ``solver="torch"`` selects the faster bounded L-BFGS in torch.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from torch import nn

from ..recipes import recipe as make_recipe
from ._compat import as_numpy, cnnpref_render, input_size, save_run_snapshots, snapshot_callbacks

__all__ = ["generate_image"]


def generate_image(net: nn.Module, layer: Any, feature_mask: Any, feature_weight: Any = 1.,
                   initial_image: Optional[np.ndarray] = None, maxiter: int = 500, disp: bool = True,
                   save_intermediate: bool = False, save_intermediate_every: int = 1,
                   save_intermediate_path: Optional[str] = None, *, image_size: Optional[int] = None,
                   seed: Optional[int] = None, solver: str = "scipy") -> np.ndarray:
    """Preferred image by L-BFGS-B. Returns RGB (H, W, 3) float64, 0-255 scale, within [0, 255]."""
    size = input_size(net, image_size, initial_image)
    init = "random" if initial_image is None else np.asarray(initial_image, dtype=np.float32)
    pieces = make_recipe("lbfgs", layer, as_numpy(feature_mask), weight=as_numpy(feature_weight), image_size=size,
                         init=init, seed=seed, maxiter=maxiter, solver=solver).build(net)
    initial = pieces.param.image_for_display()[0].cpu().numpy()
    callbacks = snapshot_callbacks(save_intermediate, save_intermediate_every, 1 if disp else 0)
    image, result = cnnpref_render(pieces, net, seed=seed, returns="clipped", callbacks=callbacks)
    save_run_snapshots(save_intermediate, save_intermediate_path, "prefer_img_lbfgs", result.snapshots, initial)
    return image
