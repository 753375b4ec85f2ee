"""Render many units with one or more variants and save them as cnnpref's scripts did.

Used by the ``lucent-dgn render`` command, the demo and the example runs, which all take their
settings from :func:`variant_settings` (by default the model's own tuned ``render_settings``) and
render through :func:`render_units`. :func:`save_units` writes one PNG per unit
(``normalise(clip_extreme(img, 0.04))``, cnnpref's saving rule), the raw RGB array as ``.npy``, a
labelled grid PNG (variants x units) and a JSON file with every setting, the seed, package
versions, final activations and timings. Units of a model's output layer are labelled with its
class names, on the grid and in the file names. Files are written into a hidden staging folder
and moved into place only when all are written, so a failure or Ctrl-C leaves none behind.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ._io import ensure_writable_dir, save_json, save_npy
from .cnnpref._compat import input_size as model_input_size
from .cnnpref.presets import EXAMPLE_SETTINGS
from .errors import ConfigError, describe
from .layers import layer_shape, output_layer, resolve_layer
from .recipes import get_variant, recipe, recipe_options
from .objectives.masks import unit_masks
from .render.result import RenderResult
from .viz import GRID_MAX_COLUMNS, save_grid, save_png, to_uint8

__all__ = ["PRESETS", "GRID_MAX_UNITS", "variant_settings", "with_steps", "unit_labels", "unit_mask_batch",
           "render_units", "save_units", "versions"]

#: Where settings come from: the model's own tuned ones, cnnpref's function defaults, or cnnpref's
#: lower-/higher-layer example settings.
PRESETS = ("model", "cnnpref", "lower", "higher")
#: Units per variant shown on a grid; every unit still gets its own PNG and .npy file.
GRID_MAX_UNITS = 128


def variant_settings(model: nn.Module, variant: str, generator: Optional[nn.Module] = None,
                     preset: str = "model") -> Dict[str, Any]:
    """Recipe options of one variant for ``model``.

    Args:
        model: the classifier. With ``preset="model"`` its ``render_settings(variant, generator)``
            method gives its tuned settings (the shipped Fashion-MNIST models: the demo's, see
            :func:`lucent_dgn.models.fashion_settings`; BVLC AlexNet: cnnpref's function defaults);
            a model without one gets cnnpref's function defaults.
        variant: a registered variant (:func:`lucent_dgn.variant_names`).
        generator: the DGN variants' generator (tuned settings may depend on its code statistics).
        preset: one of :data:`PRESETS`: ``"model"`` (default), ``"cnnpref"`` (cnnpref's function
            defaults, ``{}``), ``"lower"`` / ``"higher"`` (cnnpref's example-script settings).

    Returns:
        a fresh dict of recipe options (``weight`` is the unit weight).

    Raises:
        ConfigError: an unknown variant or preset.
    """
    get_variant(variant)
    if preset == "model":
        declared = getattr(model, "render_settings", None)
        return dict(declared(variant, generator)) if callable(declared) else {}
    if preset == "cnnpref":
        return {}
    if preset in ("lower", "higher"):
        if (variant, preset) not in EXAMPLE_SETTINGS:
            raise ConfigError(describe("preset", f"a preset of variant {variant!r}", preset,
                                       "cnnpref's example settings exist for its four variants only."))
        return dict(EXAMPLE_SETTINGS[(variant, preset)])
    raise ConfigError(describe("preset", "one of " + ", ".join(map(repr, PRESETS)), preset))


def with_steps(settings: Mapping[str, Any], variant: str, steps: Optional[int]) -> Dict[str, Any]:
    """``settings`` with the variant's iteration count (its ``iter_n`` or ``maxiter`` option) set
    to ``steps`` (unchanged when ``steps`` is None)."""
    out = dict(settings)
    if steps is not None:
        out["iter_n" if "iter_n" in recipe_options(variant) else "maxiter"] = int(steps)
    return out


def unit_labels(model: nn.Module, layer: Any, units: Sequence[int], input_shape: Sequence[int]) -> List[str]:
    """A label per unit: the class name when ``layer`` is the model's output layer and the model
    names its classes (``classes``, or torchvision's ``categories``), else the unit number."""
    names = getattr(model, "classes", None) or getattr(model, "categories", None)
    if names and resolve_layer(model, layer)[0] == output_layer(model, input_shape):
        if all(0 <= int(u) < len(names) for u in units):
            return [str(names[int(u)]) for u in units]
    return [str(int(u)) for u in units]


def versions() -> Dict[str, str]:
    """Versions of Python and the packages a render depends on."""
    import importlib.metadata as md
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in ("lucent-dgn", "torch", "torchvision", "torch-lucent", "captum", "numpy", "scipy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    out["torch_threads"] = str(torch.get_num_threads())
    return out


def unit_mask_batch(model: nn.Module, layer: Any, units: Sequence[int], input_size: int,
                    channels: int = 3) -> torch.Tensor:
    """One-unit masks (B, *feature_shape): for each channel in ``units`` its spatial centre unit."""
    shape = layer_shape(model, layer, (channels, input_size, input_size))
    return unit_masks(shape, list(units))


def render_units(model: nn.Module, layer: Any, units: Sequence[int], variant: str, *,
                 generator: Optional[nn.Module] = None, settings: Optional[Mapping[str, Any]] = None,
                 input_size: Optional[int] = None, channels: int = 3, seed: int = 0, batch: bool = True,
                 progress: bool = True, masks: Optional[torch.Tensor] = None) -> RenderResult:
    """Render the centre unit of each channel in ``units`` (or each of ``masks``) with one variant.

    Args:
        model: the classifier.
        layer: layer reference (dotted path, Lucent underscore name or module).
        units: channel indices, one image each.
        variant: a registered variant (:func:`lucent_dgn.variant_names`: ``"gd"``, ``"lbfgs"``,
            ``"dgn_gd"``, ``"dgn_lbfgs"`` ...).
        generator: required by the variants that optimise a generator code.
        settings: options of the variant's recipe (e.g. ``EXAMPLE_SETTINGS[...]``;
            :func:`lucent_dgn.recipe_options`), ``weight`` included (default 1.0).
        input_size: the model's input size S; default ``model.input_size`` (a ConfigError when the
            model declares none).
        channels: input channels of the model (3 RGB, 1 grey); default 3.
        seed: seed of the render unless ``settings`` has one; default 0.
        batch: render all units in one batch (True) or one by one (False); the result is stacked.
        progress: show progress bars.
        masks: optional (N, *feature_shape) unit masks to render instead of the centre units
            (``units`` then only has to have N entries).

    Returns:
        RenderResult with N = len(units) images (N, S, S, 3).

    Raises:
        ConfigError: an unknown variant or option, or a generator variant without ``generator``.
    """
    spec = get_variant(variant)
    options = dict(settings or {})
    options.setdefault("seed", seed)
    size = model_input_size(model, input_size)
    if masks is None:
        masks = unit_mask_batch(model, layer, units, size, channels)
    elif len(masks) != len(units):
        raise ConfigError(describe("masks", f"one mask per unit ({len(units)})", len(masks)))
    gen = generator if spec.needs_generator else None
    if batch:
        return recipe(variant, layer, masks, gen, batch=len(units), **options).render(model, progress=progress)
    parts = [recipe(variant, layer, masks[i], gen, **options).render(model, progress=progress)
             for i in range(len(units))]
    return _stack(parts)


def _stack(parts: List[RenderResult]) -> RenderResult:
    first = parts[0]
    steps = min(len(p.loss_history) for p in parts)
    return RenderResult(
        images=np.concatenate([p.images for p in parts]), raw=np.concatenate([p.raw for p in parts]),
        model_input=np.concatenate([p.model_input for p in parts]),
        loss_history=np.sum([p.loss_history[:steps] for p in parts], axis=0),
        activation_history=np.concatenate([p.activation_history[:steps] for p in parts], axis=1),
        final_activation=np.concatenate([p.final_activation for p in parts]),
        final_params=torch.cat([p.final_params for p in parts]), n_evals=sum(p.n_evals for p in parts),
        steps=steps, wall_time=sum(p.wall_time for p in parts), interrupted=any(p.interrupted for p in parts),
        settings=dict(first.settings, batched=False))


def save_units(out_dir: Any, results: Mapping[str, RenderResult], layer: str, units: Sequence[int],
               unit_labels: Optional[Sequence[str]] = None, extra: Optional[Dict[str, Any]] = None,
               rf_masks: Optional[np.ndarray] = None, grid_name: str = "grid.png", cell: int = 96,
               grid_max_units: int = GRID_MAX_UNITS) -> Dict[str, Any]:
    """Save every variant's images (PNG + .npy), a grid (variants x units) and ``settings.json``.

    File names are ``preferred_img_<variant>_layer_<layer>_unit_<unit>[_<label>]`` (the label, e.g.
    a class name, when it is not the unit number). Everything is written into a hidden staging
    folder inside ``out_dir`` and moved into place at the end (``settings.json`` last), so an
    exception or Ctrl-C part-way leaves none of this call's files and keeps earlier ones.

    Args:
        results: variant name -> RenderResult (N = len(units) images each).
        unit_labels: a label per unit (default the unit numbers); see :func:`unit_labels`.
        rf_masks: optional (N, H, W, 1 or 3) receptive-field masks (0/1); masked copies are saved too,
            as cnnpref's scripts save them: ``<stem>_masked.png`` is the saved PNG's bytes times the
            mask (black outside the box), ``<stem>_masked.npy`` the 0-255 image times the mask.
        cell: grid tile side in pixels (default 96).
        grid_max_units: units per variant shown on the grid (default :data:`GRID_MAX_UNITS`); up
            to ``GRID_MAX_COLUMNS`` units form one row per variant, more wrap into several rows.

    Each image is saved from :attr:`RenderResult.images_255` (RGB, 0-255 scale) as
    ``<stem>.png`` = ``normalise(clip_extreme(img, 0.04))`` and ``<stem>.npy`` (cnnpref's ``.mat``).

    Returns:
        the record written to ``settings.json`` (paths, activations, timings, settings, versions).
    """
    out = ensure_writable_dir(out_dir, "out_dir")
    labels = list(unit_labels) if unit_labels else [str(u) for u in units]
    record: Dict[str, Any] = {"layer": layer, "units": list(map(int, units)), "labels": labels, "variants": {},
                              "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=str(out)))
    try:
        for variant, result in results.items():
            files = []
            for i, (unit, label) in enumerate(zip(units, labels)):
                stem = f"preferred_img_{variant}_layer_{layer}_unit_{unit}" + _label_suffix(label, unit)
                img = result.images_255[i]  # cnnpref saves and normalises the 0-255 images
                files.append(str(save_png(stage / f"{stem}.png", img).name))
                save_npy(stage / f"{stem}.npy", img)
                if rf_masks is not None:
                    mask = _rgb_mask(rf_masks[i], img)
                    save_png(stage / f"{stem}_masked.png", to_uint8(img) * mask)
                    save_npy(stage / f"{stem}_masked.npy", img * mask)
            record["variants"][variant] = {
                "files": files, "final_activation": result.final_activation.tolist(), "steps": result.steps,
                "n_evals": result.n_evals, "wall_time_s": round(result.wall_time, 3),
                "settings": dict(result.settings)}
        shown = min(len(units), max(1, int(grid_max_units)))
        _save_unit_grid(stage / grid_name, results, labels[:shown], cell)
        record["grid"] = grid_name
        if shown < len(units):
            record["grid_units"] = shown
        record.update(extra or {})
        save_json(stage / "settings.json", record)
        names = sorted(p.name for p in stage.iterdir() if p.name != "settings.json") + ["settings.json"]
        for name in names:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return record


def _label_suffix(label: str, unit: int) -> str:
    """``"_<slug>"`` of a label that is not the unit number (``"T-shirt/top"`` -> ``"_t-shirt-top"``)."""
    if label == str(unit):
        return ""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40]
    return f"_{slug}" if slug else ""


def _save_unit_grid(path: Path, results: Mapping[str, RenderResult], labels: Sequence[str], cell: int) -> None:
    """Variants as rows, units as columns; more than ``GRID_MAX_COLUMNS`` units wrap into several
    rows per variant, each tile labelled."""
    n = len(labels)
    if n <= GRID_MAX_COLUMNS:
        images = [img for result in results.values() for img in result.images_255[:n]]
        save_grid(path, images, ncols=n, row_labels=list(results), col_labels=list(labels), cell=cell)
        return
    cols = GRID_MAX_COLUMNS
    rows_per_variant = -(-n // cols)
    images: List[Any] = []
    tiles: List[str] = []
    row_labels: List[str] = []
    for variant, result in results.items():
        block = list(result.images_255[:n]) + [None] * (rows_per_variant * cols - n)
        images += block
        tiles += list(labels) + [""] * (rows_per_variant * cols - n)
        row_labels += [variant] + [""] * (rows_per_variant - 1)
    save_grid(path, images, ncols=cols, row_labels=row_labels, tile_labels=tiles, cell=cell)


def _rgb_mask(mask: np.ndarray, img: np.ndarray) -> np.ndarray:
    """A (H, W, 1 or 3) uint8 receptive-field mask with the image's channels."""
    mask = np.asarray(mask, dtype=np.uint8)
    return mask if mask.shape[-1] == img.shape[-1] else np.repeat(mask[..., :1], img.shape[-1], -1)
