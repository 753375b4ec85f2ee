"""cnnpref's four algorithms as compositions objective x parameterization x optimizer.

    prefer_img_gd         = masked_units x PixelImage (net space)      x MomentumGD (+ jitter, decay, blur, clipping)
    prefer_img_lbfgs      = masked_units x PixelImage (bounds [0,255]) x L-BFGS-B
    prefer_img_dgn_gd     = masked_units x DGNImage (code bounds)      x MomentumGD (+ code decay)
    prefer_img_dgn_lbfgs  = masked_units x DGNImage (code bounds)      x L-BFGS-B

Each ``*_recipe`` function returns a :class:`Recipe` (the pieces, ready to inspect or change);
each ``prefer_img_*`` function builds the recipe and renders it. Defaults are cnnpref's
function defaults (cnnpref_spec §10); the per-script example settings are in
:data:`EXAMPLE_SETTINGS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..errors import ConfigError, describe
from ..objectives import masked_units
from ..objectives.regularizers import p_norm as p_norm_objective
from ..objectives.regularizers import total_variation
from ..parameterizations.dgn import DGNImage
from ..parameterizations.pixel import PixelImage
from ..render.gd import MomentumGD
from ..render._setup import device_of
from ..render.loop import render
from ..render.result import RenderResult
from ..render.transforms import Jitter

__all__ = ["Recipe", "gd_recipe", "lbfgs_recipe", "dgn_gd_recipe", "dgn_lbfgs_recipe", "prefer_img_gd",
           "prefer_img_lbfgs", "prefer_img_dgn_gd", "prefer_img_dgn_lbfgs", "VARIANTS", "EXAMPLE_SETTINGS",
           "lbfgs_solver"]

Sched = Union[float, Tuple[float, float]]


@dataclass
class Recipe:
    """The pieces of one preset. ``recipe.render(model)`` runs :func:`lucent_dgn.render` on them."""

    objective: Any
    param: Any
    optimizer: Any
    steps: int
    transforms: List[Callable] = field(default_factory=list)
    name: str = ""

    def render(self, model: nn.Module, **kwargs: Any) -> RenderResult:
        """Render on ``model`` (keyword arguments go to :func:`lucent_dgn.render`)."""
        self.param.to(device_of(model) or torch.device("cpu"))
        result = render(model, self.objective, self.param, self.optimizer, self.steps,
                        transforms=self.transforms, **kwargs)
        result.settings["variant"] = self.name
        return result


def _objective(layer, mask, weight, reg: Dict[str, Any]):
    obj = masked_units(layer, mask, weight=weight)
    if reg.get("p_norm_weight"):
        obj = obj + p_norm_objective(p=reg.get("p", 3), weight=reg["p_norm_weight"])
    if reg.get("tv_weight"):
        obj = obj + total_variation(beta=reg.get("tv_beta", 2), weight=reg["tv_weight"])
    return obj


def lbfgs_solver(solver: str, maxiter: int, **options: Any):
    """``"torch"``: :class:`~lucent_dgn.render.lbfgs.LBFGSB` (fast, in torch);
    ``"scipy"``: :class:`~lucent_dgn.render.lbfgs.ScipyLBFGSB` (cnnpref's solver, the reference)."""
    from ..render.lbfgs import LBFGSB, ScipyLBFGSB
    if solver == "scipy":
        return ScipyLBFGSB(maxiter=maxiter, **options)
    if solver == "torch":
        return LBFGSB(max_iter=maxiter, **options)
    raise ConfigError(describe("solver", "'torch' or 'scipy'", solver))


def gd_recipe(layer: Any, mask: Any, weight: Any = 1.0, *, image_size: int = 227, batch: int = 1,
              space: Any = "caffe", init: Any = "random", seed: Optional[int] = None,
              iter_n: int = 200, lr: Sched = (2.0, 1e-10), momentum: Sched = (0.9, 0.9), decay: Sched = (0.1, 0.1),
              grad_normalize: bool = True, jitter_size: int = 32, blur_sigma: Optional[Sched] = (2.0, 0.5),
              clip_extreme: Optional[Sched] = None, clip_extreme_every: int = 4,
              clip_small_norm: Optional[Sched] = None, clip_small_norm_every: int = 4,
              clip_small_contribution: Optional[Sched] = None, clip_small_contribution_every: int = 4,
              p_norm_weight: float = 0.0, p: float = 3, tv_weight: float = 0.0, tv_beta: float = 2,
              faithful_jitter_momentum: bool = False, bounded: bool = False) -> Recipe:
    """prefer_img_gd: masked units x pixel image x momentum GD with jitter, decay, blur and clipping.

    ``jitter_size=0`` and ``blur_sigma=None`` switch those off; ``bounded=True`` projects pixels
    onto [0, 255] after each step (cnnpref does not, Q5). p-norm/TV regularisers (broken in
    cnnpref, Q1/Q2) are added as objective terms with constant weights.
    """
    objective = _objective(layer, mask, weight, dict(p_norm_weight=p_norm_weight, p=p, tv_weight=tv_weight,
                                                     tv_beta=tv_beta))
    param = PixelImage(image_size, batch=batch, space=space, init=init, bounded=bounded, seed=seed)
    optimizer = MomentumGD(lr=lr, momentum=momentum, decay=decay, grad_normalize=grad_normalize, blur_sigma=blur_sigma,
                           clip_extreme=clip_extreme, clip_extreme_every=clip_extreme_every,
                           clip_small_norm=clip_small_norm, clip_small_norm_every=clip_small_norm_every,
                           clip_small_contribution=clip_small_contribution,
                           clip_small_contribution_every=clip_small_contribution_every, project=bounded,
                           faithful_jitter_momentum=faithful_jitter_momentum)
    transforms = [Jitter(jitter_size)] if jitter_size else []
    return Recipe(objective, param, optimizer, iter_n, transforms, "prefer_img_gd")


def lbfgs_recipe(layer: Any, mask: Any, weight: Any = 1.0, *, image_size: int = 227, batch: int = 1,
                 space: Any = "caffe", init: Any = "random", seed: Optional[int] = None, maxiter: int = 500,
                 solver: str = "torch", **solver_options: Any) -> Recipe:
    """prefer_img_lbfgs: masked units x pixel image bounded to raw [0, 255] x L-BFGS-B (scalar sum loss)."""
    objective = masked_units(layer, mask, weight=weight)
    param = PixelImage(image_size, batch=batch, space=space, init=init, bounded=True, seed=seed)
    return Recipe(objective, param, lbfgs_solver(solver, maxiter, **solver_options), maxiter, [], "prefer_img_lbfgs")


def dgn_gd_recipe(generator: nn.Module, layer: Any, mask: Any, weight: Any = 1.0, *, input_size: Optional[int] = 227,
                  batch: int = 1, init: Any = "cnnpref", lower: Any = 0.0, upper: Any = 100.0,
                  seed: Optional[int] = None, iter_n: int = 200, lr: Sched = (2.0, 1e-10),
                  momentum: Sched = (0.9, 0.9), decay: Sched = (0.01, 0.01), clip_initial: bool = False) -> Recipe:
    """prefer_img_dgn_gd: masked units x DGN code x momentum GD (gradient always normalised, code decay,
    then projection onto the code bounds)."""
    objective = masked_units(layer, mask, weight=weight)
    param = DGNImage(generator, batch=batch, input_size=input_size, init=init, lower=lower, upper=upper,
                     clip_initial=clip_initial, seed=seed)
    optimizer = MomentumGD(lr=lr, momentum=momentum, decay=decay, grad_normalize=True, project=True)
    return Recipe(objective, param, optimizer, iter_n, [], "prefer_img_dgn_gd")


def dgn_lbfgs_recipe(generator: nn.Module, layer: Any, mask: Any, weight: Any = 1.0, *,
                     input_size: Optional[int] = 227, batch: int = 1, init: Any = "cnnpref", lower: Any = 0.0,
                     upper: Any = 100.0, seed: Optional[int] = None, maxiter: int = 500, solver: str = "torch",
                     **solver_options: Any) -> Recipe:
    """prefer_img_dgn_lbfgs: masked units x DGN code (box bounds) x L-BFGS-B."""
    objective = masked_units(layer, mask, weight=weight)
    param = DGNImage(generator, batch=batch, input_size=input_size, init=init, lower=lower, upper=upper,
                     clip_initial=True, seed=seed)
    return Recipe(objective, param, lbfgs_solver(solver, maxiter, **solver_options), maxiter, [],
                  "prefer_img_dgn_lbfgs")


def _render_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    keys = ("progress", "callbacks", "device", "stop_early", "preserve_pre_relu")
    return {k: kwargs.pop(k) for k in keys if k in kwargs}


def _image_size(model: nn.Module, kwargs: Dict[str, Any], key: str) -> None:
    if kwargs.get(key) is None and hasattr(model, "input_size"):
        kwargs[key] = int(model.input_size)


def prefer_img_gd(model: nn.Module, layer: Any, mask: Any, weight: Any = 1.0, **kwargs: Any) -> RenderResult:
    """Render with :func:`gd_recipe` (keywords: the recipe's, plus render's progress/callbacks/device)."""
    rk = _render_kwargs(kwargs)
    _image_size(model, kwargs, "image_size")
    return gd_recipe(layer, mask, weight, **kwargs).render(model, seed=kwargs.get("seed"), **rk)


def prefer_img_lbfgs(model: nn.Module, layer: Any, mask: Any, weight: Any = 1.0, **kwargs: Any) -> RenderResult:
    """Render with :func:`lbfgs_recipe`."""
    rk = _render_kwargs(kwargs)
    _image_size(model, kwargs, "image_size")
    return lbfgs_recipe(layer, mask, weight, **kwargs).render(model, seed=kwargs.get("seed"), **rk)


def prefer_img_dgn_gd(model: nn.Module, generator: nn.Module, layer: Any, mask: Any, weight: Any = 1.0,
                      **kwargs: Any) -> RenderResult:
    """Render with :func:`dgn_gd_recipe`."""
    rk = _render_kwargs(kwargs)
    _image_size(model, kwargs, "input_size")
    return dgn_gd_recipe(generator, layer, mask, weight, **kwargs).render(model, seed=kwargs.get("seed"), **rk)


def prefer_img_dgn_lbfgs(model: nn.Module, generator: nn.Module, layer: Any, mask: Any, weight: Any = 1.0,
                         **kwargs: Any) -> RenderResult:
    """Render with :func:`dgn_lbfgs_recipe`."""
    rk = _render_kwargs(kwargs)
    _image_size(model, kwargs, "input_size")
    return dgn_lbfgs_recipe(generator, layer, mask, weight, **kwargs).render(model, seed=kwargs.get("seed"), **rk)


VARIANTS: Dict[str, Callable[..., RenderResult]] = {
    "gd": prefer_img_gd, "lbfgs": prefer_img_lbfgs, "dgn_gd": prefer_img_dgn_gd, "dgn_lbfgs": prefer_img_dgn_lbfgs,
}

#: cnnpref's example-script settings (spec §9.2) per (variant, "lower"|"higher").
EXAMPLE_SETTINGS: Dict[Tuple[str, str], Dict[str, Any]] = {
    ("gd", "lower"): dict(weight=1.0, iter_n=200, lr=(1.0, 1.0), momentum=(0.001, 0.001), decay=(0.001, 0.001),
                          blur_sigma=(2.5, 0.5), jitter_size=4, clip_small_norm=(5.0, 5.0), clip_small_norm_every=1,
                          clip_small_contribution=(5.0, 5.0), clip_small_contribution_every=1),
    ("gd", "higher"): dict(weight=1.0, iter_n=200, lr=(1.0, 1.0), momentum=(0.001, 0.001), decay=(0.001, 0.001),
                           blur_sigma=(2.5, 0.5), jitter_size=32, clip_small_norm=(5.0, 5.0), clip_small_norm_every=1,
                           clip_small_contribution=(5.0, 5.0), clip_small_contribution_every=1),
    ("lbfgs", "lower"): dict(weight=1.0, maxiter=50, init="black"),
    ("lbfgs", "higher"): dict(weight=10.0, maxiter=500, init="black"),
    ("dgn_gd", "lower"): dict(weight=1.0, iter_n=200, lr=(0.1, 0.01), momentum=(0.1, 0.1), decay=(0.001, 0.001)),
    ("dgn_gd", "higher"): dict(weight=10.0, iter_n=200, lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.01, 0.01)),
    ("dgn_lbfgs", "lower"): dict(weight=0.05, maxiter=200),
    ("dgn_lbfgs", "higher"): dict(weight=10.0, maxiter=500),
}
