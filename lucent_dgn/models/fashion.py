"""Small Fashion-MNIST classifiers shipped with the package, and the weight-file format they use.

* :class:`FashionCNN` -- the default target network: conv3x3(32)-ReLU-pool-conv3x3(64)-ReLU-pool-
  fc(256)-ReLU-dropout-fc(10); about 0.82 M parameters. Layers: ``conv1 relu1 pool1 conv2 relu2
  pool2 flatten fc1 relu3 dropout fc2`` (``fc2`` = logits). ReLUs are not in-place, so hooks on
  ``conv1``, ``conv2``, ``fc1`` see pre-ReLU values.
* :class:`FashionMLP` -- an independent *judge* (different architecture and seed) used to measure
  whether synthesised images look like a class: 784-256-128-10 MLP.

Both take (N, 1, 28, 28) images with values in [0, 1] (``input_space = UnitSpace(1)``) and
standardise inside. :func:`fashion_classifier` / :func:`fashion_judge` load the shipped weights
from :data:`ASSETS_DIR` (``python -m lucent_dgn.training.make_assets`` re-creates them). The file
format (:func:`save_asset`, :func:`load_asset`) is that of :mod:`lucent_dgn._asset_io`, re-exported
here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch import nn

from .._asset_io import ASSETS_DIR, load_asset, register_asset_arch, save_asset
from ..datasets import FASHION_MNIST_CLASSES
from ..errors import CorruptWeightsError, ShapeError, describe
from ..spaces import UnitSpace

__all__ = [
    "ASSETS_DIR",
    "FASHION_MEAN",
    "FASHION_STD",
    "FashionCNN",
    "FashionMLP",
    "fashion_classifier",
    "fashion_judge",
    "save_asset",
    "load_asset",
]

#: Pixel mean and standard deviation of the Fashion-MNIST training images on the 0-1 scale.
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def _class_names(num_classes: int) -> tuple:
    return FASHION_MNIST_CLASSES if num_classes == 10 else tuple(str(i) for i in range(num_classes))


class _Standardise(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ShapeError(describe("input", "a tensor of shape (N, 1, H, W) in [0, 1]", tuple(x.shape)))
        return (x - self.mean) / self.std


@register_asset_arch
class FashionCNN(nn.Module):
    """conv3x3(width)-ReLU-pool-conv3x3(2·width)-ReLU-pool-fc(hidden)-ReLU-dropout-fc(10).

    Args:
        width: channels of ``conv1`` (``conv2`` has twice as many). Default 32.
        hidden: units of ``fc1``. Default 256.
        dropout: dropout probability before ``fc2``. Default 0.5.
        num_classes: outputs of ``fc2``. Default 10.

    Input (N, 1, 28, 28) in [0, 1]; output logits (N, num_classes).
    """

    def __init__(self, width: int = 32, hidden: int = 256, dropout: float = 0.5, num_classes: int = 10) -> None:
        super().__init__()
        self.input_space = UnitSpace(channels=1)
        self.input_size = 28
        self.classes = _class_names(num_classes)
        self.standardise = _Standardise(FASHION_MEAN, FASHION_STD)
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(self.standardise(x))))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.fc2(self.dropout(x))


@register_asset_arch
class FashionMLP(nn.Module):
    """Multi-layer perceptron 784-hidden1-hidden2-10 (the independent judge).

    Layers ``flatten fc1 relu1 dropout fc2 relu2 fc3`` (``fc3`` = logits).
    Input (N, 1, 28, 28) in [0, 1]; output logits (N, num_classes).
    """

    def __init__(self, hidden1: int = 256, hidden2: int = 128, dropout: float = 0.2, num_classes: int = 10) -> None:
        super().__init__()
        self.input_space = UnitSpace(channels=1)
        self.input_size = 28
        self.classes = _class_names(num_classes)
        self.standardise = _Standardise(FASHION_MEAN, FASHION_STD)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, hidden1)
        self.relu1 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden1, hidden2)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu1(self.fc1(self.flatten(self.standardise(x)))))
        return self.fc3(self.relu2(self.fc2(x)))


def _load_shipped(name: str, model_cls: type, pretrained: bool, path: Union[str, Path, None]) -> nn.Module:
    if not pretrained:
        return model_cls().eval()
    model = load_asset(path or ASSETS_DIR / name)
    if not isinstance(model, model_cls):
        raise CorruptWeightsError(describe("path", f"a {model_cls.__name__} weight file", type(model).__name__))
    return model


def fashion_classifier(pretrained: bool = True, path: Union[str, Path, None] = None) -> FashionCNN:
    """The default Fashion-MNIST target network (:class:`FashionCNN`), in eval mode.

    Args:
        pretrained: load the shipped weights (``assets/fashion_classifier.pt``) or another
            ``path``; False gives a randomly initialised network.
        path: optional weight file written by :func:`save_asset`.
    """
    return _load_shipped("fashion_classifier.pt", FashionCNN, pretrained, path)


def fashion_judge(pretrained: bool = True, path: Union[str, Path, None] = None) -> FashionMLP:
    """The independent judge classifier (:class:`FashionMLP`), in eval mode; see :func:`fashion_classifier`."""
    return _load_shipped("fashion_judge.pt", FashionMLP, pretrained, path)
