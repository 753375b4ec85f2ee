"""Classifier networks: BVLC AlexNet as in Caffe, and torchvision models by name."""
from __future__ import annotations

from .alexnet import ALEXNET_BDPY_KEYS, ALEXNET_CAFFE_MAPPING, BVLCAlexNet, bvlc_alexnet, load_alexnet_weights
from .fashion import FashionCNN, FashionMLP, fashion_classifier, fashion_judge
from .zoo import available_models, load_model, torchvision_weights_entry

__all__ = [
    "FashionCNN",
    "FashionMLP",
    "fashion_classifier",
    "fashion_judge",
    "ALEXNET_BDPY_KEYS",
    "ALEXNET_CAFFE_MAPPING",
    "BVLCAlexNet",
    "bvlc_alexnet",
    "load_alexnet_weights",
    "available_models",
    "load_model",
    "torchvision_weights_entry",
]
