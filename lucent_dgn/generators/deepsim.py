"""DeePSiM generator networks built from spec tables, and their weight loading.

:func:`build_generator` turns any :class:`~lucent_dgn.generators.specs.GeneratorSpec` into a
:class:`DeePSiMGenerator`; :func:`deepsim_generator` builds one of the four published variants and
optionally loads weights through :func:`lucent_dgn.weights.resolve_weights`.

Weight formats read by :func:`load_generator_weights`:

* our own state dicts and Lucent's ``upconvGAN`` files: ``<layer>.weight`` / ``<layer>.bias``,
  also with the ``G.`` prefix of ``upconvGAN.state_dict()``, the ``<layer>.1.weight`` keys that
  Lucent's offline loader rewrites, or plain ``nn.Sequential`` indices (``G.0.weight``,
  ``0.weight``, counting activations and the reshape as Lucent's ``G`` does);
* bdpy's ``AlexNetGenerator`` / ``AlexNetPool5Generator`` state dicts: the named keys plus the
  duplicates under ``defc.<i>`` / ``rconv.<i>`` / ``deconv.<i>``;
* Caffe ``.caffemodel`` files (Caffe layer names equal ours).
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..errors import ConfigError, CorruptWeightsError, ShapeError, describe
from ..spaces import CaffeSpace
from ..weights import WeightsEntry, load_into, load_weights_file, register_weights, resolve_weights
from ..caffemodel import CaffeLayout
from .specs import DEEPSIM_SPECS, GeneratorSpec, LayerSpec, deepsim_spec

__all__ = [
    "Reshape",
    "DeePSiMGenerator",
    "build_generator",
    "deepsim_generator",
    "caffe_layer_mapping",
    "CAFFE_LAYOUTS",
    "normalize_generator_state_dict",
    "load_generator_weights",
]

WeightsArg = Union[None, str, "Path", Mapping[str, torch.Tensor]]

_LUCENT_ONEDRIVE = "https://onedrive.live.com/download?cid=9CFFF6BCB39F6829&resid=9CFFF6BCB39F6829%21"
_LUCENT_KEYS = {"pool5": ("45337", "AFaUAgeoIg0WtmA"), "fc6": ("45339", "AC2rQMt7Obr0Ba4"),
                "fc7": ("45338", "AJ0R-daUAVYjQIw"), "fc8": ("45340", "AKIfNk7s5MGrRkU")}
_FREIBURG_ZIP = ("https://lmb.informatik.uni-freiburg.de/resources/binaries/"
                 "arxiv2016_alexnet_inversion_with_gans/release_deepsim_v0.zip")


def _weights_entry(variant: str) -> WeightsEntry:
    """Registry entry ``deepsim-<variant>``: Lucent's PyTorch copy (URL as in Lucent's gan.py)."""
    resid, key = _LUCENT_KEYS[variant]
    return WeightsEntry(
        name=f"deepsim-{variant}", filename=f"upconvGAN_{variant}.pt",
        url=f"{_LUCENT_ONEDRIVE}{resid}&authkey={key}",
        alt_filenames=(f"deepsim_{variant}.pt", f"deepsim_{variant}.caffemodel"),
        extra_dirs=("{torch_home}/checkpoints",),  # where Lucent's upconvGAN saves it
        hint=(f"The URL is Lucent's PyTorch copy (no checksum is known, so it is not verified). "
              f"The original Caffe weights are {variant}/generator.caffemodel inside {_FREIBURG_ZIP}; "
              f"pass that file as weights=..., or convert it with `lucent-dgn convert-caffemodel`."))


for _variant in ("fc6", "fc7", "fc8", "pool5"):
    register_weights(_weights_entry(_variant))


class Reshape(nn.Module):
    """Reshape (N, ...) to (N, *shape)."""

    def __init__(self, shape: Tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _make_layer(layer: LayerSpec) -> nn.Module:
    if layer.kind == "linear":
        return nn.Linear(layer.n_in, layer.n_out)
    if layer.kind == "reshape":
        return Reshape(layer.shape)
    cls = nn.Conv2d if layer.kind == "conv" else nn.ConvTranspose2d
    return cls(layer.n_in, layer.n_out, kernel_size=layer.kernel, stride=layer.stride, padding=layer.padding)


class DeePSiMGenerator(nn.Module):
    """A generator: code (N, *code_shape) -> image (N, 3, S, S) in Caffe space (BGR, mean-subtracted,
    0-255 scale, unclamped).

    Submodules are named after the Caffe layers (``defc7``, ..., ``deconv0``), each followed by
    a non-in-place ``relu_<name>`` LeakyReLU except the last, so parameters are
    ``<name>.weight`` / ``<name>.bias``. Build instances with :func:`build_generator`.

    Attributes:
        spec: the :class:`GeneratorSpec` it was built from.
        variant: ``spec.variant`` (``"fc6"`` ...).
        code_shape: code shape without batch, e.g. ``(4096,)``.
        image_size: output side (256 for DeePSiM).
        output_space: :class:`~lucent_dgn.spaces.CaffeSpace` instance describing the output.
    """

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.variant = spec.variant
        self.code_shape = tuple(spec.code_shape)
        self.image_size = spec.image_size
        self.output_space = CaffeSpace()
        for layer in spec.layers:
            self.add_module(layer.name, _make_layer(layer))
            if layer.activation == "leaky_relu":
                self.add_module(f"relu_{layer.name}", nn.LeakyReLU(spec.leaky_slope, inplace=False))

    @property
    def code_size(self) -> int:
        """Number of elements of one code."""
        return math.prod(self.code_shape)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """Args: code (N, *code_shape), or (N, code_size) flattened. Returns (N, 3, S, S)."""
        if tuple(code.shape[1:]) != self.code_shape:
            if code.dim() == 2 and code.shape[1] == self.code_size:
                code = code.reshape(code.shape[0], *self.code_shape)
            else:
                raise ShapeError(describe("code", f"of shape (N, {', '.join(map(str, self.code_shape))})",
                                          tuple(code.shape), f"The {self.variant} generator takes "
                                          f"{self.code_size}-element codes."))
        x = code
        for module in self._modules.values():
            x = module(x)
        return x

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, code_shape={self.code_shape}, image_size={self.image_size}"


def build_generator(spec: GeneratorSpec) -> DeePSiMGenerator:
    """Build the generator described by ``spec`` (randomly initialised, train mode)."""
    if not isinstance(spec, GeneratorSpec):
        raise ConfigError(describe("spec", "a GeneratorSpec", spec, "Use deepsim_spec('fc6') for a DeePSiM one."))
    return DeePSiMGenerator(spec)


def caffe_layer_mapping(spec: GeneratorSpec) -> Dict[str, str]:
    """Caffe layer name -> module name for every layer with parameters (identity for DeePSiM)."""
    return {layer.name: layer.name for layer in spec.param_layers()}


CAFFE_LAYOUTS: Tuple[CaffeLayout, ...] = tuple(
    CaffeLayout(f"deepsim-{variant}", caffe_layer_mapping(spec), functools.partial(build_generator, spec))
    for variant, spec in DEEPSIM_SPECS.items())
"""Caffe names of the DeePSiM generators, for ``convert-caffemodel --arch deepsim-fc6`` (and fc7, fc8, pool5)."""


def _aliases(spec: GeneratorSpec) -> Dict[str, str]:
    """Other key prefixes that name a layer: Lucent's ``G`` indices and bdpy's Sequentials."""
    aliases: Dict[str, str] = {}
    index = 0
    for layer in spec.layers:  # Lucent's G: every module, activations and reshape included
        if layer.has_params:
            aliases[str(index)] = layer.name
        index += 1 + (layer.activation == "leaky_relu")
    group_index = {"linear": 0, "conv": 0, "deconv": 0}
    for layer in spec.param_layers():  # bdpy: defc.<i> / rconv.<i> / deconv.<i>
        group = {"linear": "defc", "conv": "rconv", "deconv": "deconv"}[layer.kind]
        aliases[f"{group}.{group_index[layer.kind]}"] = layer.name
        group_index[layer.kind] += 1 + (layer.activation == "leaky_relu")
    return aliases


def _target_prefix(prefix: str, names: Tuple[str, ...], aliases: Mapping[str, str]) -> Optional[str]:
    for strip in ("module.", "G."):
        if prefix.startswith(strip) and prefix[len(strip):]:
            prefix = prefix[len(strip):]
    if prefix in names:
        return prefix
    match = re.fullmatch(r"(.+)\.\d+", prefix)  # Lucent's older "<layer>.1.weight" keys
    if match and match.group(1) in names:
        return match.group(1)
    return aliases.get(prefix)


def normalize_generator_state_dict(state: Mapping[str, torch.Tensor], spec: GeneratorSpec,
                                   source: str = "state dict") -> Dict[str, torch.Tensor]:
    """Rename a Lucent, bdpy or own-format state dict to ``<layer>.weight`` / ``<layer>.bias`` keys.

    Exact layer names win over aliases (bdpy files hold both). Keys naming no layer of ``spec``
    are an error.

    Raises:
        CorruptWeightsError: unknown keys, or two keys mapped to one name with different values.
    """
    names = tuple(layer.name for layer in spec.param_layers())
    aliases = _aliases(spec)
    out: Dict[str, torch.Tensor] = {}
    unknown = []
    ranked = sorted(state.items(), key=lambda kv: kv[0].rsplit(".", 1)[0] not in names)
    for key, value in ranked:
        prefix, _, leaf = key.rpartition(".")
        target = _target_prefix(prefix, names, aliases) if prefix else None
        if target is None or leaf not in ("weight", "bias"):
            unknown.append(key)
            continue
        new_key = f"{target}.{leaf}"
        if new_key in out:
            if out[new_key].shape != value.shape or not torch.equal(out[new_key], value):
                raise CorruptWeightsError(describe("weights", "one tensor per layer parameter", source,
                                                   f"{key!r} and another key both give {new_key!r} with "
                                                   "different values.", raw=True))
            continue
        out[new_key] = value
    if unknown:
        raise CorruptWeightsError(describe("weights", f"a DeePSiM {spec.variant} generator state dict", source,
                                           f"Keys naming no generator layer: {unknown[:6]}. Known layers: "
                                           f"{list(names)}.", raw=True))
    return out


def load_generator_weights(generator: DeePSiMGenerator,
                           weights: Union[str, Path, Mapping[str, torch.Tensor]]) -> DeePSiMGenerator:
    """Load a weights file (``.pt``/``.pth`` state dict or ``.caffemodel``) or a state dict.

    Returns:
        ``generator``, with the weights loaded (mode and ``requires_grad`` unchanged).
    """
    if isinstance(weights, Mapping):
        state, source = dict(weights), "state dict"
    else:
        source = str(weights)
        state = load_weights_file(weights, caffe_mapping=caffe_layer_mapping(generator.spec))
    state = normalize_generator_state_dict(state, generator.spec, source)
    load_into(generator, state, source)
    return generator


def deepsim_generator(variant: str = "fc6", weights: WeightsArg = None, cache_dir: Optional[str] = None,
                      download: bool = False, progress: bool = True) -> DeePSiMGenerator:
    """A DeePSiM generator, optionally with pretrained weights.

    Args:
        variant: ``"fc6"`` (default), ``"fc7"``, ``"fc8"`` or ``"pool5"``.
        weights: None (random init), ``"default"`` (the registry entry
            ``deepsim-<variant>`` found by :func:`~lucent_dgn.weights.resolve_weights`), a file
            path (state dict or ``.caffemodel``) or a state dict.
        cache_dir: cache directory for ``"default"``; default ``$LUCENT_DGN_CACHE`` or
            ``~/.cache/lucent_dgn``.
        download: allow downloading the ``"default"`` file. Default False (offline-safe).
        progress: tqdm bar while downloading.

    Returns:
        The generator in eval mode; with weights, its parameters have ``requires_grad`` off.
    """
    generator = build_generator(deepsim_spec(variant)).eval()
    if weights is None:
        return generator
    if isinstance(weights, str) and weights == "default":
        weights = resolve_weights(f"deepsim-{variant}", cache_dir=cache_dir, download=download, progress=progress)
    load_generator_weights(generator, weights)
    return generator.eval().requires_grad_(False)
