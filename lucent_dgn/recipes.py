"""One entry point for the presets: ``recipe(variant, ...)`` -> :class:`Recipe` -> ``.render(model)``.

This module loads the built-in variants (cnnpref's four, :mod:`lucent_dgn.cnnpref.presets`) into
the registry of :mod:`lucent_dgn.variants` and re-exports its API.

>>> import lucent_dgn as ld
>>> r = ld.recipe("gd", "fc8", ld.unit_mask((1000,), 1), iter_n=10)
>>> sorted(ld.recipe_options("lbfgs"))[:3]
['batch', 'c1', 'c2']
"""
from __future__ import annotations

from .cnnpref import presets as _cnnpref_presets  # noqa: F401  (registers gd, lbfgs, dgn_gd, dgn_lbfgs)
from .variants import (RENDER_OPTIONS, Pieces, Recipe, Variant, get_variant, recipe, recipe_options,
                       register_variant, split_options, variant_names)

__all__ = ["recipe", "Recipe", "Pieces", "Variant", "recipe_options", "register_variant", "variant_names",
           "get_variant", "split_options", "RENDER_OPTIONS"]
