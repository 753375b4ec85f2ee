"""Models and generators by the names of the command line (and of sweeps): one loader for both.

Nothing is imported at module level beyond the errors; each loader imports what its name needs.
"""
from __future__ import annotations

from typing import Optional

from .errors import ConfigError, describe

__all__ = ["load_model_by_name", "load_generator_by_name", "SHIPPED_MODELS"]

#: Models shipped with the package (weights in ``lucent_dgn/assets``).
SHIPPED_MODELS = ("fashion", "fashion-judge")


def load_model_by_name(name: str, weights: Optional[str] = None):
    """``fashion``/``fashion-judge`` (shipped), ``bvlc_alexnet``, or a torchvision classifier name."""
    if name == "fashion":
        from .models.fashion import fashion_classifier
        return fashion_classifier(path=weights)
    if name == "fashion-judge":
        from .models.fashion import fashion_judge
        return fashion_judge(path=weights)
    from .models.zoo import load_model
    return load_model(name, weights=weights or "default")


def load_generator_by_name(name: str, weights: Optional[str] = None):
    """``fashion`` (shipped) or ``deepsim-fc6``/``-fc7``/``-fc8``/``-pool5``."""
    if name == "fashion":
        from .generators.small import fashion_generator
        return fashion_generator(path=weights)
    if name.startswith("deepsim-"):
        from .generators.deepsim import deepsim_generator
        return deepsim_generator(name.split("-", 1)[1], weights=weights or "default")
    raise ConfigError(describe("--generator", "'fashion' or 'deepsim-fc6|fc7|fc8|pool5'", name))
