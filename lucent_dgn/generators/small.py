"""A small DeePSiM-style generator (and its training discriminator) for low-resolution images.

:class:`SmallGenerator` inverts one layer of a classifier: it maps that layer's activation
(the *code*) back to an image. Layout (``s = image_size // 4``)::

    code (N, *code_shape) -> flatten -> fc1 (hidden) -> fc2 (width * s * s) -> reshape (width, s, s)
    -> up1: upconv 4x4 stride 2 (width) -> conv1 3x3 (width) -> up2: upconv 4x4 stride 2 (width / 2)
    -> conv2 3x3 (channels) -> sigmoid  =>  image (N, channels, image_size, image_size) in (0, 1)

Every hidden layer is followed by LeakyReLU(0.3), as in DeePSiM. The sigmoid output (default,
``output="sigmoid"``) keeps images in [0, 1] without a clamp; ``output="linear"`` gives the raw values.

The generator carries per-unit statistics of the inverted layer on the training data
(``code_mean``, ``code_std``, ``code_min``, ``code_max``, ``code_percentiles``) from which
:meth:`SmallGenerator.code_bounds` builds DGN-AM-style box bounds, and a ``meta`` dict (inverted
layer, classifier, input normalisation, training settings).

:func:`fashion_generator` loads the shipped generator for :func:`~lucent_dgn.models.fashion.fashion_classifier`
(layer ``relu3``: the 256-d ``fc1`` after its ReLU).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import torch
from torch import nn

from .._asset_io import ASSETS_DIR, load_asset, register_asset_arch
from ..errors import ConfigError, CorruptWeightsError, ShapeError, describe
from ..spaces import UnitSpace

__all__ = ["PERCENTILE_LEVELS", "SmallGenerator", "CodeDiscriminator", "load_generator", "fashion_generator"]

#: Percentiles stored in ``code_percentiles`` (one row per level).
PERCENTILE_LEVELS: Tuple[float, ...] = (1.0, 5.0, 50.0, 95.0, 99.0)
_SLOPE = 0.3


def _check_geometry(code_shape: Sequence[int], image_size: int, channels: int) -> Tuple[int, ...]:
    shape = tuple(int(d) for d in code_shape)
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(describe("code_shape", "a non-empty tuple of positive sizes", code_shape))
    if int(image_size) < 4 or int(image_size) % 4:
        raise ConfigError(describe("image_size", "a multiple of 4 (>= 4)", image_size))
    if channels not in (1, 3):
        raise ConfigError(describe("channels", "1 (grey) or 3 (RGB)", channels))
    return shape


@register_asset_arch
class SmallGenerator(nn.Module):
    """DeePSiM-style generator: code (N, *code_shape) -> image (N, channels, image_size, image_size).

    Args:
        code_shape: shape of one code (the inverted layer's activation without batch), e.g. ``(256,)``.
        image_size: output side, a multiple of 4. Default 28.
        channels: 1 (grey, default) or 3 (RGB).
        width: channels of the first feature map. Default 64.
        hidden: units of ``fc1``. Default 512.
        output: ``"sigmoid"`` (default, values in (0, 1)) or ``"linear"``.
    """

    def __init__(self, code_shape: Sequence[int] = (256,), image_size: int = 28, channels: int = 1,
                 width: int = 64, hidden: int = 512, output: str = "sigmoid") -> None:
        super().__init__()
        self.code_shape = _check_geometry(code_shape, image_size, channels)
        if output not in ("sigmoid", "linear"):
            raise ConfigError(describe("output", "'sigmoid' or 'linear'", output))
        self.image_size, self.channels, self.width, self.output = int(image_size), channels, int(width), output
        self.output_space = UnitSpace(channels)
        self.meta: Dict = {}
        dim, side = int(torch.Size(self.code_shape).numel()), self.image_size // 4
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, self.width * side * side)
        self.up1 = nn.ConvTranspose2d(self.width, self.width, 4, stride=2, padding=1)
        self.conv1 = nn.Conv2d(self.width, self.width, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(self.width, self.width // 2, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(self.width // 2, channels, 3, padding=1)
        self.act = nn.LeakyReLU(_SLOPE)
        for name in ("code_mean", "code_std", "code_min", "code_max"):
            self.register_buffer(name, torch.zeros(self.code_shape))
        self.register_buffer("code_percentiles", torch.zeros((len(PERCENTILE_LEVELS),) + self.code_shape))
        self.register_buffer("code_count", torch.zeros((), dtype=torch.long))

    @property
    def inverted_layer(self) -> str:
        """Name of the classifier layer this generator inverts ('' when unknown)."""
        return str(self.meta.get("layer", ""))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """(N, *code_shape) or (N, prod(code_shape)) -> (N, channels, image_size, image_size)."""
        if code.dim() < 2 or code[0].numel() != self.fc1.in_features:
            raise ShapeError(describe("code", f"a tensor of shape (N, {', '.join(map(str, self.code_shape))})",
                                      tuple(code.shape)))
        side = self.image_size // 4
        x = self.act(self.fc2(self.act(self.fc1(code.reshape(code.shape[0], -1)))))
        x = x.view(-1, self.width, side, side)
        x = self.act(self.conv1(self.act(self.up1(x))))
        x = self.conv2(self.act(self.up2(x)))
        return torch.sigmoid(x) if self.output == "sigmoid" else x

    def set_code_stats(self, stats: Dict[str, torch.Tensor]) -> None:
        """Store statistics: keys ``mean std min max percentiles count`` (see :func:`code_statistics`)."""
        for key in ("mean", "std", "min", "max", "percentiles"):
            getattr(self, f"code_{key}").copy_(torch.as_tensor(stats[key]).reshape(getattr(self, f"code_{key}").shape))
        self.code_count.fill_(int(stats["count"]))

    @property
    def code_stats(self) -> Dict[str, torch.Tensor]:
        """Per-unit statistics of the inverted layer, each of shape ``code_shape``.

        Keys ``mean``, ``std``, ``min``, ``max`` and ``p1 p5 p50 p95 p99`` (percentiles).
        """
        self._require_stats()
        stats = {k: getattr(self, f"code_{k}") for k in ("mean", "std", "min", "max")}
        for level, row in zip(PERCENTILE_LEVELS, self.code_percentiles):
            stats[f"p{level:g}"] = row
        return stats

    def _require_stats(self) -> None:
        if int(self.code_count) == 0:
            raise ConfigError(describe("generator", "a generator with code statistics", "none stored",
                                       "Train it with lucent_dgn.training.train_generator or call set_code_stats()."))

    def code_bounds(self, k: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        """DGN-AM-style box bounds on the code, each of shape ``code_shape``.

        ``upper = mean + k * std``; ``lower = 0`` for units that never went negative on the
        training data (post-ReLU layers; units never active get ``0 .. 0``), else ``mean - k * std``.
        ``k = 1`` gave the most natural Fashion-MNIST images; DGN-AM's "3x" bounds are ``k = 3``.
        """
        if not k >= 0:
            raise ConfigError(describe("k", "a number >= 0", k))
        self._require_stats()
        upper = self.code_mean + k * self.code_std
        lower = torch.where(self.code_min >= 0, torch.zeros_like(upper), self.code_mean - k * self.code_std)
        return lower.clone(), upper.clone()

    def config(self) -> Dict:
        """Constructor arguments (JSON-compatible) that rebuild this architecture."""
        return {"code_shape": list(self.code_shape), "image_size": self.image_size, "channels": self.channels,
                "width": self.width, "hidden": self.fc1.out_features, "output": self.output}


class CodeDiscriminator(nn.Module):
    """Discriminator that sees an image and its code (DeePSiM); returns one logit per item.

    Image path: conv 4x4/2 (width) -> conv 4x4/2 (2·width) -> fc 256; code path: fc 256;
    joint: fc 256 -> fc 1. LeakyReLU(0.3) throughout.
    """

    def __init__(self, code_shape: Sequence[int], image_size: int = 28, channels: int = 1, width: int = 32) -> None:
        super().__init__()
        shape = _check_geometry(code_shape, image_size, channels)
        side = int(image_size) // 4
        act = nn.LeakyReLU(_SLOPE)
        self.image_path = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), act, nn.Conv2d(width, 2 * width, 4, 2, 1), act,
            nn.Flatten(), nn.Linear(2 * width * side * side, 256), act)
        self.code_path = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(shape).numel()), 256), act)
        self.joint = nn.Sequential(nn.Linear(512, 256), act, nn.Linear(256, 1))

    def forward(self, image: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """image (N, C, S, S), code (N, *code_shape) -> logits (N,)."""
        return self.joint(torch.cat([self.image_path(image), self.code_path(code)], dim=1)).squeeze(1)


def load_generator(path: Union[str, Path]) -> SmallGenerator:
    """Load a :class:`SmallGenerator` file (weights, code statistics, ``meta``) in eval mode.

    Raises:
        WeightsNotFoundError: no file at ``path``.
        CorruptWeightsError: the file is unreadable or holds another architecture.
    """
    model = load_asset(path)
    if not isinstance(model, SmallGenerator):
        raise CorruptWeightsError(describe("path", "a SmallGenerator weight file", type(model).__name__))
    return model


def fashion_generator(pretrained: bool = True, path: Union[str, Path, None] = None) -> SmallGenerator:
    """The shipped generator inverting ``fashion_classifier()``'s layer ``relu3`` (256-d), in eval mode.

    Args:
        pretrained: load ``assets/fashion_generator.pt`` (or ``path``); False gives an untrained
            generator without code statistics.
        path: optional generator file written by :func:`lucent_dgn.training.save_generator`.
    """
    if not pretrained:
        return SmallGenerator((256,)).eval()
    return load_generator(path or ASSETS_DIR / "fashion_generator.pt")
