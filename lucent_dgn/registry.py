"""Classifiers and generators by the names the command line takes.

Models: ``"fashion"`` and ``"fashion-judge"`` (shipped Fashion-MNIST networks), ``"bvlc_alexnet"``
(cnnpref's Caffe AlexNet) and every torchvision classification model name (``"mobilenet_v2"`` ...).
Generators: ``"fashion"`` (shipped) and ``"deepsim-fc6"``, ``"-fc7"``, ``"-fc8"``, ``"-pool5"``.

Both ``lucent-dgn`` and ``lucent-dgn train-generator`` load networks through this module.
torchvision and the DeePSiM generators are imported only when a name needs them, so checking a
shipped name costs no torchvision import.
"""
from __future__ import annotations

import difflib
from typing import List, Optional, Sequence

from torch import nn

from .errors import ConfigError, describe

__all__ = ["SHIPPED_MODELS", "GENERATOR_NAMES", "model_names", "check_model_name", "check_generator_name",
           "load_model_by_name", "load_generator_by_name", "class_names"]

#: Models that ship with the package (no download, no torchvision).
SHIPPED_MODELS = ("fashion", "fashion-judge")
#: Every generator name :func:`load_generator_by_name` accepts.
GENERATOR_NAMES = ("fashion", "deepsim-fc6", "deepsim-fc7", "deepsim-fc8", "deepsim-pool5")

_MODEL_RULE = "'fashion', 'fashion-judge', 'bvlc_alexnet' or a torchvision classifier name"


def model_names() -> List[str]:
    """Every model name: the shipped ones, ``"bvlc_alexnet"``, then torchvision's (imports torchvision)."""
    from .models.zoo import available_models
    return list(SHIPPED_MODELS) + available_models()


def _close(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=3)
    return ("Did you mean " + ", ".join(map(repr, close)) + "?") if close else ""


def check_model_name(name: str, arg: str = "--model") -> None:
    """Raise ConfigError (with close names) unless ``name`` is a model name; shipped names and
    ``bvlc_alexnet`` are checked without importing torchvision."""
    if name in SHIPPED_MODELS or name == "bvlc_alexnet":
        return
    known = model_names()
    if name not in known:
        hint = _close(name, known) or ("Run `python -c 'import lucent_dgn.models as m; "
                                       "print(m.available_models())'` for the names.")
        raise ConfigError(describe(arg, _MODEL_RULE, name, hint))


def check_generator_name(name: str, arg: str = "--generator") -> None:
    """Raise ConfigError listing :data:`GENERATOR_NAMES` unless ``name`` is one of them."""
    if name not in GENERATOR_NAMES:
        raise ConfigError(describe(arg, "one of " + ", ".join(GENERATOR_NAMES), name, _close(name, GENERATOR_NAMES)))


def load_model_by_name(name: str, weights: Optional[str] = None) -> nn.Module:
    """A classifier by name, in eval mode (see the module docstring for the names).

    Args:
        name: ``"fashion"``, ``"fashion-judge"``, ``"bvlc_alexnet"`` or a torchvision name.
        weights: a weights file; default the shipped file (Fashion-MNIST models) or the weight
            loading chain's default (:func:`lucent_dgn.models.load_model`, offline).

    Raises:
        ConfigError: an unknown name. WeightsError: weights that cannot be found or read.
    """
    check_model_name(name, "name")
    if name == "fashion":
        from .models.fashion import fashion_classifier
        return fashion_classifier(path=weights)
    if name == "fashion-judge":
        from .models.fashion import fashion_judge
        return fashion_judge(path=weights)
    from .models.zoo import load_model
    return load_model(name, weights=weights or "default")


def load_generator_by_name(name: str, weights: Optional[str] = None) -> nn.Module:
    """A generator by name, in eval mode: ``"fashion"`` (shipped) or ``"deepsim-<fc6|fc7|fc8|pool5>"``.

    Raises:
        ConfigError: an unknown name. WeightsError: weights that cannot be found or read.
    """
    check_generator_name(name, "name")
    if name == "fashion":
        from .generators.small import fashion_generator
        return fashion_generator(path=weights)
    from .generators.deepsim import deepsim_generator
    return deepsim_generator(name.split("-", 1)[1], weights=weights or "default")


def class_names(model: nn.Module) -> Optional[List[str]]:
    """The model's output class names: ``model.classes`` (shipped models) or ``model.categories``
    (torchvision's pretrained weights); None when the model declares neither."""
    for attr in ("classes", "categories"):
        names = getattr(model, attr, None)
        if names is not None and len(names) > 0:
            return [str(n) for n in names]
    return None
