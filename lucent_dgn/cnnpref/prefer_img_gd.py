"""cnnpref-compatible ``prefer_img_gd.generate_image`` (pixel-space gradient descent with momentum).

Change only the import: ``from lucent_dgn.cnnpref.prefer_img_gd import generate_image``. Arguments
and defaults are cnnpref's (cnnpref_spec §3.1); ``net`` is a PyTorch model whose input is in
Caffe net space (or any space it declares as ``net.input_space``).

Deliberate differences (cnnpref_spec §11):
* Q1/Q2: the p-norm and TV regularisers work (as objective terms with weight ``lamda_start``).
* Q3: the momentum buffer is kept in the un-jittered frame; ``faithful_jitter_momentum=True``
  reproduces cnnpref's buffer (only matters with large momentum).
* Snapshots are PNG (``%05d.png``), written after the run; ``disp`` prints the signed mean.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from torch import nn

from ..recipes import recipe as make_recipe
from ._compat import as_numpy, cnnpref_render, input_size, save_run_snapshots, snapshot_callbacks

__all__ = ["generate_image"]


def generate_image(net: nn.Module, layer: Any, feature_mask: Any, feature_weight: Any = 1.,
                   initial_image: Optional[np.ndarray] = None, iter_n: int = 200, lr_start: float = 2.,
                   lr_end: float = 1e-10, momentum_start: float = 0.9, momentum_end: float = 0.9,
                   decay_start: float = 0.1, decay_end: float = 0.1, grad_normalize: bool = True,
                   image_jitter: bool = True, jitter_size: int = 32, image_blur: bool = True,
                   sigma_start: float = 2., sigma_end: float = 0.5, use_p_norm_reg: bool = False, p: float = 3,
                   lamda_start: float = 0.5, lamda_end: float = 0.5, use_TV_norm_reg: bool = False,
                   TVbeta: float = 2, TVlamda_start: float = 0.5, TVlamda_end: float = 0.5,
                   clip_extreme: bool = False, clip_extreme_every: int = 4, e_pct_start: float = 1,
                   e_pct_end: float = 1, clip_small_norm: bool = False, clip_small_norm_every: int = 4,
                   n_pct_start: float = 5., n_pct_end: float = 5., clip_small_contribution: bool = False,
                   clip_small_contribution_every: int = 4, c_pct_start: float = 5., c_pct_end: float = 5.,
                   disp_every: int = 1, save_intermediate: bool = False, save_intermediate_every: int = 1,
                   save_intermediate_path: Optional[str] = None, *, image_size: Optional[int] = None,
                   seed: Optional[int] = None, faithful_jitter_momentum: bool = False) -> np.ndarray:
    """Preferred image by pixel gradient descent. Returns RGB (H, W, 3) float32, 0-255 scale, unclipped."""
    size = input_size(net, image_size, initial_image)
    init = "random" if initial_image is None else np.asarray(initial_image, dtype=np.float32)
    pieces = make_recipe(
        "gd", layer, as_numpy(feature_mask), weight=as_numpy(feature_weight), image_size=size, init=init, seed=seed,
        iter_n=iter_n, lr=(lr_start, lr_end), momentum=(momentum_start, momentum_end),
        decay=(decay_start, decay_end), grad_normalize=grad_normalize,
        jitter_size=jitter_size if image_jitter else 0,
        blur_sigma=(sigma_start, sigma_end) if image_blur else None,
        clip_extreme=(e_pct_start, e_pct_end) if clip_extreme else None, clip_extreme_every=clip_extreme_every,
        clip_small_norm=(n_pct_start, n_pct_end) if clip_small_norm else None,
        clip_small_norm_every=clip_small_norm_every,
        clip_small_contribution=(c_pct_start, c_pct_end) if clip_small_contribution else None,
        clip_small_contribution_every=clip_small_contribution_every,
        p_norm_weight=lamda_start if use_p_norm_reg else 0.0, p=p,
        tv_weight=TVlamda_start if use_TV_norm_reg else 0.0, tv_beta=TVbeta,
        faithful_jitter_momentum=faithful_jitter_momentum).build(net)
    initial = pieces.param.image_for_display()[0].cpu().numpy()
    callbacks = snapshot_callbacks(save_intermediate, save_intermediate_every, disp_every)
    image, result = cnnpref_render(pieces, net, seed=seed, callbacks=callbacks)
    save_run_snapshots(save_intermediate, save_intermediate_path, "prefer_img_gd", result.snapshots, initial)
    return image
