"""Classifier networks: BVLC AlexNet and VGG19 as in Caffe, and torchvision models by name."""
from __future__ import annotations

from .alexnet import ALEXNET_BDPY_KEYS, ALEXNET_CAFFE_MAPPING, BVLCAlexNet, bvlc_alexnet, load_alexnet_weights
from .fashion import FashionCNN, FashionMLP, fashion_classifier, fashion_judge
from .vgg import VGG19_CAFFE_MAPPING, VGG19_TORCHVISION_ALIASES, CaffeVGG19, caffe_vgg19, load_vgg19_weights
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
    "CaffeVGG19",
    "caffe_vgg19",
    "load_vgg19_weights",
    "VGG19_CAFFE_MAPPING",
    "VGG19_TORCHVISION_ALIASES",
    "available_models",
    "load_model",
    "torchvision_weights_entry",
]
