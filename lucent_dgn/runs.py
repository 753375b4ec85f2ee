"""Render many units with one or more variants and save them as cnnpref's scripts did.

Used by the ``lucent-dgn render`` command, the demo and the example runs: one PNG per unit
(``normalise(clip_extreme(img, 0.04))``, cnnpref's saving rule), the raw RGB array as ``.npy``,
a labelled grid PNG (variants x units) and a JSON file with every setting, the seed, package
versions, final activations and timings. Every file is written atomically.
"""
from __future__ import annotations

import platform
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ._io import ensure_writable_dir, save_json, save_npy
from .cnnpref._compat import input_size as model_input_size
from .recipes import get_variant, recipe
from .layers import layer_shape
from .objectives.masks import unit_masks
from .render.result import RenderResult
from .viz import save_grid, save_png, to_uint8

__all__ = ["unit_mask_batch", "render_units", "save_units", "versions"]

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
                 progress: bool = True) -> RenderResult:
    """Render the centre unit of each channel in ``units`` with one variant.

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

    Returns:
        RenderResult with N = len(units) images (N, S, S, 3).

    Raises:
        ConfigError: an unknown variant or option, or a generator variant without ``generator``.
    """
    spec = get_variant(variant)
    options = dict(settings or {})
    options.setdefault("seed", seed)
    size = model_input_size(model, input_size)
    masks = unit_mask_batch(model, layer, units, size, channels)
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
               rf_masks: Optional[np.ndarray] = None, grid_name: str = "grid.png", cell: int = 96) -> Dict[str, Any]:
    """Save every variant's images (PNG + .npy), a grid (variants x units) and ``settings.json``.

    Args:
        results: variant name -> RenderResult (N = len(units) images each).
        rf_masks: optional (N, H, W, 1 or 3) receptive-field masks (0/1); masked copies are saved too,
            as cnnpref's scripts save them: ``<stem>_masked.png`` is the saved PNG's bytes times the
            mask (black outside the box), ``<stem>_masked.npy`` the 0-255 image times the mask.

    Each image is saved from :attr:`RenderResult.images_255` (RGB, 0-255 scale) as
    ``<stem>.png`` = ``normalise(clip_extreme(img, 0.04))`` and ``<stem>.npy`` (cnnpref's ``.mat``).

    Returns:
        the record written to ``settings.json`` (paths, activations, timings, settings, versions).
    """
    out = ensure_writable_dir(out_dir, "out_dir")
    labels = list(unit_labels) if unit_labels else [str(u) for u in units]
    record: Dict[str, Any] = {"layer": layer, "units": list(map(int, units)), "labels": labels, "variants": {},
                              "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    grid_images = []
    for variant, result in results.items():
        files = []
        for i, unit in enumerate(units):
            stem = f"preferred_img_{variant}_layer_{layer}_unit_{unit}"
            img = result.images_255[i]  # cnnpref saves and normalises the 0-255 images
            files.append(str(save_png(out / f"{stem}.png", img).name))
            save_npy(out / f"{stem}.npy", img)
            if rf_masks is not None:
                mask = _rgb_mask(rf_masks[i], img)
                save_png(out / f"{stem}_masked.png", to_uint8(img) * mask)
                save_npy(out / f"{stem}_masked.npy", img * mask)
            grid_images.append(img)
        record["variants"][variant] = {
            "files": files, "final_activation": result.final_activation.tolist(), "steps": result.steps,
            "n_evals": result.n_evals, "wall_time_s": round(result.wall_time, 3),
            "settings": dict(result.settings)}
    save_grid(out / grid_name, grid_images, ncols=len(units), row_labels=list(results), col_labels=labels, cell=cell)
    record["grid"] = grid_name
    record.update(extra or {})
    save_json(out / "settings.json", record)
    return record


def _rgb_mask(mask: np.ndarray, img: np.ndarray) -> np.ndarray:
    """A (H, W, 1 or 3) uint8 receptive-field mask with the image's channels."""
    mask = np.asarray(mask, dtype=np.uint8)
    return mask if mask.shape[-1] == img.shape[-1] else np.repeat(mask[..., :1], img.shape[-1], -1)
