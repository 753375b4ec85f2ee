"""icnn's feature inversion (Shen et al. 2019): reconstruct images whose CNN features match targets.

The objective is :func:`lucent_dgn.feature_match`; :mod:`.targets` computes and stores target
features; :mod:`.presets` registers the four variants (pixel or DGN x GD or L-BFGS-B) with
:func:`lucent_dgn.recipe` beside cnnpref's, and :func:`invert` runs one.
"""
from __future__ import annotations

from .presets import ICNN_VARIANTS, OBJECTIVE_DEFAULTS, fashion_settings, invert
from .targets import features_of, load_features, model_input_space, read_image, save_features

__all__ = ["ICNN_VARIANTS", "OBJECTIVE_DEFAULTS", "invert", "fashion_settings", "features_of", "load_features",
           "save_features", "read_image", "model_input_space"]
