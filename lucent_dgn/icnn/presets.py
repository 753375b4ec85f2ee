"""icnn's feature inversion (Shen et al. 2019) as four variants of :func:`lucent_dgn.recipe`.

    icnn_gd         = feature_match x PixelImage (net space)          x MomentumGD (+ decay, blur)
    icnn_lbfgs      = feature_match x PixelImage (bounds raw [0, 255]) x L-BFGS-B
    icnn_dgn_gd     = feature_match x DGNImage (code bounds)           x MomentumGD (+ code decay)
    icnn_dgn_lbfgs  = feature_match x DGNImage (code bounds)           x L-BFGS-B

Each is declared as data (:data:`ICNN_VARIANTS`): the cnnpref variant whose parameterization
and optimizer it shares (``gd``, ``lbfgs``, ``dgn_gd``, ``dgn_lbfgs``) and icnn's defaults. It
is built by that variant's own builder with :func:`~lucent_dgn.feature_match` as the objective:
``ld.recipe("icnn_dgn_gd", generator=G, targets=feats).render(model)``. With a model, the
targets are checked against it while the pieces are built (before any work) and the batch size
is that of per-item targets. :func:`invert` builds and renders in one call.

Options: the objective's (``targets``, ``layer_weights``, ``masks``, ``metric``, ``reduction``;
see :func:`~lucent_dgn.feature_match`) and the base variant's (``iter_n``/``maxiter``, ``lr``,
``momentum``, ``decay``, ``blur_sigma``, ``jitter_size``, ``init``, ``space``, ``lower``/``upper``,
``image_size``/``input_size``, ``batch``, ``seed``, ``solver`` ..., and the regularisers
``p_norm_weight``/``tv_weight``); :func:`lucent_dgn.recipe_options` lists them with their defaults.

Sources of the defaults: KamitaniLab/icnn, the code of Shen et al. 2019 (the ``reconstruct_image``
defaults of ``icnn/icnn_*.py`` and its example scripts ``examples/recon_img_from_true_feature_icnn_*.py``),
and bdpy's ``bdpy.recon.torch.icnn.reconstruct``, which ports ``icnn_gd``/``icnn_dgn_gd`` to PyTorch
with the same defaults except where noted:

* loss: the sum of squared errors per layer (icnn ``loss_type='l2'``, its ``L2_loss``; bdpy
  ``MSELoss(reduction='sum')``); layers weighted by the inverse squared norm of their target,
  normalised to sum to 1 (icnn's example scripts). The functions' own default, and bdpy's, is
  1/L per layer: ``layer_weights="equal"``.
* ``icnn_gd``: 200 iterations; lr 2 -> 1e-10; momentum 0.9; pixel decay 0.2 -> 1e-10; gradient
  divided by its mean absolute value; Gaussian blur sigma 2 -> 0.5 every iteration
  (``image_blur=True``; bdpy's ``blurring`` defaults to False); no jitter (``image_jitter=False``
  in icnn, ``jittering=False`` in bdpy); initial image: uniform random integers in [0, 255]; the
  image lives in Caffe's net space (BGR, mean-subtracted; icnn's ``img_preprocess``), so decay
  pulls it towards the mean colour; no pixel bounds.
* ``icnn_lbfgs``: L-BFGS-B with ``maxiter=500``, pixels bounded to raw [0, 255] (icnn's
  ``img_bounds``); random initial image. icnn runs SciPy's solver (``solver="scipy"`` here; the
  default is the torch port).
* ``icnn_dgn_gd``: 200 iterations; lr 2 -> 1e-10; momentum 0.9; code decay 0.01; the code
  clipped to [0, 100] after each update (``feat_lower_bound=0``, ``feat_upper_bound=100``; the
  example scripts use DGN-AM's ``act_range/3x`` upper bounds); initial code N(0, 1), not clipped.
* ``icnn_dgn_lbfgs``: L-BFGS-B ``maxiter=500``, code bounds (0, 100) (``gen_feat_bounds``);
  initial code N(0, 1), clipped into the bounds (as SciPy does).

Differences from bdpy's ``icnn.reconstruct`` (with jitter off and the same settings, the images
agree within float32 noise; ``tests/test_bdpy_equivalence.py`` checks it against the installed
bdpy):

* With a generator, bdpy (and icnn) return the image from *before* the last update; here the
  final code's image. ``invert(..., return_pre_update_image=True)`` returns bdpy's image.
* bdpy's returned code (``return_z=True``) is a numpy view of the optimised tensor: the code after
  the last step but before decay and clipping, which generates neither the returned image nor
  the next one. Here ``final_params`` is the final code (or, with ``return_pre_update_image``,
  the code that generated the returned image).
* bdpy's ``encoder_preproc`` and ``generator_preproc`` replace the optimised tensor by a non-leaf
  (``xt = encoder_preproc(xt)``): the pixel path then fails on a missing gradient and the generator
  path stops updating the code. Here space conversions are part of the parameterization.
* With a generator, bdpy's jitter and blur act on a copy of the image that is then discarded (they
  do nothing); here a :class:`~lucent_dgn.render.transforms.Jitter` shifts the generated image.
* bdpy's pixel jitter shifts the image but never its SGD momentum buffer, so the buffer mixes
  frames; here the shift is a transform of the model input and the buffer stays aligned.
* Gradient normalisation is per batch item here; bdpy reconstructs one image at a time.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..cnnpref import presets as _cnnpref_presets  # noqa: F401  (registers the base variants gd ... dgn_lbfgs)
from ..cnnpref._compat import _PreviousCode
from ..errors import ConfigError, describe
from ..layers import layer_shapes, resolve_layer
from ..objectives.feature_match import feature_match
from ..objectives.regularizers import p_norm, total_variation
from ..render._setup import resolve_input_space
from ..render.result import RenderResult
from ..variants import Pieces, Recipe, Variant, _record, get_variant, recipe, register_variant, split_options

__all__ = ["ICNN_VARIANTS", "OBJECTIVE_DEFAULTS", "invert", "fashion_settings"]

#: The objective's options, shared by the four variants (see the module docstring).
OBJECTIVE_DEFAULTS: Dict[str, Any] = {"targets": None, "layer_weights": "inverse_norm", "masks": None,
                                      "metric": "mse", "reduction": "sum"}

#: The variants as data: the cnnpref variant they share parameterization and optimizer with, and
#: icnn's defaults where they differ from it (sources in the module docstring).
ICNN_VARIANTS: Dict[str, Dict[str, Any]] = {
    "icnn_gd": {"base": "gd", "defaults": dict(
        iter_n=200, lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.2, 1e-10), grad_normalize=True, jitter_size=0,
        blur_sigma=(2.0, 0.5), init="random", space="caffe", bounded=False)},
    "icnn_lbfgs": {"base": "lbfgs", "defaults": dict(maxiter=500, init="random", space="caffe")},
    "icnn_dgn_gd": {"base": "dgn_gd", "defaults": dict(
        iter_n=200, lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.01, 0.01), lower=0.0, upper=100.0, init="normal",
        clip_initial=False)},
    "icnn_dgn_lbfgs": {"base": "dgn_lbfgs", "defaults": dict(maxiter=500, lower=0.0, upper=100.0, init="normal")},
}
_UNIT_OPTIONS = ("weight",)  # options of the masked-unit objective, which icnn variants do not have


def _objective(spec: Recipe) -> Tuple[Any, Any]:
    """(objective, its feature_match term): feature_match over the ``targets`` option, plus the
    regularisers the options turn on."""
    o = spec.options
    if o["targets"] is None:
        raise ConfigError(describe("targets", f"target features for variant {spec.variant!r}", None,
                                   "Pass targets=lucent_dgn.features_of(model, image, layers) or "
                                   "lucent_dgn.load_features(path)."))
    fm = feature_match(o["targets"], **{k: o[k] for k in OBJECTIVE_DEFAULTS if k != "targets"})
    objective = fm
    if o["p_norm_weight"]:
        objective = objective + p_norm(p=o["p"], weight=o["p_norm_weight"])
    if o["tv_weight"]:
        objective = objective + total_variation(beta=o["tv_beta"], weight=o["tv_weight"])
    return objective, fm


def _infer_batch(targets: Mapping[str, Any], shapes: Mapping[str, Tuple[int, ...]]) -> int:
    """Rows of the per-item targets (those with one axis more than their layer's feature shape)."""
    rows = {int(np.shape(targets[k])[0]) for k in targets
            if k in shapes and len(np.shape(targets[k])) == len(shapes[k]) + 1}
    rows.discard(1)
    if len(rows) > 1:
        raise ConfigError(describe("targets", "per-item targets of one batch size", sorted(rows)))
    return rows.pop() if rows else 1


def _input_shape(model: nn.Module, param: Any) -> Tuple[int, ...]:
    """(C, H, W) of the images ``param`` gives ``model`` (in the space a render resolves by default)."""
    with torch.no_grad():
        return tuple(param(resolve_input_space(model, param, None, True)).shape[1:])


def _builder(base_name: str) -> Callable[[Recipe, Optional[nn.Module]], Pieces]:
    def build(spec: Recipe, model: Optional[nn.Module]) -> Pieces:
        base = get_variant(base_name)
        options = {**base.defaults, **spec.options}
        if spec.objective is not None:
            return base.build(dataclasses.replace(spec, options=options), model)
        objective, fm = _objective(spec)
        pieces = base.build(dataclasses.replace(spec, objective=objective, options=options), model)
        if model is None:
            return pieces
        # Before any work: the targets against the model; the batch size from per-item targets.
        input_shape = _input_shape(model, pieces.param)
        if "batch" not in spec.given:
            targets = options["targets"]
            names = {k: resolve_layer(model, k, arg=f"targets[{k!r}]")[0] for k in targets}
            shapes = layer_shapes(model, list(names.values()), input_shape)
            batch = _infer_batch(targets, {k: shapes[n] for k, n in names.items() if n in shapes})
            if batch != options["batch"]:
                options["batch"] = batch
                pieces = base.build(dataclasses.replace(spec, objective=objective, options=options), model)
        fm.check(model, input_shape, batch=pieces.param.batch_size)
        return pieces
    return build


def _register() -> None:
    for name, entry in ICNN_VARIANTS.items():
        base = get_variant(entry["base"])
        defaults = {k: v for k, v in base.defaults.items() if k not in _UNIT_OPTIONS}
        defaults.update(entry["defaults"])
        defaults = {**OBJECTIVE_DEFAULTS, **defaults}
        register_variant(Variant(name, defaults, _builder(entry["base"]), needs_generator=base.needs_generator,
                                 needs_units=False, option_groups=base.option_groups, choices=base.choices,
                                 summary=f"icnn: feature_match x the {entry['base']!r} variant's parameterization "
                                         "and optimizer"))


_register()


def fashion_settings(generator: Optional[nn.Module] = None, steps: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """Options per icnn variant for the shipped Fashion-MNIST pair (28 px grey images; the
    generator inverts the classifier's ``relu3``), where icnn's ImageNet defaults differ.

    * pixel variants store the image in grey 0-1 space (decay pulls towards the black background,
      not the mean colour); GD uses lr 0.5 -> 1e-10 and blur sigma 1 -> 0.5 (icnn's sigma 2 on
      224 px images wipes out a 28 px image's detail);
    * DGN variants bound the code to the generator's ``[0, mean + 2 std]`` (icnn's scripts use
      DGN-AM's ``act_range/3x``); GD uses lr 0.5 -> 1e-10, since the codes have unit-scale
      standard deviations (icnn's lr 2 overshoots).

    Chosen on Fashion-MNIST test images 1000-1049 (``benchmarks/bench_invert.py --start 1000``):
    from ``relu3`` features, DGN gradient descent identifies 89 % of pairs with icnn's
    defaults and 3x bounds, 97 % with these. ``steps`` overrides every variant's iterations.
    Without ``generator`` (it gives the code bounds) only the pixel variants are returned.
    """
    settings = {
        "icnn_gd": dict(space="gray", lr=(0.5, 1e-10), blur_sigma=(1.0, 0.5)),
        "icnn_lbfgs": dict(space="gray", maxiter=100),
    }
    if generator is not None:
        lower, upper = generator.code_bounds(k=2.0)
        settings["icnn_dgn_gd"] = dict(lower=lower, upper=upper, lr=(0.5, 1e-10))
        settings["icnn_dgn_lbfgs"] = dict(lower=lower, upper=upper, maxiter=100)
    if steps is not None:
        for variant, options in settings.items():
            options["maxiter" if "maxiter" in ICNN_VARIANTS[variant]["defaults"] else "iter_n"] = int(steps)
    return settings


def invert(model: nn.Module, targets: Mapping[str, Any], variant: str = "icnn_dgn_gd",
           generator: Optional[nn.Module] = None, *, return_pre_update_image: bool = False,
           **kwargs: Any) -> RenderResult:
    """Reconstruct images whose features match ``targets``:
    ``recipe(variant, generator=generator, targets=targets, **options).render(model, **render_options)``.

    The targets are checked against the model (layers exist and run, shapes and masks fit)
    before any work; the batch size is that of per-item targets (1 when every target is shared).

    Args:
        model: the network whose features are matched (left as it was).
        targets: layer -> features, e.g. ``lucent_dgn.features_of(model, image, layers)`` or
            :func:`lucent_dgn.load_features`; per-item targets (B, ...) give B reconstructions.
        variant: ``"icnn_gd"``, ``"icnn_lbfgs"``, ``"icnn_dgn_gd"`` (default) or ``"icnn_dgn_lbfgs"``.
        generator: the generator of the DGN variants.
        return_pre_update_image: ``"icnn_dgn_gd"`` only: return the image (``images``,
            ``model_input``) and the code (``raw``, ``final_params``) from before the last update,
            as bdpy and icnn return them.
        **kwargs: the variant's options (:func:`lucent_dgn.recipe_options`; the image size defaults
            to ``model.input_size``) and :func:`lucent_dgn.render`'s options (``seed``, ``progress``,
            ``callbacks``, ``device``, ``input_space`` ...).

    Returns:
        :class:`~lucent_dgn.RenderResult`: ``images`` (B, H, W, 3) RGB 0-1, ``model_input``,
        ``loss_history``, ``activation_histories["feature_match:<layer>"]`` (each layer's weighted
        loss per step), ``final_params`` (image or codes) ...

    Raises:
        LayerNotFoundError, ShapeError, MaskError, ConfigError: bad targets, masks or options.
    """
    if variant not in ICNN_VARIANTS:
        get_variant(variant)  # an unknown name: the registry's error with close names
        raise ConfigError(describe("variant", "one of " + ", ".join(map(repr, ICNN_VARIANTS)), variant,
                                   "Other variants render with lucent_dgn.recipe(...)."))
    if return_pre_update_image and ICNN_VARIANTS[variant]["base"] != "dgn_gd":
        raise ConfigError(describe("return_pre_update_image", "False except for variant 'icnn_dgn_gd'", True))
    options, render_options = split_options(kwargs)
    chosen = recipe(variant, generator=generator, targets=targets, **options)
    if not return_pre_update_image:
        return chosen.render(model, **render_options)
    pieces = chosen.build(model)
    tracker = _PreviousCode(pieces.param.variable)
    render_options["callbacks"] = list(render_options.get("callbacks", ())) + [tracker]
    result = pieces.render(model, **render_options)
    result.settings["options"] = {k: _record(chosen.options[k]) for k in chosen.given}
    param = pieces.param
    space = resolve_input_space(model, param, render_options.get("input_space"), render_options.get("preprocess", True))
    with torch.no_grad():
        param.variable.copy_(tracker.previous)
        x = param(space)
        result.images = param.to_rgb(x, space).float().cpu().numpy()
        result.model_input = x.float().cpu().numpy()
        param.variable.copy_(result.final_params)
    result.raw = tracker.previous.float().cpu().numpy()
    result.final_params = tracker.previous.clone()
    result.settings["returned"] = "the image and code from before the last update (bdpy, icnn)"
    return result
