"""Recipe options for a sweep's variants (``lucent-dgn sweep --preset`` and the demo).

The presets are those of :func:`lucent_dgn.runs.variant_settings`, the one place that names them:

* ``"model"``: the model's own tuned settings (its ``render_settings``; the shipped Fashion-MNIST
  classifier: the demo's settings, code bounds from the generator's statistics); cnnpref's function
  defaults for a model that declares none.
* ``"cnnpref"``: cnnpref's function defaults (the recipes' own defaults, no options).
* ``"lower"`` / ``"higher"``: cnnpref's example-script settings for lower (conv) and higher
  (fully connected) layers, :data:`lucent_dgn.cnnpref.presets.EXAMPLE_SETTINGS`.

Then ``steps`` sets every variant's iteration count, and overrides (a dict or a JSON file) come last.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from torch import nn

from ..errors import ConfigError, describe

__all__ = ["variant_options"]


def _read_options(path: Any) -> Dict[str, Dict[str, Any]]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(describe("--options", "a JSON file {variant: {option: value}}", str(p), str(err))) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(describe("--options", "a JSON object {variant: {option: value}}", str(p)))
    return data


def variant_options(variants: Sequence[str], preset: str = "model", *, model: Optional[nn.Module] = None,
                    generator: Optional[nn.Module] = None, steps: Optional[int] = None,
                    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    options_file: Any = None) -> Dict[str, Dict[str, Any]]:
    """Options per variant: the preset's, then ``steps`` (``iter_n``/``maxiter``), then overrides.

    Args:
        variants: variant names.
        preset: one of :data:`lucent_dgn.runs.PRESETS` (default ``"model"``).
        model: the classifier whose ``render_settings`` the ``"model"`` preset reads (None: cnnpref's
            function defaults).
        generator: the DGN variants' generator (tuned settings may read its code statistics).
        steps: iterations of every variant (GD steps, L-BFGS iterations), or None.
        overrides: ``{variant: {option: value}}`` applied last.
        options_file: a JSON file with such overrides (``--options``).

    Raises:
        ConfigError: an unknown variant or preset, a bad options file, or a non-positive ``steps``.
    """
    from ..runs import variant_settings, with_steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        raise ConfigError(describe("--steps", "a positive integer", steps))
    out = {v: with_steps(variant_settings(model, v, generator, preset), v, steps) for v in variants}
    extra = dict(_read_options(options_file)) if options_file is not None else {}
    extra.update(overrides or {})
    for v, opts in extra.items():
        if v not in out:
            raise ConfigError(describe("--options", f"options for the swept variants {list(variants)}", v))
        out[v].update(opts)
    return out
