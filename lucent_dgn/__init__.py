"""lucent-dgn: preferred images for CNN units on top of Lucent.

Three additions to Lucent, and cnnpref's four algorithms as their combinations:

* masked-unit objectives (:func:`masked_units`) that compose with Lucent's objectives;
* a deep generator network parameterization (:class:`DGNImage`, DeePSiM generators);
* an L-BFGS render loop beside momentum gradient descent (:func:`render`).

icnn's feature inversion (Shen et al. 2019) is one more objective, :func:`feature_match`, with
its four variants run by :func:`invert`.

>>> import lucent_dgn as ld
>>> model = ld.models.fashion_classifier()
>>> result = ld.render(model, ld.masked_units("fc2", ld.unit_mask((10,), 3)),
...                    ld.PixelImage(28, space="gray"), ld.MomentumGD(lr=0.05, decay=0.0), steps=50,
...                    progress=False)
>>> bool(result.final_activation[0] > result.activation_history[0, 0])
True

``lucent_dgn.models`` and ``lucent_dgn.generators`` are imported on first use (``ld.models``),
so ``import lucent_dgn`` imports neither torchvision nor the generator zoo.
"""
from __future__ import annotations

import importlib
from typing import Any, List

__version__ = "0.1.0"

from . import _lucent  # noqa: F401  (first: imports Lucent without kornia's FutureWarning)
from . import errors
from .cnnpref.presets import prefer_img_dgn_gd, prefer_img_dgn_lbfgs, prefer_img_gd, prefer_img_lbfgs
from .errors import LucentDGNError
from .icnn import features_of, invert, load_features, save_features
from .interop.captum import as_neuron_selector
from .layers import layer_shape, list_layers, resolve_layer
from .objectives import (SimulatedNeuron, black_box, channel_mask, every_nth_channel, feature_match, item_objective,
                         masked_units, p_norm, region_mask, report_activation, total_variation, unit_mask,
                         unit_masks)
from .parameterizations import DGNImage, LucentParam, Parameterization, PixelImage
from .recipes import Recipe, recipe, recipe_options, variant_names
from .render import (Jitter, RenderResult, Snapshot, make_optimizer, preserve_pre_activations, render)
from .render.gd import MomentumGD
from .render.closed_loop import ClosedLoop
from .render.lbfgs import LBFGSB, ScipyLBFGSB
from .render.search import CMAES, GeneticSearch, RandomSearch
from .render.torch_optim import TorchOptimizer
from .spaces import CaffeSpace, TorchvisionSpace, UnitSpace
from . import atlas, sweeps  # noqa: E402 - after the pieces they render with
from .sweeps import sweep

__all__ = [
    "__version__",
    # objectives
    "masked_units", "feature_match", "unit_mask", "unit_masks", "channel_mask", "region_mask", "every_nth_channel",
    "p_norm", "total_variation", "item_objective", "report_activation", "black_box", "SimulatedNeuron",
    # parameterizations
    "Parameterization", "PixelImage", "DGNImage", "LucentParam",
    # rendering
    "render", "RenderResult", "MomentumGD", "LBFGSB", "ScipyLBFGSB", "TorchOptimizer", "make_optimizer", "Jitter",
    "Snapshot", "preserve_pre_activations",
    # gradient-free search and closed loops
    "CMAES", "GeneticSearch", "RandomSearch", "ClosedLoop",
    # presets: one entry point for the variants (cnnpref's four and any registered), and aliases
    "recipe", "Recipe", "recipe_options", "variant_names", "prefer_img_gd", "prefer_img_lbfgs", "prefer_img_dgn_gd",
    "prefer_img_dgn_lbfgs",
    # feature inversion (icnn)
    "invert", "features_of", "load_features", "save_features",
    # layers, spaces, interop, errors
    "resolve_layer", "list_layers", "layer_shape", "CaffeSpace", "TorchvisionSpace", "UnitSpace",
    "as_neuron_selector", "LucentDGNError", "errors", "models", "generators",
    # whole-layer sweeps and their atlas
    "sweep", "sweeps", "atlas",
]

#: Subpackages imported on first attribute access (they pull in torchvision and the generator zoo).
_LAZY_SUBPACKAGES = ("models", "generators")


def __getattr__(name: str) -> Any:
    """Import :data:`_LAZY_SUBPACKAGES` on first use (``ld.models``, ``ld.generators``)."""
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
