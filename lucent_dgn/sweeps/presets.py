"""Named option sets for a sweep's variants (used by ``lucent-dgn sweep --preset`` and the demo).

* ``"default"``: cnnpref's function defaults (the recipes' own defaults, no options).
* ``"lower"`` / ``"higher"``: cnnpref's example-script settings for lower (conv) and higher
  (fully connected) layers, :data:`lucent_dgn.cnnpref.presets.EXAMPLE_SETTINGS`.
* ``"fashion"``: the settings tuned for the shipped Fashion-MNIST classifier and generator
  (:func:`lucent_dgn.demo.fashion_settings`: grey pixel space, code bounds from the generator's
  statistics).
* ``"auto"``: ``"fashion"`` for the shipped model, ``"default"`` otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from ..errors import ConfigError, describe

__all__ = ["PRESETS", "variant_options"]

PRESETS = ("auto", "default", "lower", "higher", "fashion")


def _read_options(path: Any) -> Dict[str, Dict[str, Any]]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(describe("--options", "a JSON file {variant: {option: value}}", str(p), str(err))) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(describe("--options", "a JSON object {variant: {option: value}}", str(p)))
    return data


def variant_options(variants: Sequence[str], preset: str = "auto", *, model_name: Optional[str] = None,
                    generator: Any = None, steps: Optional[int] = None,
                    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    options_file: Any = None) -> Dict[str, Dict[str, Any]]:
    """Options per variant: the preset's, then ``steps`` (``iter_n``/``maxiter``), then overrides.

    Args:
        variants: variant names.
        preset: one of :data:`PRESETS`.
        model_name: the model's name (``"auto"`` picks ``"fashion"`` for ``"fashion"``).
        generator: the generator module (the ``"fashion"`` preset reads its code statistics).
        steps: iterations of every variant (GD steps, L-BFGS iterations), or None.
        overrides: ``{variant: {option: value}}`` applied last.
        options_file: a JSON file with such overrides.

    Raises:
        ConfigError: an unknown preset, a bad options file, or a non-positive ``steps``.
    """
    if preset not in PRESETS:
        raise ConfigError(describe("--preset", f"one of {list(PRESETS)}", preset))
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        raise ConfigError(describe("--steps", "a positive integer", steps))
    from ..recipes import get_variant, recipe_options
    if preset == "auto":
        preset = "fashion" if model_name == "fashion" else "default"
    out: Dict[str, Dict[str, Any]] = {v: {} for v in variants}
    if preset in ("lower", "higher"):
        from ..cnnpref.presets import EXAMPLE_SETTINGS
        out = {v: dict(EXAMPLE_SETTINGS.get((v, preset), {})) for v in variants}
    elif preset == "fashion":
        from ..demo import fashion_settings
        if generator is None and any(get_variant(v).needs_generator for v in variants):
            raise ConfigError(describe("--generator", "the shipped 'fashion' generator for --preset fashion", None))
        if generator is None:
            from ..generators.small import fashion_generator
            generator = fashion_generator()
        table = fashion_settings(generator)
        out = {v: dict(table.get(v, {})) for v in variants}
    for v in variants:
        if steps is not None:
            out[v]["maxiter" if "maxiter" in recipe_options(v) else "iter_n"] = int(steps)
    extra = dict(_read_options(options_file)) if options_file is not None else {}
    extra.update(overrides or {})
    for v, opts in extra.items():
        if v not in out:
            raise ConfigError(describe("--options", f"options for the swept variants {list(variants)}", v))
        out[v].update(opts)
    return out
