"""cnnpref-compatible ``prefer_img_dgn_gd.generate_image`` (gradient descent on the generator code).

``net_gen`` is any generator module, e.g. :func:`lucent_dgn.generators.deepsim_generator` or a
plain ``nn.Module``: without a ``code_shape`` attribute the code shape is that of
``initial_gen_feat`` (required then), and without an ``output_space`` attribute its output is taken
to be Caffe net space, as cnnpref does. ``net`` is the classifier; the image size is the one it
declares (``net.input_size``) unless ``image_size`` is given. ``input_layer_gen`` and
``output_layer_gen`` are accepted for compatibility and ignored (a PyTorch generator has one
input and one output).

Differences (cnnpref_spec §11): Q8 -- cnnpref returns the image generated *before* the last
update; this returns the image of the final code. ``return_pre_update_image=True`` gives
cnnpref's image (to reproduce published figures).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from torch import nn

from ..recipes import recipe as make_recipe
from ._compat import as_generator, as_numpy, cnnpref_render, input_size, save_run_snapshots, snapshot_callbacks

__all__ = ["generate_image"]


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
    generator = as_generator(net_gen, initial_gen_feat)
    pieces = make_recipe("dgn_gd", layer, as_numpy(feature_mask), generator, weight=as_numpy(feature_weight),
                         input_size=size, init="cnnpref" if initial_gen_feat is None else as_numpy(initial_gen_feat),
                         lower=feat_lower_bound, upper=feat_upper_bound, seed=seed, iter_n=iter_n,
                         lr=(lr_start, lr_end), momentum=(momentum_start, momentum_end),
                         decay=(decay_start, decay_end)).build(net)
    callbacks = snapshot_callbacks(save_intermediate, save_intermediate_every, disp_every)
    image, result = cnnpref_render(pieces, net, seed=seed, returns="pre_update" if return_pre_update_image else "final",
                                   callbacks=callbacks)
    save_run_snapshots(save_intermediate, save_intermediate_path, "prefer_img_dgn_gd", result.snapshots)
    return image
