"""VGG19 as Caffe defines it (``VGG_ILSVRC_19_layers``), and cnnpref's layer names for torchvision's VGG19.

:class:`CaffeVGG19` follows cnnpref's ``VGG_ILSVRC_19_layers.prototxt`` (Simonyan & Zisserman
2014, the Caffe model zoo release) with the Caffe names as module names, so every unit is
reachable pre-ReLU as ``"conv1_1"`` ... ``"conv5_4"``, ``"fc6"``, ``"fc7"``, ``"fc8"``:

==========================================================  =========================
conv1_1 relu1_1 conv1_2 relu1_2 pool1                       64x224x224 -> 64x112x112
conv2_1 relu2_1 conv2_2 relu2_2 pool2                       128x112x112 -> 128x56x56
conv3_1 ... conv3_4 (each with relu3_N) pool3               256x56x56 -> 256x28x28
conv4_1 ... conv4_4 pool4                                   512x28x28 -> 512x14x14
conv5_1 ... conv5_4 pool5                                   512x14x14 -> 512x7x7
flatten fc6 relu6 drop6 fc7 relu7 drop7 fc8                 4096, 4096, 1000 (logits)
==========================================================  =========================

Every convolution is 3x3, stride 1, padding 1; pooling is max 2x2 stride 2 with Caffe's ceil
rounding (``ceil_mode=True``; at 224 px every pooling divides exactly). ReLUs are not in place.
Input (N, 3, 224, 224) in Caffe net space (BGR, mean-subtracted, 0-255; cnnpref subtracts its
ILSVRC-2012 mean :data:`~lucent_dgn.spaces.CAFFE_MEAN_BGR` for every network). 143,667,240
parameters.

torchvision's ``vgg19`` has the same layers under ``features.N`` / ``classifier.N``;
:data:`VGG19_TORCHVISION_ALIASES` maps cnnpref's names onto them (``"conv3_1"`` ->
``"features.10"``, ``"fc8"`` -> ``"classifier.6"``). :func:`lucent_dgn.models.load_model`
attaches it to ``vgg19`` as ``model.layer_aliases``, which :func:`lucent_dgn.layers.resolve_layer`
consults, so every function that takes a layer accepts these names. Note that torchvision's
ReLUs are in place: the render loop switches them off while it runs (pre-ReLU units).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..errors import CorruptWeightsError, describe
from ..caffemodel import CaffeLayout
from ..spaces import CaffeSpace
from ..weights import WeightsEntry, load_into, load_weights_file, register_weights, resolve_weights

__all__ = ["CaffeVGG19", "caffe_vgg19", "load_vgg19_weights", "VGG19_CONV_BLOCKS", "VGG19_CAFFE_MAPPING",
           "VGG19_TORCHVISION_ALIASES", "CAFFE_LAYOUT", "WEIGHTS"]

#: (block, convolutions, output channels) of VGG19's five convolution blocks.
VGG19_CONV_BLOCKS: Tuple[Tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _conv_names() -> List[str]:
    return [f"conv{block}_{i}" for block, n, _ in VGG19_CONV_BLOCKS for i in range(1, n + 1)]


VGG19_CAFFE_MAPPING: Dict[str, str] = {name: name for name in _conv_names() + ["fc6", "fc7", "fc8"]}
"""Caffe layer name -> module name (identical: the modules carry Caffe's names)."""


def _torchvision_aliases() -> Dict[str, str]:
    aliases: Dict[str, str] = {}
    index = 0
    for block, n, _ in VGG19_CONV_BLOCKS:
        for i in range(1, n + 1):
            aliases[f"conv{block}_{i}"] = f"features.{index}"
            aliases[f"relu{block}_{i}"] = f"features.{index + 1}"
            index += 2
        aliases[f"pool{block}"] = f"features.{index}"
        index += 1
    aliases.update({"fc6": "classifier.0", "relu6": "classifier.1", "drop6": "classifier.2",
                    "fc7": "classifier.3", "relu7": "classifier.4", "drop7": "classifier.5", "fc8": "classifier.6"})
    return aliases


VGG19_TORCHVISION_ALIASES: Dict[str, str] = _torchvision_aliases()
"""cnnpref's (Caffe's) layer names -> module paths of torchvision's ``vgg19``."""

WEIGHTS = register_weights(WeightsEntry(
    name="vgg-ilsvrc-19", filename="VGG_ILSVRC_19_layers.caffemodel",
    url="http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_19_layers.caffemodel",
    alt_filenames=("vgg_ilsvrc_19.pt",),
    hint=("About 549 MB (the URL of cnnpref's net/downloadnet.sh; no checksum is published, so it is not "
          "verified). A .caffemodel is read directly; `lucent-dgn convert-caffemodel --arch vgg19` turns it "
          "into vgg_ilsvrc_19.pt once.")))
"""The Caffe model zoo weights of VGG19 (``VGG_ILSVRC_19_layers.caffemodel``)."""


def _layers(num_classes: int) -> "OrderedDict[str, nn.Module]":
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    channels = 3
    for block, n, width in VGG19_CONV_BLOCKS:
        for i in range(1, n + 1):
            layers[f"conv{block}_{i}"] = nn.Conv2d(channels, width, kernel_size=3, padding=1)
            layers[f"relu{block}_{i}"] = nn.ReLU()
            channels = width
        layers[f"pool{block}"] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
    layers["flatten"] = nn.Flatten(1)
    layers["fc6"], layers["relu6"], layers["drop6"] = nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5)
    layers["fc7"], layers["relu7"], layers["drop7"] = nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5)
    layers["fc8"] = nn.Linear(4096, num_classes)
    return layers


class CaffeVGG19(nn.Sequential):
    """VGG19 in Caffe's layout: (N, 3, 224, 224) Caffe-space image -> (N, num_classes) fc8 logits.

    Args:
        num_classes: width of fc8. Default 1000.

    Attributes:
        input_space: :class:`~lucent_dgn.spaces.CaffeSpace` (BGR, mean-subtracted, 0-255).
        input_size: 224.
    """

    input_size = 224

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(_layers(num_classes))
        self.input_space = CaffeSpace()


CAFFE_LAYOUT = CaffeLayout("vgg19", VGG19_CAFFE_MAPPING, CaffeVGG19)
"""Caffe names of VGG19, for ``convert-caffemodel --arch vgg19``."""


def load_vgg19_weights(model: CaffeVGG19, weights: Union[str, Path, Mapping[str, torch.Tensor]]) -> CaffeVGG19:
    """Load a ``.caffemodel`` (Caffe names) or our state dict into ``model`` (strictly).

    For torchvision's own VGG19 weights use ``load_model("vgg19")``, which accepts the same layer
    names through :data:`VGG19_TORCHVISION_ALIASES`.
    """
    if isinstance(weights, Mapping):
        state, source = dict(weights), "state dict"
    else:
        source = str(weights)
        state = load_weights_file(weights, caffe_mapping=VGG19_CAFFE_MAPPING)
    if not state:
        raise CorruptWeightsError(describe("weights", "a non-empty VGG19 state dict", source))
    load_into(model, state, source)
    return model


def caffe_vgg19(weights: Union[None, str, Path, Mapping[str, torch.Tensor]] = None,
                cache_dir: Optional[str] = None, download: bool = False, progress: bool = True) -> CaffeVGG19:
    """VGG19 in Caffe's layout, optionally with the Caffe model zoo weights.

    Args:
        weights: None (random init), ``"default"`` (registry entry ``"vgg-ilsvrc-19"``:
            ``VGG_ILSVRC_19_layers.caffemodel`` or a converted ``vgg_ilsvrc_19.pt`` in the cache), a
            path (``.caffemodel`` or state dict) or a state dict.
        cache_dir: cache directory for ``"default"``; default ``$LUCENT_DGN_CACHE`` or
            ``~/.cache/lucent_dgn``.
        download: allow downloading the ``"default"`` file (about 549 MB). Default False.
        progress: tqdm bar while downloading.

    Returns:
        The model in eval mode; with weights, its parameters have ``requires_grad`` off.
    """
    model = CaffeVGG19()
    if weights is None:
        return model.eval()
    if isinstance(weights, str) and weights == "default":
        weights = resolve_weights(WEIGHTS, cache_dir=cache_dir, download=download, progress=progress)
    load_vgg19_weights(model, weights)
    return model.eval().requires_grad_(False)
