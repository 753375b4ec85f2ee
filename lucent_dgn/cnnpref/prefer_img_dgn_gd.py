"""cnnpref-compatible ``prefer_img_dgn_gd.generate_image`` (gradient descent on the generator code).

``net_gen`` is a generator module (e.g. :func:`lucent_dgn.generators.deepsim_generator`) with
``code_shape`` and ``output_space``; ``net`` the classifier. ``input_layer_gen`` and
``output_layer_gen`` are accepted for compatibility and ignored (a PyTorch generator has one
input and one output).

Differences (cnnpref_spec §11): Q8 -- cnnpref returns the image generated *before* the last
update; this returns the image of the final code. ``return_pre_update_image=True`` gives
cnnpref's image (to reproduce published figures).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..recipes import recipe as make_recipe
from ._compat import as_numpy, input_size, net_space, save_run_snapshots, snapshot_callbacks

__all__ = ["generate_image"]


class _PreviousCode:
    """Remembers the code before the latest update (for cnnpref's stale return value, Q8)."""

    def __init__(self, code: torch.Tensor) -> None:
        self.previous = code.detach().clone()
        self.current = code.detach().clone()

    def __call__(self, info) -> None:
        self.previous = self.current
        self.current = info.param.variable.detach().clone()


def generate_image(net_gen: nn.Module, net: nn.Module, layer: Any, feature_mask: Any, feature_weight: Any = 1.,
                   initial_gen_feat: Optional[np.ndarray] = None, feat_upper_bound: Any = 100.,
                   feat_lower_bound: Any = 0., input_layer_gen: Any = None, output_layer_gen: Any = None,
                   iter_n: int = 200, lr_start: float = 2., lr_end: float = 1e-10, momentum_start: float = 0.9,
                   momentum_end: float = 0.9, decay_start: float = 0.01, decay_end: float = 0.01,
                   disp_every: int = 1, save_intermediate: bool = False, save_intermediate_every: int = 1,
                   save_intermediate_path: Optional[str] = None, *, image_size: Optional[int] = None,
                   seed: Optional[int] = None, return_pre_update_image: bool = False) -> np.ndarray:
    """Preferred image through a generator by momentum GD. Returns RGB (H, W, 3) float32, 0-255, unclipped."""
    size = input_size(net, image_size)
    pieces = make_recipe("dgn_gd", layer, as_numpy(feature_mask), net_gen, weight=as_numpy(feature_weight),
                         input_size=size, init="cnnpref" if initial_gen_feat is None else as_numpy(initial_gen_feat),
                         lower=feat_lower_bound, upper=feat_upper_bound, seed=seed, iter_n=iter_n,
                         lr=(lr_start, lr_end), momentum=(momentum_start, momentum_end),
                         decay=(decay_start, decay_end)).build(net)
    callbacks = snapshot_callbacks(save_intermediate, save_intermediate_every, disp_every)
    tracker = _PreviousCode(pieces.param.variable)
    callbacks.append(tracker)
    result = pieces.render(net, seed=seed, progress=False, callbacks=callbacks, input_space=net_space(net))
    save_run_snapshots(save_intermediate, save_intermediate_path, "prefer_img_dgn_gd", result.snapshots)
    if not return_pre_update_image:
        return np.float32(result.images_255[0])
    param = pieces.param
    with torch.no_grad():
        param.variable.copy_(tracker.previous)
        image = param.to_rgb(param())[0].cpu().numpy() * 255.0
        param.variable.copy_(result.final_params)
    return np.float32(image)
