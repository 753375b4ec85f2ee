"""PyTorch copies of the MTCNN Caffe nets (Zhang et al. 2016: det1 = PNet, det2 = RNet, det3 = ONet).

Test-only definitions that follow ``det{1,2,3}.prototxt`` exactly, in Caffe's conventions:
convolutions without padding, PReLU per channel, max pooling with Caffe's ceil rounding
(``ceil_mode=True``), and an InnerProduct after a convolution flattening its input in (C, H, W)
order. Module names are those of facenet-pytorch's copies. The Caffe models were trained on
transposed images (x and y swapped), so their face/non-face scores are meant for transposed input.

``MAPPINGS[net]`` maps each Caffe layer name to the module prefix here;
:func:`expected_blob_shapes` infers every layer's blob shapes from a prototxt's text.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Tuple

import torch
from torch import nn

__all__ = ["PNet", "RNet", "ONet", "NETS", "MAPPINGS", "INPUT_SIZES", "prototxt_layers",
           "expected_blob_shapes"]


class PNet(nn.Module):
    """det1 (12-net), fully convolutional: (N, 3, H, W) -> prob (N, 2, h, w), bbox (N, 4, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """det2 (24-net): (N, 3, 24, 24) -> prob (N, 2), bbox (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.flatten(1)))  # Caffe InnerProduct: (C, H, W) order
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """det3 (48-net): (N, 3, 48, 48) -> prob (N, 2), bbox (N, 4), landmarks (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.flatten(1)))  # dropout is the identity at test time
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


NETS = {"det1": PNet, "det2": RNet, "det3": ONet}
INPUT_SIZES = {"det1": 12, "det2": 24, "det3": 48}
MAPPINGS: Dict[str, Dict[str, str]] = {
    "det1": {"conv1": "conv1", "PReLU1": "prelu1", "conv2": "conv2", "PReLU2": "prelu2", "conv3": "conv3",
             "PReLU3": "prelu3", "conv4-1": "conv4_1", "conv4-2": "conv4_2"},
    "det2": {"conv1": "conv1", "prelu1": "prelu1", "conv2": "conv2", "prelu2": "prelu2", "conv3": "conv3",
             "prelu3": "prelu3", "conv4": "dense4", "prelu4": "prelu4", "conv5-1": "dense5_1",
             "conv5-2": "dense5_2"},
    "det3": {"conv1": "conv1", "prelu1": "prelu1", "conv2": "conv2", "prelu2": "prelu2", "conv3": "conv3",
             "prelu3": "prelu3", "conv4": "conv4", "prelu4": "prelu4", "conv5": "dense5", "prelu5": "prelu5",
             "conv6-1": "dense6_1", "conv6-2": "dense6_2", "conv6-3": "dense6_3"},
}


def prototxt_layers(text: str) -> List[dict]:
    """Layers of a prototxt: name, type, bottoms, tops and the integer parameters."""
    text = re.sub(r"#[^\n]*", "", text)
    layers = []
    for match in re.finditer(r"\blayers?\s*\{", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        block = text[match.end(): i - 1]
        get = lambda key: re.findall(rf"\b{key}\s*:\s*\"?([\w./-]+)\"?", block)  # noqa: E731
        ints = {k: int(get(k)[0]) for k in ("num_output", "kernel_size", "stride", "pad", "group") if get(k)}
        layers.append(dict(name=get("name")[0], type=get("type")[0], bottoms=get("bottom"), tops=get("top"),
                           **ints))
    return layers


def expected_blob_shapes(text: str) -> Dict[str, List[Tuple[int, ...]]]:
    """Caffe blob shapes of every layer with weights, by shape inference over the prototxt."""
    _, channels, height, width = (int(d) for d in re.findall(r"input_dim\s*:\s*(\d+)", text))
    blobs = {re.search(r'input\s*:\s*"(\w+)"', text).group(1): (channels, height, width)}
    shapes = {}
    for layer in prototxt_layers(text):
        src = blobs[layer["bottoms"][0]]
        k, s, p = layer.get("kernel_size", 1), layer.get("stride", 1), layer.get("pad", 0)
        out = src
        if layer["type"] == "Convolution":
            n = layer["num_output"]
            shapes[layer["name"]] = [(n, src[0] // layer.get("group", 1), k, k), (n,)]
            out = (n, (src[1] + 2 * p - k) // s + 1, (src[2] + 2 * p - k) // s + 1)
        elif layer["type"] == "Pooling":  # Caffe rounds pooled sizes up
            out = (src[0], -(-(src[1] + 2 * p - k) // s) + 1, -(-(src[2] + 2 * p - k) // s) + 1)
        elif layer["type"] == "PReLU":
            shapes[layer["name"]] = [(src[0],)]
        elif layer["type"] == "InnerProduct":
            n = layer["num_output"]
            shapes[layer["name"]] = [(n, math.prod(src)), (n,)]
            out = (n,)
        for top in layer["tops"]:
            blobs[top] = out
    return shapes
