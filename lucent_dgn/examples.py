"""cnnpref's example runs (spec §9): every variant on a lower and a higher layer.

* ``kind="lower"``: the spatial centre unit of every ``int(C/25)``-th channel of a conv layer
  (AlexNet conv1: channels 0, 3, ..., 93 at (27, 27)), with cnnpref's lower-layer settings, the
  receptive-field box of each unit as an image mask and the masked images saved beside.
* ``kind="higher"``: every ``int(C/25)``-th unit of an output layer (AlexNet fc8: 0, 40, ..., 960)
  with the higher-layer settings.

Two modes:

* ``"faithful"`` (default): reproduces cnnpref's example scripts. Each unit is rendered on its own
  (seed ``seed + i`` for the i-th unit), pixel and DGN L-BFGS-B run SciPy's solver, pixel GD keeps
  cnnpref's jitter/momentum buffer (Q3: ``faithful_jitter_momentum=True``), and the images are
  what cnnpref's functions return: DGN-GD the image generated before the last update (Q8), pixel
  L-BFGS-B float64 clipped to [0, 255], the others the final image. They are the images of the
  cnnpref-compatible ``generate_image`` functions with those options.
* ``"fast"``: all units of a variant in one batch, the torch L-BFGS-B solver, the aligned momentum
  buffer and the final images (this package's corrected behaviour; the same settings otherwise).

Either way the files are saved as cnnpref's scripts save them (:func:`lucent_dgn.runs.save_units`).
Runs with BVLC AlexNet + DeePSiM fc6 when the weights are available (code bounds: cnnpref's
``act_range/3x/fc6.txt``, pass it as ``bounds_file``), and with the shipped Fashion-MNIST models
otherwise (code bounds: the generator's ``code_bounds(k=3)``, DGN-AM's "3x").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from .cnnpref._compat import RETURNS, cnnpref_render, input_size
from .cnnpref.presets import EXAMPLE_SETTINGS, VARIANTS
from .cnnpref.receptive_field import receptive_field_mask
from .errors import ConfigError, LucentDGNError, describe
from .layers import layer_shape
from .objectives.masks import every_nth_channel, unit_mask
from .recipes import get_variant, recipe, recipe_options
from .render.result import RenderResult
from .runs import _stack, render_units, save_units

__all__ = ["MODES", "FAITHFUL_OPTIONS", "FaithfulResult", "run_examples"]

#: What each mode does, as written to ``settings.json`` and printed by ``lucent-dgn examples``.
MODES: Dict[str, str] = {
    "faithful": ("as cnnpref's scripts: one render per unit (seed + i), SciPy's L-BFGS-B, cnnpref's "
                 "jitter/momentum buffer (Q3), DGN-GD's image from before the last update (Q8), pixel "
                 "L-BFGS-B images clipped to [0, 255]"),
    "fast": "batched renders, torch L-BFGS-B, the aligned momentum buffer (Q3 corrected), the final images",
}

#: Options the faithful mode adds to cnnpref's example settings, per variant.
FAITHFUL_OPTIONS: Dict[str, Dict[str, Any]] = {
    "gd": {"faithful_jitter_momentum": True}, "lbfgs": {"solver": "scipy"}, "dgn_gd": {},
    "dgn_lbfgs": {"solver": "scipy"},
}


@dataclass(repr=False)
class FaithfulResult(RenderResult):
    """Single-unit renders stacked, carrying the images cnnpref's functions return.

    Attributes:
        returned: (N, H, W, 3) RGB on the 0-255 scale, in the dtype cnnpref returns (float32;
            float64 for pixel L-BFGS-B); :attr:`images_255` gives it and :attr:`images` is it / 255.
    """

    returned: Optional[np.ndarray] = None

    @property
    def images_255(self) -> np.ndarray:
        """(N, H, W, 3) the images as cnnpref returns them (see :attr:`returned`)."""
        return self.returned


def _dgn_bounds(generator: nn.Module, bounds_file: Optional[str]) -> Dict[str, Any]:
    if bounds_file is not None:
        return {"lower": 0.0, "upper": bounds_file}
    try:
        lower, upper = generator.code_bounds(k=3.0)
    except (AttributeError, LucentDGNError):  # no statistics: cnnpref's default bounds (0, 100)
        return {}
    return {"lower": lower, "upper": upper}


def _render_faithful(model: nn.Module, layer: str, shape: Sequence[int], units: List[int], variant: str,
                     generator: Optional[nn.Module], settings: Dict[str, Any], seed: int,
                     progress: bool) -> FaithfulResult:
    """Each unit on its own, as cnnpref's scripts call its functions (the image size is the model's)."""
    options = dict(settings, **FAITHFUL_OPTIONS[variant])
    parts, images = [], []
    for i, unit in enumerate(tqdm(units, desc=variant, disable=not progress, leave=False)):
        pieces = recipe(variant, layer, unit_mask(shape, unit), generator, **options, seed=seed + i).build(model)
        image, result = cnnpref_render(pieces, model, seed=seed + i, returns=RETURNS[variant])
        images.append(image)
        parts.append(result)
    stacked = dict(vars(_stack(parts)))
    returned = np.stack(images)
    stacked["images"] = (returned / 255.0).astype(np.float32)
    stacked["settings"] = dict(stacked["settings"], seeds=[seed + i for i in range(len(units))],
                               returns=RETURNS[variant], **FAITHFUL_OPTIONS[variant])
    return FaithfulResult(**stacked, returned=returned)


def run_examples(model: nn.Module, layer: str, kind: str, out_dir: Any, generator: Optional[nn.Module] = None,
                 variants: Sequence[str] = tuple(VARIANTS), units: Optional[Sequence[int]] = None,
                 bounds_file: Optional[str] = None, steps: Optional[int] = None, seed: int = 0,
                 progress: bool = True, mode: str = "faithful") -> Dict[str, Any]:
    """Run cnnpref's example settings for ``kind`` ("lower" or "higher") and save everything.

    Args:
        model: the classifier; its ``input_size`` (required: cnnpref takes the size from the
            network) and ``input_space`` attributes are used.
        layer: the layer (AlexNet: ``"conv1"`` for lower, ``"fc8"`` for higher).
        out_dir: output folder (PNGs, masked PNGs for conv units, .npy, grid, settings.json).
        generator: needed for the DGN variants (skipped without one).
        units: channels to render; default cnnpref's ``every_nth_channel``.
        bounds_file: act_range file with the per-unit upper code bounds (cnnpref's 3x/fc6.txt).
        steps: override the number of iterations (for quick runs).
        seed: the render seed (faithful mode: ``seed + i`` for the i-th unit).
        mode: ``"faithful"`` (default) or ``"fast"``; see the module docstring and :data:`MODES`.

    Returns:
        the record written to ``settings.json`` (``mode`` and ``mode_description`` say which ran).

    Raises:
        ConfigError: a bad ``kind`` or ``mode``, or a model that declares no input size.
    """
    if kind not in ("lower", "higher"):
        raise ConfigError(describe("kind", "'lower' or 'higher'", kind))
    if mode not in MODES:
        raise ConfigError(describe("mode", f"one of {list(MODES)}", mode))
    size = input_size(model)
    channels = getattr(getattr(model, "input_space", None), "channels", 3)
    shape = layer_shape(model, layer, (channels, size, size))
    units = list(units) if units is not None else every_nth_channel(shape)
    results: Dict[str, RenderResult] = {}
    for variant in variants:
        needs_generator = get_variant(variant).needs_generator
        if needs_generator and generator is None:
            continue
        settings = dict(EXAMPLE_SETTINGS[(variant, kind)])
        if needs_generator:
            settings.update(_dgn_bounds(generator, bounds_file))
        if steps is not None:
            settings["maxiter" if "maxiter" in recipe_options(variant) else "iter_n"] = int(steps)
        gen = generator if needs_generator else None
        if mode == "faithful":
            results[variant] = _render_faithful(model, layer, shape, units, variant, gen, settings, seed, progress)
        else:
            results[variant] = render_units(model, layer, units, variant, generator=gen, settings=settings,
                                            input_size=size, channels=channels, seed=seed, progress=progress)
    rf = None
    if len(shape) == 3:
        rf = np.stack([receptive_field_mask(model, layer, unit_mask(shape, u), size, channels=3) for u in units])
    return save_units(out_dir, results, layer, units, rf_masks=rf,
                      extra={"kind": kind, "mode": mode, "mode_description": MODES[mode],
                             "example_settings": {v: EXAMPLE_SETTINGS[(v, kind)] for v in results},
                             "bounds_file": bounds_file, "seed": seed})
