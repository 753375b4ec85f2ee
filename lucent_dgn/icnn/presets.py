"""icnn's feature inversion (Shen et al. 2019) as four compositions beside cnnpref's four.

    icnn_gd         = feature_match x PixelImage (net space)          x MomentumGD (+ decay, blur)
    icnn_lbfgs      = feature_match x PixelImage (bounds raw [0, 255]) x L-BFGS-B
    icnn_dgn_gd     = feature_match x DGNImage (code bounds)           x MomentumGD (+ code decay)
    icnn_dgn_lbfgs  = feature_match x DGNImage (code bounds)           x L-BFGS-B

Each variant is data (:data:`ICNN_VARIANTS`): the cnnpref recipe whose parameterization and
optimizer it shares, and icnn's published defaults, each with its source. :func:`icnn_recipe`
builds a :class:`~lucent_dgn.cnnpref.presets.Recipe` through that same recipe function, with
:func:`~lucent_dgn.feature_match` as the objective; :func:`invert` checks the targets against the
model before any work and renders.

Sources of the defaults (KamitaniLab/icnn, ``icnn/icnn_*.py`` ``reconstruct_image`` defaults;
its example scripts ``examples/recon_img_from_true_feature_icnn_*.py`` reproduce Shen et al.
2019; bdpy ``bdpy.recon.torch.icnn.reconstruct`` is the PyTorch port of ``icnn_gd``/``icnn_dgn_gd``):

* loss: sum of squared errors per layer (icnn ``loss_type='l2'`` = ``L2_loss``; bdpy
  ``MSELoss(reduction='sum')``); layers weighted by the inverse squared norm of their target,
  normalised to sum to 1 (icnn's example scripts; the functions' own default, and bdpy's, is
  1/L -- pass ``layer_weights="equal"``).
* ``icnn_gd``: 200 iterations; lr 2 -> 1e-10; momentum 0.9; pixel decay 0.2 -> 1e-10; gradient
  normalised by its mean absolute value; Gaussian blur sigma 2 -> 0.5 every iteration
  (``image_blur=True``; bdpy's ``blurring`` defaults to False); no jitter (``image_jitter=False``);
  initial image uniform random integers in [0, 255]; Caffe net space (BGR, mean-subtracted), so
  decay pulls towards the mean colour.
* ``icnn_lbfgs``: SciPy's L-BFGS-B, ``maxiter=500``, pixels bounded to raw [0, 255]; random
  initial image.
* ``icnn_dgn_gd``: 200 iterations; lr 2 -> 1e-10; momentum 0.9; code decay 0.01; codes clipped
  to [0, 100] after each update (``feat_lower_bound=0``, ``feat_upper_bound=100``; the scripts use
  DGN-AM's ``act_range/3x`` upper bounds); initial code N(0, 1), not clipped.
* ``icnn_dgn_lbfgs``: L-BFGS-B ``maxiter=500``, code bounds (0, 100); initial code N(0, 1)
  (clipped into the bounds, as SciPy does).

Differences from bdpy's ``icnn.reconstruct`` (jitter off and the same settings give the same
images within float32 noise; tested against the installed bdpy):

* With a generator, bdpy (and icnn) return the image and code from *before* the last update:
  here the final code's image. ``return_pre_update_image=True`` gives bdpy's (:func:`invert`).
* bdpy's jitter and blur act on a discarded copy of the image when a generator is used (they do
  nothing); here a :class:`~lucent_dgn.render.transforms.Jitter` shifts the generated image.
* bdpy's pixel jitter never re-aligns the momentum buffer with the shifted image; here the
  shift is a transform of the model input, so the buffer stays aligned (as cnnpref's fix, Q3).
* Gradient normalisation is per batch item here (bdpy supports one image at a time).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..cnnpref import presets as cnnpref_presets
from ..cnnpref.prefer_img_dgn_gd import _PreviousCode
from ..cnnpref.presets import Recipe
from ..errors import ConfigError, describe
from ..layers import layer_shapes, resolve_layer
from ..objectives.feature_match import feature_match
from ..objectives.regularizers import p_norm, total_variation
from ..render.result import RenderResult
from .targets import model_input_space

__all__ = ["ICNN_VARIANTS", "OBJECTIVE_DEFAULTS", "icnn_recipe", "icnn_options", "invert"]

#: Objective options shared by the four variants (icnn's scripts; see the module docstring).
OBJECTIVE_DEFAULTS: Dict[str, Any] = {"layer_weights": "inverse_norm", "masks": None, "metric": "mse",
                                      "reduction": "sum"}

#: The variants as data: the cnnpref recipe they share (parameterization x optimizer) and icnn's
#: defaults for its options (the sources are in the module docstring).
ICNN_VARIANTS: Dict[str, Dict[str, Any]] = {
    "icnn_gd": {
        "base": "gd",
        "defaults": dict(iter_n=200, lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.2, 1e-10), grad_normalize=True,
                         jitter_size=0, blur_sigma=(2.0, 0.5), init="random", space="caffe", bounded=False),
    },
    "icnn_lbfgs": {
        "base": "lbfgs",
        "defaults": dict(maxiter=500, init="random", space="caffe"),
    },
    "icnn_dgn_gd": {
        "base": "dgn_gd",
        "defaults": dict(iter_n=200, lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.01, 0.01), lower=0.0,
                         upper=100.0, init="normal", clip_initial=False),
    },
    "icnn_dgn_lbfgs": {
        "base": "dgn_lbfgs",
        "defaults": dict(maxiter=500, lower=0.0, upper=100.0, init="normal"),
    },
}

_BUILDERS = {"gd": cnnpref_presets.gd_recipe, "lbfgs": cnnpref_presets.lbfgs_recipe,
             "dgn_gd": cnnpref_presets.dgn_gd_recipe, "dgn_lbfgs": cnnpref_presets.dgn_lbfgs_recipe}
_POSITIONAL = ("generator", "layer", "mask", "weight")  # the base recipes' unit-objective arguments


def _variant(variant: Any) -> Dict[str, Any]:
    if variant not in ICNN_VARIANTS:
        close = difflib.get_close_matches(str(variant), list(ICNN_VARIANTS), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(describe("variant", "one of " + ", ".join(map(repr, ICNN_VARIANTS)), variant, hint))
    return ICNN_VARIANTS[variant]


def _keywords(func: Any) -> Dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in _POSITIONAL}


def icnn_options(variant: str, solver: str = "torch") -> Dict[str, Any]:
    """Option name -> default of an icnn variant: the objective's, then the base recipe's (icnn's
    values where icnn sets one), then the L-BFGS-B solver's (``solver="torch"`` or ``"scipy"``).
    :func:`invert` fills ``image_size`` / ``input_size`` from ``model.input_size``."""
    spec = _variant(variant)
    out = dict(OBJECTIVE_DEFAULTS)
    out.update(_keywords(_BUILDERS[spec["base"]]))
    out.update(spec["defaults"])
    if "lbfgs" in spec["base"]:
        from ..render.lbfgs import LBFGSB, ScipyLBFGSB
        solver_opts = _keywords((ScipyLBFGSB if solver == "scipy" else LBFGSB).__init__)
        solver_opts.pop("self", None)
        solver_opts.pop("max_iter", None)
        solver_opts.pop("maxiter", None)
        out.update({k: v for k, v in solver_opts.items() if k not in out})
    return out


def _check_options(variant: str, options: Mapping[str, Any]) -> None:
    valid = set(icnn_options(variant, options.get("solver", "torch")))
    unknown = [k for k in options if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(valid), n=1)
        hint = (f"Did you mean {close[0]!r}? " if close else "") + "Valid: " + ", ".join(sorted(valid)) + "."
        raise ConfigError(describe("options", f"options of variant {variant!r}", ", ".join(map(repr, unknown)),
                                   hint, raw=True))


def _build(variant: str, targets: Mapping[str, Any], generator: Optional[nn.Module],
           options: Mapping[str, Any]) -> Tuple[Recipe, Any]:
    """(recipe, its feature_match term)."""
    spec = _variant(variant)
    _check_options(variant, options)
    base = spec["base"]
    is_dgn = base.startswith("dgn")
    if is_dgn and generator is None:
        raise ConfigError(describe("generator", f"a generator module for variant {variant!r}", None))
    if not is_dgn and generator is not None:
        raise ConfigError(describe("generator", f"None for the pixel variant {variant!r}", type(generator).__name__,
                                   "Use 'icnn_dgn_gd' or 'icnn_dgn_lbfgs' to invert through a generator."))
    settings = dict(spec["defaults"])
    settings.update(options)
    fm = feature_match(targets, **{k: settings.pop(k, v) for k, v in OBJECTIVE_DEFAULTS.items()})
    objective = fm
    if base == "gd":  # constant-weight regularisers, as gd_recipe adds them to its objective
        if settings.get("p_norm_weight"):
            objective = objective + p_norm(p=settings.get("p", 3), weight=settings["p_norm_weight"])
        if settings.get("tv_weight"):
            objective = objective + total_variation(beta=settings.get("tv_beta", 2), weight=settings["tv_weight"])
        settings.update(p_norm_weight=0.0, tv_weight=0.0)
    args = (generator,) if is_dgn else ()
    # The base recipe builds the parameterization and the optimizer; its unit objective is replaced.
    recipe = _BUILDERS[base](*args, "input", [True], **settings)
    return dataclasses.replace(recipe, objective=objective, name=variant), fm


def icnn_recipe(variant: str, targets: Mapping[str, Any], generator: Optional[nn.Module] = None,
                **options: Any) -> Recipe:
    """The pieces of one icnn variant: ``feature_match(targets, ...)`` x its parameterization x
    its optimizer, built by the cnnpref recipe function of the same composition.

    Args:
        variant: ``"icnn_gd"``, ``"icnn_lbfgs"``, ``"icnn_dgn_gd"`` or ``"icnn_dgn_lbfgs"``.
        targets: layer -> target features (see :func:`lucent_dgn.feature_match`).
        generator: the generator of the DGN variants (required there; an error for pixel ones).
        **options: the objective's (``layer_weights``, ``masks``, ``metric``, ``reduction``) and the
            base recipe's (``iter_n`` / ``maxiter``, ``lr``, ``lower``, ``upper``, ``init``,
            ``image_size`` / ``input_size``, ``batch``, ``seed``, ``solver`` and solver options ...);
            :func:`icnn_options` lists them with their defaults. For ``icnn_gd``,
            ``p_norm_weight``/``tv_weight`` add constant-weight regularisers.

    Returns:
        :class:`~lucent_dgn.cnnpref.presets.Recipe` named after the variant.

    Raises:
        ConfigError: an unknown variant or option (the message lists the valid ones), a DGN
            variant without a generator or a pixel variant with one, or what
            :func:`~lucent_dgn.feature_match` rejects.
    """
    return _build(variant, targets, generator, options)[0]


def _infer_batch(targets: Mapping[str, Any], shapes: Mapping[str, Tuple[int, ...]]) -> int:
    """Rows of the per-item targets (those with one axis more than their layer's feature shape)."""
    rows = {int(np.shape(targets[k])[0]) for k in targets if len(np.shape(targets[k])) == len(shapes[k]) + 1}
    rows.discard(1)
    if len(rows) > 1:
        raise ConfigError(describe("targets", "per-item targets with one batch size", sorted(rows)))
    return rows.pop() if rows else 1


def _input_size(model: nn.Module, variant: str, options: Dict[str, Any]) -> int:
    """The model's input size: the option if given, else ``model.input_size``, else the base
    recipe's default (227, AlexNet's); written into ``options``."""
    key = "input_size" if "dgn" in _variant(variant)["base"] else "image_size"
    size = options.get(key)
    if size is None:
        size = getattr(model, "input_size", None) or icnn_options(variant)[key]
        options[key] = int(size)
    return int(size)


def invert(model: nn.Module, targets: Mapping[str, Any], variant: str = "icnn_dgn_gd",
           generator: Optional[nn.Module] = None, *, seed: Optional[int] = None, progress: bool = True,
           callbacks: Sequence[Any] = (), device: Any = None, return_pre_update_image: bool = False,
           **options: Any) -> RenderResult:
    """Reconstruct images whose features match ``targets`` with one icnn variant.

    The targets are checked against the model (layers exist and run, shapes fit, masks fit)
    before any work; the batch size is that of per-item targets (1 when all are shared).

    Args:
        model: the network whose features are matched (left as it was).
        targets: layer -> features, e.g. ``lucent_dgn.features_of(model, image, layers)`` or
            :func:`lucent_dgn.load_features`; per-item targets (B, ...) give B reconstructions.
        variant: one of :data:`ICNN_VARIANTS` (default ``"icnn_dgn_gd"``).
        generator: the generator (DGN variants).
        seed: seeds the initial image or code and the render.
        progress, callbacks, device: as :func:`lucent_dgn.render`.
        return_pre_update_image: DGN gradient descent only: return the image (and code, in
            ``raw``/``final_params``) from before the last update, as bdpy and icnn do.
        **options: see :func:`icnn_recipe` / :func:`icnn_options`. The image size defaults to
            ``model.input_size``.

    Returns:
        :class:`~lucent_dgn.RenderResult`: ``images`` (B, H, W, 3) RGB 0-1, ``loss_history``,
        ``final_params`` (image or codes) ...

    Raises:
        LayerNotFoundError, ShapeError, MaskError, ConfigError: bad targets, masks or options.
    """
    spec = _variant(variant)
    if return_pre_update_image and spec["base"] != "dgn_gd":
        raise ConfigError(describe("return_pre_update_image", "False except for 'icnn_dgn_gd'", True))
    options = dict(options)
    size = _input_size(model, variant, options)
    channels = model_input_space(model).channels
    names = {k: resolve_layer(model, k, arg=f"targets[{k!r}]")[0] for k in targets}
    shapes = layer_shapes(model, list(names.values()), (channels, size, size))
    options.setdefault("batch", _infer_batch(targets, {k: shapes.get(n, ()) for k, n in names.items()}))
    if seed is not None:
        options.setdefault("seed", seed)
    recipe, fm = _build(variant, targets, generator, options)
    fm.check(model, (channels, size, size), batch=int(options["batch"]))
    callbacks = list(callbacks)
    tracker = None
    if return_pre_update_image:
        tracker = _PreviousCode(recipe.param.variable)
        callbacks.append(tracker)
    result = recipe.render(model, seed=seed, progress=progress, callbacks=callbacks, device=device)
    if tracker is not None:
        param = recipe.param
        with torch.no_grad():
            param.variable.copy_(tracker.previous)
            x = param()
            result.images = param.to_rgb(x).detach().float().cpu().numpy()
            result.model_input = x.detach().float().cpu().numpy()
            result.raw = tracker.previous.float().cpu().numpy()
            result.final_params = tracker.previous.clone()
        result.settings["returned"] = "pre-update image and code (bdpy/icnn)"
    return result
