"""cnnpref's four algorithms as compositions objective x parameterization x optimizer.

    gd         = masked_units x PixelImage (net space)      x MomentumGD (+ jitter, decay, blur, clipping)
    lbfgs      = masked_units x PixelImage (bounds [0,255]) x L-BFGS-B
    dgn_gd     = masked_units x DGNImage (code bounds)      x MomentumGD (+ code decay)
    dgn_lbfgs  = masked_units x DGNImage (code bounds)      x L-BFGS-B

They are registered as variants of :func:`lucent_dgn.recipe` (``ld.recipe("gd", layer, mask,
**options).render(model)``); ``prefer_img_*`` are thin aliases that build and render in one call.
Defaults are cnnpref's function defaults (cnnpref_spec §10); the per-script example settings are
in :data:`EXAMPLE_SETTINGS`.

Options shared by every variant: ``weight`` (unit weight, cnnpref's ``feature_weight``),
``batch``, ``init``, ``seed``, ``transforms`` (extra transforms appended to the variant's),
and the regularisers ``p_norm_weight``/``p`` and ``tv_weight``/``tv_beta`` (off by default; they
crash in cnnpref, Q1/Q2). Pixel variants: ``image_size`` (None = the model's ``input_size``, else
the side of an initial image given as ``init``; nothing is guessed), ``space``. DGN variants:
``input_size`` (None = the model's ``input_size``, else the generator's full output), ``lower``/
``upper`` code bounds, ``fit``. GD variants: the :class:`~lucent_dgn.render.gd.MomentumGD` schedules. L-BFGS variants:
``maxiter``, ``solver`` (``"torch"`` or ``"scipy"``) and that solver's options.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
from torch import nn

from ..errors import ConfigError, describe
from ..objectives import masked_units
from ..objectives.regularizers import p_norm as p_norm_objective
from ..objectives.regularizers import total_variation
from ..parameterizations.dgn import DGNImage
from ..parameterizations.pixel import PixelImage
from ._compat import input_size
from ..variants import Pieces, Recipe, Variant, recipe, register_variant, signature_defaults, split_options
from ..render.gd import MomentumGD
from ..render.lbfgs import LBFGSB, ScipyLBFGSB
from ..render.result import RenderResult
from ..render.transforms import Jitter

__all__ = ["prefer_img_gd", "prefer_img_lbfgs", "prefer_img_dgn_gd", "prefer_img_dgn_lbfgs", "VARIANTS",
           "EXAMPLE_SETTINGS", "lbfgs_solver"]

Sched = Union[float, Tuple[float, float]]

_COMMON = dict(weight=1.0, batch=1, seed=None, transforms=(), p_norm_weight=0.0, p=3, tv_weight=0.0, tv_beta=2)
_PIXEL = dict(image_size=None, space="caffe", init="random")
_DGN = dict(input_size=None, init="cnnpref", lower=0.0, upper=100.0, fit="crop")
_GD = dict(iter_n=200, lr=(2.0, 1e-10), momentum=(0.9, 0.9))
_TORCH_SOLVER = signature_defaults(LBFGSB, skip=("max_iter",))
_SCIPY_SOLVER = signature_defaults(ScipyLBFGSB, skip=("maxiter",))
_LBFGS = dict(maxiter=500, solver="torch", **_TORCH_SOLVER, **{k: v for k, v in _SCIPY_SOLVER.items()
                                                               if k not in _TORCH_SOLVER})
_SOLVERS = {"solver": ("torch", "scipy")}
_SOLVER_GROUPS = {"torch": tuple(k for k in _TORCH_SOLVER if k not in _SCIPY_SOLVER),
                  "scipy": tuple(k for k in _SCIPY_SOLVER if k not in _TORCH_SOLVER)}


def lbfgs_solver(solver: str, maxiter: int, **options: Any):
    """``"torch"``: :class:`~lucent_dgn.render.lbfgs.LBFGSB` (fast, in torch);
    ``"scipy"``: :class:`~lucent_dgn.render.lbfgs.ScipyLBFGSB` (cnnpref's solver, the reference).
    ``options`` go to the chosen solver."""
    if solver == "scipy":
        return ScipyLBFGSB(maxiter=maxiter, **{k: v for k, v in options.items() if k in _SCIPY_SOLVER})
    if solver == "torch":
        return LBFGSB(max_iter=maxiter, **{k: v for k, v in options.items() if k in _TORCH_SOLVER})
    raise ConfigError(describe("solver", "'torch' or 'scipy'", solver))


def _objective(spec: Recipe):
    if spec.objective is not None:
        return spec.objective
    o = spec.options
    obj = masked_units(spec.layer, spec.mask, weight=o["weight"])
    if o["p_norm_weight"]:
        obj = obj + p_norm_objective(p=o["p"], weight=o["p_norm_weight"])
    if o["tv_weight"]:
        obj = obj + total_variation(beta=o["tv_beta"], weight=o["tv_weight"])
    return obj


def _pixel(spec: Recipe, model: Optional[nn.Module], bounded: bool) -> PixelImage:
    o = spec.options
    image = None if isinstance(o["init"], str) else np.asarray(o["init"])
    size = input_size(model, o["image_size"], image[0] if image is not None and image.ndim == 4 else image)
    return PixelImage(size, batch=o["batch"], space=o["space"], init=o["init"], bounded=bounded, seed=o["seed"])


def _dgn(spec: Recipe, model: Optional[nn.Module], clip_initial: bool) -> DGNImage:
    o = spec.options
    size = o["input_size"] if o["input_size"] is not None else getattr(model, "input_size", None)
    return DGNImage(spec.generator, batch=o["batch"], input_size=size, fit=o["fit"], init=o["init"], lower=o["lower"],
                    upper=o["upper"], clip_initial=clip_initial, seed=o["seed"])


def _lbfgs(spec: Recipe):
    o = spec.options
    return lbfgs_solver(o["solver"], o["maxiter"], **{k: o[k] for k in (*_TORCH_SOLVER, *_SCIPY_SOLVER)})


def _build_gd(spec: Recipe, model: Optional[nn.Module]) -> Pieces:
    o = spec.options
    optimizer = MomentumGD(lr=o["lr"], momentum=o["momentum"], decay=o["decay"], grad_normalize=o["grad_normalize"],
                           blur_sigma=o["blur_sigma"], clip_extreme=o["clip_extreme"],
                           clip_extreme_every=o["clip_extreme_every"], clip_small_norm=o["clip_small_norm"],
                           clip_small_norm_every=o["clip_small_norm_every"],
                           clip_small_contribution=o["clip_small_contribution"],
                           clip_small_contribution_every=o["clip_small_contribution_every"], project=o["bounded"],
                           faithful_jitter_momentum=o["faithful_jitter_momentum"])
    transforms = ([Jitter(o["jitter_size"])] if o["jitter_size"] else []) + list(o["transforms"])
    return Pieces(_objective(spec), _pixel(spec, model, o["bounded"]), optimizer, o["iter_n"], transforms,
                  seed=o["seed"])


def _build_lbfgs(spec: Recipe, model: Optional[nn.Module]) -> Pieces:
    o = spec.options
    return Pieces(_objective(spec), _pixel(spec, model, True), _lbfgs(spec), o["maxiter"], list(o["transforms"]),
                  seed=o["seed"])


def _build_dgn_gd(spec: Recipe, model: Optional[nn.Module]) -> Pieces:
    o = spec.options
    optimizer = MomentumGD(lr=o["lr"], momentum=o["momentum"], decay=o["decay"], grad_normalize=True, project=True)
    return Pieces(_objective(spec), _dgn(spec, model, o["clip_initial"]), optimizer, o["iter_n"],
                  list(o["transforms"]), seed=o["seed"])


def _build_dgn_lbfgs(spec: Recipe, model: Optional[nn.Module]) -> Pieces:
    o = spec.options
    return Pieces(_objective(spec), _dgn(spec, model, True), _lbfgs(spec), o["maxiter"], list(o["transforms"]),
                  seed=o["seed"])


register_variant(Variant(
    "gd", {**_COMMON, **_PIXEL, **_GD, "decay": (0.1, 0.1), "grad_normalize": True, "jitter_size": 32,
           "blur_sigma": (2.0, 0.5), "clip_extreme": None, "clip_extreme_every": 4, "clip_small_norm": None,
           "clip_small_norm_every": 4, "clip_small_contribution": None, "clip_small_contribution_every": 4,
           "faithful_jitter_momentum": False, "bounded": False},
    _build_gd, summary="prefer_img_gd: masked units x pixel image x momentum GD (jitter, decay, blur, clipping)"))
register_variant(Variant(
    "lbfgs", {**_COMMON, **_PIXEL, **_LBFGS}, _build_lbfgs, option_groups=_SOLVER_GROUPS, choices=_SOLVERS,
    summary="prefer_img_lbfgs: masked units x pixel image in [0, 255] x L-BFGS-B"))
register_variant(Variant(
    "dgn_gd", {**_COMMON, **_DGN, **_GD, "decay": (0.01, 0.01), "clip_initial": False}, _build_dgn_gd,
    needs_generator=True, summary="prefer_img_dgn_gd: masked units x generator code (bounds) x momentum GD"))
register_variant(Variant(
    "dgn_lbfgs", {**_COMMON, **_DGN, **_LBFGS}, _build_dgn_lbfgs, needs_generator=True,
    option_groups=_SOLVER_GROUPS, choices=_SOLVERS, summary="prefer_img_dgn_lbfgs: masked units x generator code (bounds) x L-BFGS-B"))


def _alias(variant: str, model: nn.Module, generator: Optional[nn.Module], layer: Any, mask: Any, weight: Any,
           kwargs: Dict[str, Any]) -> RenderResult:
    options, render_options = split_options(kwargs)
    return recipe(variant, layer, mask, generator, weight=weight, **options).render(model, **render_options)


def prefer_img_gd(model: nn.Module, layer: Any, mask: Any, weight: Any = 1.0, **kwargs: Any) -> RenderResult:
    """``recipe("gd", layer, mask, weight=weight, **options).render(model, **render_options)``:
    keywords are the variant's options (:func:`lucent_dgn.recipe_options`) and render options."""
    return _alias("gd", model, None, layer, mask, weight, kwargs)


def prefer_img_lbfgs(model: nn.Module, layer: Any, mask: Any, weight: Any = 1.0, **kwargs: Any) -> RenderResult:
    """``recipe("lbfgs", ...)`` built and rendered in one call (see :func:`prefer_img_gd`)."""
    return _alias("lbfgs", model, None, layer, mask, weight, kwargs)


def prefer_img_dgn_gd(model: nn.Module, generator: nn.Module, layer: Any, mask: Any, weight: Any = 1.0,
                      **kwargs: Any) -> RenderResult:
    """``recipe("dgn_gd", layer, mask, generator, ...)`` built and rendered in one call."""
    return _alias("dgn_gd", model, generator, layer, mask, weight, kwargs)


def prefer_img_dgn_lbfgs(model: nn.Module, generator: nn.Module, layer: Any, mask: Any, weight: Any = 1.0,
                         **kwargs: Any) -> RenderResult:
    """``recipe("dgn_lbfgs", layer, mask, generator, ...)`` built and rendered in one call."""
    return _alias("dgn_lbfgs", model, generator, layer, mask, weight, kwargs)


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
