"""Classifier networks: BVLC AlexNet and VGG19 as in Caffe, the shipped Fashion-MNIST networks, and
torchvision models by name.

The torchvision part (:mod:`lucent_dgn.models.zoo`: ``available_models``, ``load_model``,
``torchvision_weights_entry``) is imported on first use, so the shipped networks load without
importing torchvision.
"""
from __future__ import annotations

import importlib
from typing import Any, List

from .alexnet import ALEXNET_BDPY_KEYS, ALEXNET_CAFFE_MAPPING, BVLCAlexNet, bvlc_alexnet, load_alexnet_weights
from .fashion import FashionCNN, FashionMLP, fashion_classifier, fashion_judge, fashion_settings
from .vgg import VGG19_CAFFE_MAPPING, VGG19_TORCHVISION_ALIASES, CaffeVGG19, caffe_vgg19, load_vgg19_weights

__all__ = [
    "FashionCNN",
    "FashionMLP",
    "fashion_classifier",
    "fashion_judge",
    "fashion_settings",
    "ALEXNET_BDPY_KEYS",
    "ALEXNET_CAFFE_MAPPING",
    "BVLCAlexNet",
    "bvlc_alexnet",
    "load_alexnet_weights",
    "CaffeVGG19",
    "caffe_vgg19",
    "load_vgg19_weights",
    "VGG19_CAFFE_MAPPING",
    "VGG19_TORCHVISION_ALIASES",
    "available_models",
    "load_model",
    "torchvision_weights_entry",
]

#: Names served by :mod:`lucent_dgn.models.zoo` (imports torchvision on first use).
_ZOO_NAMES = ("available_models", "load_model", "torchvision_weights_entry")


def __getattr__(name: str) -> Any:
    """Import the torchvision zoo on first use of one of :data:`_ZOO_NAMES`."""
    if name in _ZOO_NAMES:
        return getattr(importlib.import_module(".zoo", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
