"""Tiny Caffe-space networks shared by the preset, compat and CLI tests."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from lucent_dgn.spaces import CaffeSpace


class TinyCaffeNet(nn.Sequential):
    """3x32x32 Caffe net-space input -> conv1 (4, 14, 14) -> ... -> fc8 (10,)."""

    input_size = 32

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        super().__init__(OrderedDict(
            conv1=nn.Conv2d(3, 4, 5, stride=2), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            flat=nn.Flatten(), fc8=nn.Linear(4 * 7 * 7, 10)))
        self.input_space = CaffeSpace()
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.mul_(0.02)


class TinyGenerator(nn.Module):
    """Code (16,) -> (3, 40, 40) BGR mean-subtracted image (DeePSiM-like, much smaller)."""

    code_shape = (16,)
    output_space = CaffeSpace()

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(16, 8 * 10 * 10)
        self.up = nn.Sequential(nn.LeakyReLU(0.3), nn.ConvTranspose2d(8, 8, 4, 2, 1), nn.LeakyReLU(0.3),
                                nn.ConvTranspose2d(8, 3, 4, 2, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 30.0 * self.up(self.fc(z).view(-1, 8, 10, 10))
