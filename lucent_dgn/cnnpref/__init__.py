"""cnnpref's four algorithms: presets (compositions) and cnnpref-compatible ``generate_image`` modules.

``from lucent_dgn.cnnpref.prefer_img_gd import generate_image`` (and ``prefer_img_lbfgs``,
``prefer_img_dgn_gd``, ``prefer_img_dgn_lbfgs``) mirror cnnpref's functions. The preset functions
of the same names live in :mod:`lucent_dgn.cnnpref.presets` and at the top level
(``lucent_dgn.prefer_img_gd`` ...), so the submodule names here stay free for the compatible API.
"""
from .presets import EXAMPLE_SETTINGS, VARIANTS
from .receptive_field import receptive_field_mask

__all__ = ["VARIANTS", "EXAMPLE_SETTINGS", "receptive_field_mask"]
