"""Shared tiny fixtures (models small enough for a 1-thread CPU run)."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn


@pytest.fixture
def hand_conv() -> nn.Sequential:
    """Conv2d(1, 2, 3): channel 0 all weights +1, bias 0; channel 1 all weights -1, bias 0.5.

    On :func:`hand_input` (pixel (r, c) = 5 r + c), output unit (y, x) of channel 0 is
    9 * (5 (y + 1) + (x + 1)) and of channel 1 is 0.5 minus that; the output is (2, 3, 3).
    """
    conv = nn.Conv2d(1, 2, 3)
    with torch.no_grad():
        conv.weight[0].fill_(1.0)
        conv.weight[1].fill_(-1.0)
        conv.bias.copy_(torch.tensor([0.0, 0.5]))
    return nn.Sequential(conv).eval()


@pytest.fixture
def hand_input() -> torch.Tensor:
    """(1, 1, 5, 5) float32 with pixel (r, c) = 5 r + c."""
    return torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)


@pytest.fixture
def tiny_cnn() -> nn.Sequential:
    """Seeded random CNN, torchvision style: features = conv, ReLU(inplace), conv; then head.

    A 3x16x16 input gives features.0 (4, 14, 14), features.2 (6, 12, 12), head (5,).
    """
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 6, 3))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    return nn.Sequential(OrderedDict(features=features, head=head)).eval()
