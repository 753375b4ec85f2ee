"""Read and write Caffe ``.caffemodel`` files without Caffe, and convert them to PyTorch.

A ``.caffemodel`` is a binary protocol buffer of Caffe's ``NetParameter``; the wire format and the
``caffe.proto`` field numbers are in :mod:`lucent_dgn._protobuf`. Both the current
``layer`` format and the legacy V1/V0 ``layers`` format are read; blobs keep their Caffe shapes.

This module knows no architecture. An architecture describes its Caffe names with a
:class:`CaffeLayout` where it is defined (``models/alexnet.py``, ``models/vgg.py``,
``generators/deepsim.py``); the ``convert-caffemodel`` command (:mod:`lucent_dgn.convert`) lists them.

Example::

    model = read_caffemodel("det1.caffemodel")
    state = caffemodel_to_state_dict(model, {"conv1": "conv1", "PReLU1": "prelu1"}, target=net)
    net.load_state_dict(state, strict=False)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ._io import PathLike, atomic_write_bytes
from .errors import ConfigError, CorruptWeightsError, WeightsNotFoundError, describe
from . import _protobuf as pb

__all__ = ["CaffeLayer", "CaffeModel", "CaffeLayout", "read_caffemodel", "write_caffemodel",
           "caffemodel_to_state_dict"]

log = logging.getLogger(__name__)


@dataclass
class CaffeLayer:
    """One layer of a Caffe net.

    Attributes:
        name: layer name, e.g. ``"conv1"``.
        type: layer type string, e.g. ``"Convolution"`` (V1/V0 enums are translated).
        blobs: parameter arrays, float32 with their Caffe shapes (weights first, then bias).
        bottoms: input blob names.
        tops: output blob names.
    """

    name: str
    type: str
    blobs: List[np.ndarray] = field(default_factory=list)
    bottoms: List[str] = field(default_factory=list)
    tops: List[str] = field(default_factory=list)


@dataclass
class CaffeModel:
    """A decoded ``NetParameter``: ``name``, ``layers`` in file order, and the ``path`` read."""

    name: str
    layers: List[CaffeLayer]
    path: Optional[Path] = None

    def layer(self, name: str) -> CaffeLayer:
        """The layer called ``name`` (the first one with blobs if the name repeats).

        Raises:
            CorruptWeightsError: the file has no such layer.
        """
        found = [layer for layer in self.layers if layer.name == name]
        if not found:
            have = ", ".join(layer.name for layer in self.layers if layer.blobs)
            raise CorruptWeightsError(describe(
                "name", f"a layer of {self.path or 'the caffemodel'}", name, f"Layers with weights: {have}."))
        return next((layer for layer in found if layer.blobs), found[0])


@dataclass(frozen=True)
class CaffeLayout:
    """How an architecture's parameters are named in Caffe (defined beside the architecture).

    Attributes:
        name: the name ``convert-caffemodel --arch`` takes, e.g. ``"bvlc_alexnet"``, ``"vgg19"``.
        mapping: Caffe layer name -> module prefix, e.g. ``{"conv3_1": "conv3_1"}``.
        build: builds the architecture (weights unused: conversion checks the state dict's keys and
            shapes against it, so it may be built on the ``meta`` device).
    """

    name: str
    mapping: Mapping[str, str]
    build: Callable[[], nn.Module]


# ------------------------------------------------------------------------------------ reading/writing
def read_caffemodel(path: PathLike) -> CaffeModel:
    """Decode a binary ``.caffemodel`` file (new ``layer`` or legacy V1/V0 ``layers`` format).

    The file is read once into memory; float blobs are decoded with ``np.frombuffer``.

    Args:
        path: file to read.

    Returns:
        :class:`CaffeModel`, every layer in file order with float32 blobs in their Caffe shapes.

    Raises:
        WeightsNotFoundError: ``path`` does not exist.
        CorruptWeightsError: not a caffemodel, truncated or malformed (the message names the byte
            offset and what was expected there).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(describe("path", "an existing .caffemodel file", str(path),
                                            "Check the path, or obtain the file first."))
    buf = path.read_bytes()
    rule = "a binary Caffe .caffemodel (NetParameter)"
    try:
        name, layers = pb.decode_net(buf)
    except pb.WireError as err:
        got = f"malformed data at byte {err.offset} of {len(buf)}: {err.problem}"
        hint = pb.format_hint(buf[:64])
        raise CorruptWeightsError(describe(str(path), rule, got, hint, raw=True)) from None
    if not layers:
        raise CorruptWeightsError(describe(str(path), rule, "a file with no layers",
                                           pb.format_hint(buf[:64]), raw=True))
    log.info("read %s: %d layers", path, len(layers))
    return CaffeModel(name, [CaffeLayer(d.get("name", ""), d.get("type", ""), d.get("blobs", []),
                                        d.get("bottoms", []), d.get("tops", [])) for d in layers], path)


def write_caffemodel(path: PathLike, layers: Iterable[CaffeLayer], *, name: str = "") -> Path:
    """Write ``layers`` atomically as a binary ``.caffemodel`` in Caffe's current format.

    Each layer is a ``NetParameter.layer`` (field 100) entry; each blob a ``BlobProto`` with a
    ``BlobShape`` and packed float data, as Caffe itself writes them.

    Returns:
        ``Path(path)``.
    """
    body = pb.string_field(1, name) if name else b""
    body += b"".join(pb.len_field(100, pb.encode_layer(layer.name, layer.type, layer.blobs, layer.bottoms,
                                                       layer.tops)) for layer in layers)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, lambda handle: handle.write(body))


# -------------------------------------------------------------------------------------- conversion
def _layer_arrays(layer: CaffeLayer) -> Dict[str, np.ndarray]:
    """Map a layer's blobs (at most 2) to PyTorch parameter names (suffixes after the prefix)."""
    weight = layer.blobs[0]
    if layer.type == "InnerProduct" and weight.ndim > 2 and all(d == 1 for d in weight.shape[:-2]):
        weight = weight.reshape(weight.shape[-2:])  # legacy 4-D blob (1, 1, out, in) -> (out, in)
    elif layer.type in ("PReLU", "Scale"):
        weight = weight.ravel()  # (C,), or (1,) for a channel-shared PReLU
    out = {"weight": weight}
    if len(layer.blobs) == 2:
        out["bias"] = layer.blobs[1].ravel()  # legacy (1, 1, 1, out) -> (out,)
    return out


def _fit(array: np.ndarray, expected: Sequence[int]) -> Optional[np.ndarray]:
    """``array`` reshaped to ``expected`` if only size-1 axes differ, or a conv-as-FC weight
    ``(out, C, H, W)`` meets a Linear ``(out, C*H*W)`` (Caffe flattens C, H, W as torch does)."""
    expected = tuple(expected)
    if array.shape == expected:
        return array
    squeeze = lambda shape: tuple(d for d in shape if d != 1)  # noqa: E731
    same_rows = len(expected) == 2 and array.ndim > 2 and array.shape[0] == expected[0]
    if array.size == math.prod(expected) and (squeeze(array.shape) == squeeze(expected) or same_rows):
        return array.reshape(expected)
    return None


def caffemodel_to_state_dict(
    model_or_path: Union[CaffeModel, PathLike],
    mapping: Optional[Mapping[str, str]] = None,
    *,
    target: Union[nn.Module, Mapping[str, torch.Tensor], None] = None,
) -> Dict[str, torch.Tensor]:
    """Convert Caffe blobs to a PyTorch state dict.

    Blob 0 becomes ``<prefix>.weight`` and blob 1 ``<prefix>.bias``. Layouts: InnerProduct
    ``(out, in)`` (legacy ``(1, 1, out, in)`` reshaped); Convolution ``(out, in/group, kh, kw)``;
    Deconvolution ``(in, out/group, kh, kw)``, which is ``ConvTranspose2d``'s layout, unchanged;
    PReLU and Scale ``(C,)``. Tensors share memory with the model's arrays.

    Args:
        model_or_path: a :class:`CaffeModel` or a ``.caffemodel`` path.
        mapping: Caffe layer name -> PyTorch module prefix, e.g. ``{"fc6": "classifier.1"}``.
            Default: every layer with blobs under its own name.
        target: optional module (or state dict) to check against: every produced key must exist
            with a compatible shape, and every target entry under a mapped prefix must be produced.

    Raises:
        CorruptWeightsError: a mapped layer is missing or has no blobs, or shapes do not fit;
            the message lists every problem.
        ConfigError: two layers map to the same key.
    """
    model = model_or_path if isinstance(model_or_path, CaffeModel) else read_caffemodel(model_or_path)
    if mapping is None:
        mapping = {layer.name: layer.name for layer in model.layers if layer.blobs}
    expected = None
    if target is not None:
        expected = {k: tuple(v.shape) for k, v in (
            target.state_dict() if isinstance(target, nn.Module) else target).items()}
    names = {layer.name for layer in model.layers}
    problems: List[str] = []
    out: Dict[str, torch.Tensor] = {}
    for caffe_name, prefix in mapping.items():
        layer = model.layer(caffe_name) if caffe_name in names else None
        if layer is None or not layer.blobs:
            what = "layer" if layer is None else "weights for layer"
            problems.append(f"caffemodel lacks {what} '{caffe_name}' needed for '{prefix}'")
            continue
        if len(layer.blobs) > 2:
            problems.append(f"layer '{caffe_name}' ({layer.type}) has {len(layer.blobs)} blobs; only "
                            "weight and bias blobs can be converted")
            continue
        for suffix, array in _layer_arrays(layer).items():
            key = f"{prefix}.{suffix}" if prefix else suffix
            if key in out:
                raise ConfigError(describe("mapping", "one Caffe layer per parameter", key,
                                           f"Two layers map to '{key}'."))
            if expected is not None and key not in expected:
                problems.append(f"layer '{caffe_name}' gives '{key}', which the target lacks")
                continue
            fitted = array if expected is None else _fit(array, expected[key])
            if fitted is None:
                problems.append(f"layer '{caffe_name}' blob for '{key}' has shape {array.shape} "
                                f"but the target expects {expected[key]}")
                continue
            out[key] = torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.float32))
    for key in expected or ():
        owner = next((p for p in mapping.values() if not p or key.startswith(f"{p}.")), None)
        if owner is not None and key not in out and not any(f"'{key}'" in p for p in problems):
            problems.append(f"target entry '{key}' (under '{owner}') gets no Caffe blob")
    if problems:
        raise CorruptWeightsError(describe(str(model.path or "caffemodel"), "a match for the mapping",
                                           "; ".join(problems), raw=True))
    return out
