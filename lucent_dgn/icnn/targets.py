"""Targets for feature inversion: features of an image, and features stored in files.

* :func:`features_of` -- the activations of some layers for an image (the targets icnn
  reconstructs from "true" features), computed the way the render loop reads them.
* :func:`load_features` / :func:`save_features` -- features kept on disk (e.g. decoded from brain
  activity): a ``.npz`` file, a folder of ``<layer>.npy`` files, or a mapping of arrays or
  ``.npy`` paths.
* :func:`read_image` -- an image file as an RGB uint8 array, optionally resized.

Images come in two kinds, told apart by type:

* a ``torch.Tensor`` (N, C, H, W) or (C, H, W) is a **model input**, in the model's input space,
  exactly what ``model(x)`` takes and :attr:`RenderResult.model_input` holds;
* a numpy array, PIL image or file path is a **picture**: RGB (H, W, 3) / (N, H, W, 3) or grey
  (H, W) / (H, W, 1) / (N, H, W, 1) on the 0-255 scale (as ``PixelImage``'s ``init`` and
  :attr:`RenderResult.images_255`). It is converted to the model's input space with the same
  clamp-free conversion the render loop uses: ``model.input_space`` when the model declares one,
  else Lucent's convention (RGB on the 0-1 scale, ImageNet-normalised).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .._io import atomic_write_bytes
from ..errors import ConfigError, LayerNotFoundError, ShapeError, describe
from ..layers import LayerRef, resolve_layer
from ..render._setup import resolve_input_space
from ..render.hooks import ActivationCapture, frozen, preserve_pre_activations
from ..spaces import ImageSpace

__all__ = ["features_of", "load_features", "save_features", "read_image", "model_input_space", "picture_to_input"]

PathLike = Union[str, os.PathLike]


def model_input_space(model: nn.Module, input_space: Optional[ImageSpace] = None) -> ImageSpace:
    """The model's input space as :func:`lucent_dgn.render` resolves it (with ``preprocess=True``
    and no space declared on a parameterization): ``input_space`` if given, else
    ``model.input_space``, else Lucent's convention (:class:`~lucent_dgn.spaces.TorchvisionSpace`:
    RGB 0-1, ImageNet-normalised)."""
    return resolve_input_space(model, None, input_space, True)


def read_image(path: PathLike, size: Union[int, Sequence[int], None] = None) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); resized (bicubic, as icnn's scripts) to ``size``
    (an int for a square, or (H, W)) when given.

    Raises:
        ConfigError: no such file, or a file PIL cannot read.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(describe("image", "an existing image file", str(p)))
    try:
        with Image.open(p) as img:
            img = img.convert("RGB")
            if size is not None:
                h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
                img = img.resize((w, h), Image.BICUBIC)
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(describe("image", "an image file PIL can read (PNG, JPEG ...)", str(p), str(err))) from None


def _picture_rgb01(image: Any) -> torch.Tensor:
    """A picture (see the module docstring) as RGB 0-1 (N, 3, H, W) float32."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    elif not isinstance(image, np.ndarray) and hasattr(image, "convert"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ConfigError(describe("image", "a picture of real numbers on the 0-255 scale", f"dtype {arr.dtype}",
                                   raw=True))
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ShapeError(describe("image", "a picture (H, W, 3), (N, H, W, 3), (H, W), (H, W, 1) or (N, H, W, 1) "
                                  "on the 0-255 scale, or a model-input tensor (N, C, H, W)", f"shape {shape}",
                                  raw=True, hint="Grey batches need a channel axis: (N, H, W, 1)."))
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2) / 255.0
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(describe("image", "finite everywhere", "NaN or infinite values", raw=True))
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def picture_to_input(model: nn.Module, image: Any, input_space: Optional[ImageSpace] = None) -> torch.Tensor:
    """A model input (N, C, H, W) on the model's device and dtype from a picture (converted to
    :func:`model_input_space`) or a tensor (taken as a model input already; (C, H, W) gains a
    batch axis)."""
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    if isinstance(image, torch.Tensor):
        x = image.detach()
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or not x.is_floating_point():
            raise ShapeError(describe("image", "a floating model-input tensor (N, C, H, W) or (C, H, W)",
                                      f"{x.dtype} tensor of shape {tuple(x.shape)}", raw=True))
        return x.to(device, dtype)
    rgb = _picture_rgb01(image).to(device, dtype)
    return model_input_space(model, input_space).from_rgb01(rgb)


def _layer_keys(model: nn.Module, layers: Any) -> Dict[str, str]:
    """Key (as the user names it) -> dotted path, in the given order."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ConfigError(describe("layers", "a non-empty list of layer names", layers))
    out: Dict[str, str] = {}
    for layer in layers:
        name = resolve_layer(model, layer, arg="layers")[0]
        key = layer if isinstance(layer, str) else name
        out.setdefault(key, name)
    return out


def features_of(model: nn.Module, image: Any, layers: Union[LayerRef, Sequence[LayerRef]], *,
                input_space: Optional[ImageSpace] = None) -> Dict[str, torch.Tensor]:
    """The activations of ``layers`` for ``image``: targets for :func:`lucent_dgn.feature_match`.

    Values are what the render loop's objectives read: the layers' raw outputs (pre-ReLU where
    an in-place ReLU follows, as :func:`lucent_dgn.render` keeps them; a module called several
    times per forward gives its last call's output), with the model in eval mode and frozen. The
    model is left exactly as it was (mode, ``requires_grad``, ``.grad``, hooks, in-place flags).

    Args:
        model: the network.
        image: a model-input tensor (N, C, H, W) / (C, H, W), or a picture (numpy array, PIL image
            or file path; RGB or grey on the 0-255 scale) converted to the model's input space
            (see the module docstring).
        layers: one layer reference or a list (dotted paths, Lucent underscore names, modules).
        input_space: the model's input space for pictures, as :func:`lucent_dgn.render`'s
            ``input_space`` (default: ``model.input_space``, else ImageNet-normalised RGB).

    Returns:
        dict: each name as given (a module's dotted path) -> detached tensor (N, *feature_shape)
        on the model's device, one row per image.

    Raises:
        LayerNotFoundError: an unknown layer (with close names), or one forward() never calls.
        ShapeError / ConfigError: an image of a shape or type described above it is not.
    """
    keys = _layer_keys(model, layers)
    x = picture_to_input(model, image, input_space)
    names = list(dict.fromkeys(keys.values()))
    with torch.no_grad(), frozen(model), preserve_pre_activations(model), \
            ActivationCapture(model, names, stop_early=False) as cap:
        cap.run(x)
        feats = dict(cap.features)
    missing = [k for k, n in keys.items() if n not in feats]
    if missing:
        raise LayerNotFoundError(describe("layers", "layers that run in the model's forward pass", missing[0],
                                          "The module exists but forward() does not call it."))
    return {k: feats[n].detach().clone() for k, n in keys.items()}


def _as_array(key: str, value: Any) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if not p.is_file():
            raise ConfigError(describe(f"features[{key!r}]", "an array or an existing .npy file", str(p)))
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ConfigError(describe(f"features[{key!r}]", "a readable .npy file", str(p), str(err))) from None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def load_features(source: Union[PathLike, Mapping[str, Any]], layers: Optional[Sequence[str]] = None
                  ) -> Dict[str, np.ndarray]:
    """Features from disk or memory, keyed by layer name.

    Args:
        source: a ``.npz`` file (one array per layer, as :func:`save_features` writes), a folder
            of ``<layer>.npy`` files, or a mapping layer -> array / tensor / ``.npy`` path.
        layers: keep only these layers (each must be present); default all.

    Returns:
        dict layer -> numpy array (as stored; validated by :func:`lucent_dgn.feature_match`).

    Raises:
        ConfigError: a missing or unreadable file, an empty source, or a requested layer missing.
    """
    if isinstance(source, Mapping):
        out = {str(k): _as_array(str(k), v) for k, v in source.items()}
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            out = {f.stem: _as_array(f.stem, f) for f in sorted(p.glob("*.npy"))}
        elif p.is_file() and p.suffix == ".npz":
            try:
                with np.load(p, allow_pickle=False) as data:
                    out = {k: data[k] for k in data.files}
            except (ValueError, OSError) as err:
                raise ConfigError(describe("source", "a readable .npz file", str(p), str(err))) from None
        else:
            raise ConfigError(describe("source", "a .npz file, a folder of <layer>.npy files or a mapping", str(p)))
    else:
        raise ConfigError(describe("source", "a .npz file, a folder of <layer>.npy files or a mapping",
                                   type(source).__name__))
    if not out:
        raise ConfigError(describe("source", "features of at least one layer", str(source)))
    if layers is not None:
        missing = [layer for layer in layers if layer not in out]
        if missing:
            raise ConfigError(describe("layers", f"layers present in the source ({', '.join(map(repr, out))})",
                                       ", ".join(map(repr, missing)), raw=True))
        out = {layer: out[layer] for layer in layers}
    return out


def save_features(path: PathLike, features: Mapping[str, Any]) -> Path:
    """Write features (layer -> array or tensor) to a ``.npz`` file, atomically; returns the path."""
    p = Path(path)
    if p.suffix != ".npz":
        raise ConfigError(describe("path", "a file name ending in .npz", str(p)))
    arrays = {str(k): _as_array(str(k), v) for k, v in features.items()}
    if not arrays:
        raise ConfigError(describe("features", "features of at least one layer", "an empty mapping", raw=True))
    return atomic_write_bytes(p, lambda fh: np.savez(fh, **arrays))
