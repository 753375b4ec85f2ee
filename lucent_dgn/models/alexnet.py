"""BVLC AlexNet exactly as Caffe defines it (``bvlc_alexnet/deploy.prototxt``), the CNN of cnnpref.

Not torchvision's AlexNet (64 first-layer filters, no LRN, other padding). Layers, with the
Caffe names as module names so every unit is reachable pre-ReLU as ``"conv1"`` ... ``"fc8"``:

=========================================  ==================
conv1 (96, k11, s4) relu1 norm1 pool1      96x55x55 -> 96x27x27
conv2 (256, k5, p2, group 2) relu2 norm2 pool2   256x27x27 -> 256x13x13
conv3 (384, k3, p1) relu3                  384x13x13
conv4 (384, k3, p1, group 2) relu4         384x13x13
conv5 (256, k3, p1, group 2) relu5 pool5   256x13x13 -> 256x6x6
flatten fc6 relu6 drop6 fc7 relu7 drop7 fc8   4096, 4096, 1000 (logits, before ``prob``)
=========================================  ==================

Order conv -> ReLU -> LRN -> pool (BVLC AlexNet, not CaffeNet); LRN(5, 1e-4, 0.75, k=1) equals
Caffe's; max pooling 3/2 with ``ceil_mode=True`` as Caffe rounds up; ReLUs are not in place, so
hooks on ``convN``/``fcN`` see pre-ReLU values. Input (N, 3, 227, 227) in Caffe net space (BGR,
mean-subtracted, 0-255). 60,965,224 parameters.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import CorruptWeightsError, describe
from ..caffemodel import CaffeLayout
from ..spaces import CaffeSpace
from ..weights import WeightsEntry, load_into, load_weights_file, register_weights, resolve_weights

__all__ = ["BVLCAlexNet", "bvlc_alexnet", "ALEXNET_CAFFE_MAPPING", "ALEXNET_BDPY_KEYS", "CAFFE_LAYOUT", "WEIGHTS",
           "load_alexnet_weights"]

ALEXNET_CAFFE_MAPPING: Dict[str, str] = {name: name for name in
                                         ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")}
"""Caffe layer name -> module name (identical: the modules carry Caffe's names)."""

ALEXNET_BDPY_KEYS: Dict[str, str] = {
    "features.0": "conv1", "features.4": "conv2", "features.8": "conv3", "features.10": "conv4",
    "features.12": "conv5", "classifier.0": "fc6", "classifier.2": "fc7", "classifier.4": "fc8"}
"""bdpy ``AlexNet`` module prefix -> ours (bdpy's ``layer_map('alexnet')``)."""

WEIGHTS = register_weights(WeightsEntry(
    name="bvlc-alexnet", filename="bvlc_alexnet.caffemodel",
    url="http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel",
    sha1="9116a64c0fbe4459d18f4bb6b56d647b63920377", alt_filenames=("bvlc_alexnet.pt",),
    hint=("About 233 MB (Caffe model zoo; sha1 as listed there). A .caffemodel is read directly; "
          "`lucent-dgn convert-caffemodel` turns it into bvlc_alexnet.pt once.")))
"""The Caffe model zoo weights (sha256 unknown; the zoo's sha1 is checked on download)."""


def _layers(num_classes: int) -> "OrderedDict[str, nn.Module]":
    def lrn() -> nn.Module:
        return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

    def pool() -> nn.Module:
        return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

    return OrderedDict([
        ("conv1", nn.Conv2d(3, 96, kernel_size=11, stride=4)), ("relu1", nn.ReLU()), ("norm1", lrn()),
        ("pool1", pool()),
        ("conv2", nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2)), ("relu2", nn.ReLU()),
        ("norm2", lrn()), ("pool2", pool()),
        ("conv3", nn.Conv2d(256, 384, kernel_size=3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2)), ("relu5", nn.ReLU()),
        ("pool5", pool()), ("flatten", nn.Flatten(1)),
        ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(0.5)),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(0.5)),
        ("fc8", nn.Linear(4096, num_classes)),
    ])


class BVLCAlexNet(nn.Sequential):
    """BVLC AlexNet: (N, 3, 227, 227) Caffe-space image -> (N, num_classes) fc8 logits.

    Args:
        num_classes: width of fc8. Default 1000.

    Attributes:
        input_space: :class:`~lucent_dgn.spaces.CaffeSpace` (BGR, mean-subtracted, 0-255).
        input_size: 227.
    """

    input_size = 227

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(_layers(num_classes))
        self.input_space = CaffeSpace()


CAFFE_LAYOUT = CaffeLayout("bvlc_alexnet", ALEXNET_CAFFE_MAPPING, BVLCAlexNet)
"""Caffe names of BVLC AlexNet, for ``convert-caffemodel --arch bvlc_alexnet``."""


def _rename_bdpy(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        out[f"{ALEXNET_BDPY_KEYS.get(prefix, prefix)}.{leaf}"] = value
    return out


def load_alexnet_weights(model: BVLCAlexNet, weights: Union[str, Path, Mapping[str, torch.Tensor]]) -> BVLCAlexNet:
    """Load a ``.caffemodel``, our state dict, or a bdpy ``AlexNet`` state dict into ``model``."""
    if isinstance(weights, Mapping):
        state, source = dict(weights), "state dict"
    else:
        source = str(weights)
        state = load_weights_file(weights, caffe_mapping=ALEXNET_CAFFE_MAPPING)
    if not state:
        raise CorruptWeightsError(describe("weights", "a non-empty AlexNet state dict", source))
    load_into(model, _rename_bdpy(state), source)
    return model


def bvlc_alexnet(weights: Union[None, str, Path, Mapping[str, torch.Tensor]] = None,
                 cache_dir: Optional[str] = None, download: bool = False, progress: bool = True) -> BVLCAlexNet:
    """BVLC AlexNet, optionally with the Caffe model zoo weights.

    Args:
        weights: None (random init), ``"default"`` (registry entry ``"bvlc-alexnet"``:
            ``bvlc_alexnet.caffemodel`` or a converted ``bvlc_alexnet.pt`` in the cache), a path
            (``.caffemodel`` or state dict) or a state dict.
        cache_dir: cache directory for ``"default"``; default ``$LUCENT_DGN_CACHE`` or
            ``~/.cache/lucent_dgn``.
        download: allow downloading the ``"default"`` file (about 233 MB). Default False.
        progress: tqdm bar while downloading.

    Returns:
        The model in eval mode; with weights, its parameters have ``requires_grad`` off.
    """
    model = BVLCAlexNet()
    if weights is None:
        return model.eval()
    if isinstance(weights, str) and weights == "default":
        weights = resolve_weights(WEIGHTS, cache_dir=cache_dir, download=download, progress=progress)
    load_alexnet_weights(model, weights)
    return model.eval().requires_grad_(False)
