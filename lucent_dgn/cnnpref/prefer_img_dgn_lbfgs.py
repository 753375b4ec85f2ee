"""cnnpref-compatible ``prefer_img_dgn_lbfgs.generate_image`` (L-BFGS-B on the generator code).

``net_gen`` is any generator module, as in :mod:`lucent_dgn.cnnpref.prefer_img_dgn_gd` (a plain
``nn.Module`` needs ``initial_gen_feat`` for its code shape; its output is taken to be Caffe net
space unless it declares ``output_space``). ``gen_feat_bounds`` is a list of (min, max) pairs,
one per code unit (None or +-inf: unbounded); default (0, 100) for every unit. Differences: the loss is the scalar sum (Q6); no ``t=N`` line is
printed on every evaluation (Q19); ``solver="torch"`` selects the bounded L-BFGS in torch.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
from torch import nn

from ..errors import BoundsError, describe
from ..recipes import recipe as make_recipe
from ._compat import as_generator, as_numpy, cnnpref_render, input_size, save_run_snapshots, snapshot_callbacks

__all__ = ["generate_image"]


def _split_bounds(bounds: Optional[Sequence[Tuple[Any, Any]]]):
    if bounds is None:
        return 0.0, 100.0
    try:
        pairs = [(-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi)) for lo, hi in bounds]
    except (TypeError, ValueError):
        raise BoundsError(describe("gen_feat_bounds", "a list of (min, max) pairs", type(bounds).__name__)) from None
    arr = np.asarray(pairs, dtype=np.float32)
    return arr[:, 0], arr[:, 1]


def generate_image(net_gen: nn.Module, net: nn.Module, layer: Any, feature_mask: Any, feature_weight: Any = 1.,
                   initial_gen_feat: Optional[np.ndarray] = None, gen_feat_bounds: Any = None,
                   input_layer_gen: Any = None, output_layer_gen: Any = None, maxiter: int = 500, disp: bool = True,
                   save_intermediate: bool = False, save_intermediate_every: int = 1,
                   save_intermediate_path: Optional[str] = None, *, image_size: Optional[int] = None,
                   seed: Optional[int] = None, solver: str = "scipy") -> np.ndarray:
    """Preferred image through a generator by L-BFGS-B. Returns RGB (H, W, 3) float32, 0-255, unclipped."""
    size = input_size(net, image_size)
    lower, upper = _split_bounds(gen_feat_bounds)
    generator = as_generator(net_gen, initial_gen_feat)
    pieces = make_recipe("dgn_lbfgs", layer, as_numpy(feature_mask), generator, weight=as_numpy(feature_weight),
                         input_size=size, init="cnnpref" if initial_gen_feat is None else as_numpy(initial_gen_feat),
                         lower=lower, upper=upper, seed=seed, maxiter=maxiter, solver=solver).build(net)
    callbacks = snapshot_callbacks(save_intermediate, save_intermediate_every, 1 if disp else 0)
    image, result = cnnpref_render(pieces, net, seed=seed, callbacks=callbacks)
    save_run_snapshots(save_intermediate, save_intermediate_path, "prefer_img_dgn_lbfgs", result.snapshots)
    return image
