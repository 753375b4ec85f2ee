"""cnnpref's example runs (spec §9): every variant on a lower and a higher layer.

* ``kind="lower"``: the spatial centre unit of every ``int(C/25)``-th channel of a conv layer
  (AlexNet conv1: channels 0, 3, ..., 93 at (27, 27)), with cnnpref's lower-layer settings, the
  receptive-field box of each unit as an image mask and the masked images saved beside.
* ``kind="higher"``: every ``int(C/25)``-th unit of an output layer (AlexNet fc8: 0, 40, ..., 960)
  with the higher-layer settings.

cnnpref's layers map onto any model with :func:`example_layer`: "lower" is the model's first
convolution (AlexNet ``conv1``, FashionCNN ``conv1``), "higher" its output layer (AlexNet ``fc8``,
FashionCNN ``fc2``).

Runs with BVLC AlexNet + DeePSiM fc6 when the weights are available (code bounds: cnnpref's
``act_range/3x/fc6.txt``, pass it as ``bounds_file``), and with the shipped Fashion-MNIST models
otherwise (code bounds: the generator's ``code_bounds(k=3)``, DGN-AM's "3x").
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
from torch import nn

from .cnnpref.presets import EXAMPLE_SETTINGS, VARIANTS
from .cnnpref.receptive_field import receptive_field_mask
from .errors import ConfigError, LucentDGNError, describe
from .layers import layer_shape, output_layer
from .objectives.masks import every_nth_channel, unit_mask
from .runs import render_units, save_units

__all__ = ["run_examples", "example_layer"]


def example_layer(model: nn.Module, kind: str) -> str:
    """cnnpref's example layer mapped onto ``model``: ``"lower"`` -> the first ``nn.Conv2d``,
    ``"higher"`` -> the output layer (:func:`lucent_dgn.layers.output_layer`).

    Raises:
        ConfigError: an unknown ``kind``, or a model without such a layer (pass one explicitly).
    """
    if kind == "lower":
        name = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        rule = "a model with a convolution for the lower-layer examples"
    elif kind == "higher":
        channels = getattr(getattr(model, "input_space", None), "channels", 3)
        size = int(getattr(model, "input_size", 227))
        name = output_layer(model, (channels, size, size))
        rule = "a model whose output is one layer's, for the higher-layer examples"
    else:
        raise ConfigError(describe("kind", "'lower' or 'higher'", kind))
    if name is None:
        raise ConfigError(describe("model", rule, type(model).__name__, "Pass the layer explicitly."))
    return name


def _dgn_bounds(generator: nn.Module, bounds_file: Optional[str]) -> Dict[str, Any]:
    if bounds_file is not None:
        return {"lower": 0.0, "upper": bounds_file}
    try:
        lower, upper = generator.code_bounds(k=3.0)
    except (AttributeError, LucentDGNError):  # no statistics: cnnpref's default bounds (0, 100)
        return {}
    return {"lower": lower, "upper": upper}


def run_examples(model: nn.Module, layer: Optional[str], kind: str, out_dir: Any, generator: Optional[nn.Module] = None,
                 variants: Sequence[str] = tuple(VARIANTS), units: Optional[Sequence[int]] = None,
                 bounds_file: Optional[str] = None, steps: Optional[int] = None, seed: int = 0,
                 progress: bool = True) -> Dict[str, Any]:
    """Run cnnpref's example settings for ``kind`` ("lower" or "higher") and save everything.

    Args:
        model: the classifier (``input_size`` and ``input_space`` attributes are used).
        layer: the layer; None maps cnnpref's onto the model (:func:`example_layer`: AlexNet
            ``"conv1"`` for lower, ``"fc8"`` for higher).
        out_dir: output folder (PNGs, masked PNGs for conv units, .npy, grid, settings.json).
        generator: needed for the DGN variants (skipped without one).
        units: channels to render; default cnnpref's ``every_nth_channel``.
        bounds_file: act_range file with the per-unit upper code bounds (cnnpref's 3x/fc6.txt).
        steps: override the number of iterations (for quick runs).

    Returns:
        the record written to ``settings.json``.
    """
    if kind not in ("lower", "higher"):
        raise ConfigError(describe("kind", "'lower' or 'higher'", kind))
    if layer is None:
        layer = example_layer(model, kind)
    size = int(getattr(model, "input_size", 227))
    channels = getattr(getattr(model, "input_space", None), "channels", 3)
    shape = layer_shape(model, layer, (channels, size, size))
    units = list(units) if units is not None else every_nth_channel(shape)
    results = {}
    for variant in variants:
        if variant.startswith("dgn") and generator is None:
            continue
        settings = dict(EXAMPLE_SETTINGS[(variant, kind)])
        if variant.startswith("dgn"):
            settings.update(_dgn_bounds(generator, bounds_file))
        if steps is not None:
            settings["maxiter" if "lbfgs" in variant else "iter_n"] = int(steps)
        results[variant] = render_units(model, layer, units, variant, generator=generator, settings=settings,
                                        channels=channels, seed=seed, progress=progress)
    rf = None
    if len(shape) == 3:
        rf = np.stack([receptive_field_mask(model, layer, unit_mask(shape, u), size, channels=3) for u in units])
    return save_units(out_dir, results, layer, units, rf_masks=rf,
                      extra={"kind": kind, "example_settings": {v: EXAMPLE_SETTINGS[(v, kind)] for v in results},
                             "bounds_file": bounds_file, "seed": seed})
