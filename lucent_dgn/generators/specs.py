"""Spec tables of the DeePSiM generators (Dosovitskiy & Brox 2016, ``release_deepsim_v0``).

Each generator is data: a :class:`GeneratorSpec` holding a tuple of :class:`LayerSpec` rows, one
per Caffe layer, with Caffe's layer names (``defc7`` ... ``deconv0``; ``Rconv6`` ... for pool5).
:func:`lucent_dgn.generators.deepsim.build_generator` turns any spec into a module.

Variants (code shape -> image (3, 256, 256), Caffe space: BGR, mean-subtracted, 0-255):

========  =============  ===============  ==========================================
variant   code shape     parameters       layers before the shared deconv stack
========  =============  ===============  ==========================================
fc6       (4096,)        56,097,891       defc7, defc6, defc5 (Linear), reshape 256x4x4
fc7       (4096,)        56,097,891       same as fc6 (different trained weights)
fc8       (1000,)        43,416,675       defc7 takes 1000 inputs
pool5     (256, 6, 6)    12,702,307       Rconv6, Rconv7 (3x3 p1), Rconv8 (3x3 p0) -> 512x4x4
========  =============  ===============  ==========================================

Every layer but the last is followed by LeakyReLU with negative slope 0.3 (Caffe ``ReLU`` with
``negative_slope: 0.3``). Caffe ``Deconvolution`` layers, including the 3x3 ``conv*_1`` ones, are
``ConvTranspose2d`` (same weight layout (in, out, kH, kW)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from ..errors import ConfigError, describe

__all__ = [
    "LAYER_KINDS",
    "LayerSpec",
    "GeneratorSpec",
    "DEEPSIM_SPECS",
    "deepsim_spec",
]

LAYER_KINDS = ("linear", "conv", "deconv", "reshape")


@dataclass(frozen=True)
class LayerSpec:
    """One generator layer.

    Attributes:
        name: Caffe layer name; parameters become ``<name>.weight`` / ``<name>.bias``.
        kind: ``"linear"``, ``"conv"`` (Conv2d), ``"deconv"`` (ConvTranspose2d) or ``"reshape"``.
        n_in: input features (linear) or channels (conv/deconv); total size for reshape.
        n_out: output features or channels; for reshape, unused (0).
        kernel: square kernel size (conv/deconv only).
        stride: stride (conv/deconv only). Default 1.
        padding: zero padding (conv/deconv only). Default 0.
        activation: ``"leaky_relu"`` (slope from the generator spec) or ``"none"``.
        shape: target shape without batch, for reshape only, e.g. ``(256, 4, 4)``.
    """

    name: str
    kind: str
    n_in: int
    n_out: int = 0
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    activation: str = "leaky_relu"
    shape: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ConfigError(describe("kind", f"one of {LAYER_KINDS}", self.kind))
        if self.activation not in ("leaky_relu", "none"):
            raise ConfigError(describe("activation", "'leaky_relu' or 'none'", self.activation))

    @property
    def has_params(self) -> bool:
        """True for layers with a weight and a bias (everything but reshape)."""
        return self.kind != "reshape"


@dataclass(frozen=True)
class GeneratorSpec:
    """A whole generator: code shape, layers in order, output size and activation slope.

    Attributes:
        variant: short name, e.g. ``"fc6"``.
        code_shape: shape of one code, without batch, e.g. ``(4096,)`` or ``(256, 6, 6)``.
        layers: the layers in forward order.
        image_size: side of the square output image. Default 256.
        leaky_slope: negative slope of every LeakyReLU. Default 0.3.
    """

    variant: str
    code_shape: Tuple[int, ...]
    layers: Tuple[LayerSpec, ...]
    image_size: int = 256
    leaky_slope: float = 0.3

    def param_layers(self) -> Tuple[LayerSpec, ...]:
        """The layers that carry parameters, in order."""
        return tuple(layer for layer in self.layers if layer.has_params)


def _fc_head(code_size: int) -> Tuple[LayerSpec, ...]:
    """defc7 -> defc6 -> defc5 (Linear, 4096 wide) and the reshape to 256x4x4."""
    return (
        LayerSpec("defc7", "linear", code_size, 4096),
        LayerSpec("defc6", "linear", 4096, 4096),
        LayerSpec("defc5", "linear", 4096, 4096),
        LayerSpec("reshape", "reshape", 4096, activation="none", shape=(256, 4, 4)),
    )


def _pool5_head() -> Tuple[LayerSpec, ...]:
    """Rconv6, Rconv7 (3x3 pad 1) and Rconv8 (3x3 no pad): 256x6x6 -> 512x4x4."""
    return (
        LayerSpec("Rconv6", "conv", 256, 512, kernel=3, padding=1),
        LayerSpec("Rconv7", "conv", 512, 512, kernel=3, padding=1),
        LayerSpec("Rconv8", "conv", 512, 512, kernel=3, padding=0),
    )


def _deconv_stack(in_channels: int) -> Tuple[LayerSpec, ...]:
    """The shared upsampling stack: 4x4 -> 256x256, last layer without activation."""
    up = dict(kernel=4, stride=2, padding=1)
    same = dict(kernel=3, stride=1, padding=1)
    return (
        LayerSpec("deconv5", "deconv", in_channels, 256, **up),
        LayerSpec("conv5_1", "deconv", 256, 512, **same),
        LayerSpec("deconv4", "deconv", 512, 256, **up),
        LayerSpec("conv4_1", "deconv", 256, 256, **same),
        LayerSpec("deconv3", "deconv", 256, 128, **up),
        LayerSpec("conv3_1", "deconv", 128, 128, **same),
        LayerSpec("deconv2", "deconv", 128, 64, **up),
        LayerSpec("deconv1", "deconv", 64, 32, **up),
        LayerSpec("deconv0", "deconv", 32, 3, activation="none", **up),
    )


DEEPSIM_SPECS: Dict[str, GeneratorSpec] = {
    "fc6": GeneratorSpec("fc6", (4096,), _fc_head(4096) + _deconv_stack(256)),
    "fc7": GeneratorSpec("fc7", (4096,), _fc_head(4096) + _deconv_stack(256)),
    "fc8": GeneratorSpec("fc8", (1000,), _fc_head(1000) + _deconv_stack(256)),
    "pool5": GeneratorSpec("pool5", (256, 6, 6), _pool5_head() + _deconv_stack(512)),
}


def deepsim_spec(variant: str) -> GeneratorSpec:
    """The spec of a DeePSiM variant: ``"fc6"``, ``"fc7"``, ``"fc8"`` or ``"pool5"``."""
    if not isinstance(variant, str) or variant not in DEEPSIM_SPECS:
        raise ConfigError(describe("variant", f"one of {sorted(DEEPSIM_SPECS)}", variant))
    return DEEPSIM_SPECS[variant]
