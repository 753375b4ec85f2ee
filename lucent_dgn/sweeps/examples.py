"""Dataset examples: the natural images that drive each unit most (OpenAI Microscope's "dataset examples").

One streaming, forward-only pass over the images, batch by batch, keeps the top k per unit of
every layer of the sweep. A unit is the one the sweep renders: the centre unit of a channel for
convolutional layers (``unit_masks``' centre, ``(H // 2, W // 2)``), one element for flat layers.
Ties are broken by the lower image index, so the selection is deterministic.

Sources: ``"fashion-mnist"`` (the Fashion-MNIST test set of the Debian package
``dataset-fashion-mnist``) or a folder of images (read a batch at a time, resized to the model's
input size, grey or RGB as the model takes).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, describe

__all__ = ["ImageSource", "image_source", "top_k_examples", "example_records", "example_file", "selected_indices",
           "save_example_images"]

FASHION = "fashion-mnist"


class ImageSource:
    """Images streamed in batches as (B, C, S, S) float tensors on the 0-1 scale.

    Args:
        name: ``"fashion-mnist"`` or a folder.
        size: side S the images are resized to (folders only).
        channels: 1 (grey) or 3 (RGB) (folders only).
    """

    def __init__(self, name: str, size: int, channels: int) -> None:
        from ..datasets import FashionMNIST, _list_images
        self.name, self.size, self.channels = name, int(size), int(channels)
        if name == FASHION:
            self._data = FashionMNIST(train=False)
            self.files: List[Path] = []
            self.count = len(self._data)
        else:
            root = Path(name)
            if not root.is_dir():
                raise ConfigError(describe("examples", f"{FASHION!r} or a folder of images", name))
            self.files = _list_images(root)
            if not self.files:
                raise ConfigError(describe("examples", "a folder containing images", name))
            self._data = None
            self.count = len(self.files)
            self.root = root

    def identity(self) -> Dict[str, Any]:
        """What ``sweep.json`` records of the images (name, count and a hash of names or pixels)."""
        h = hashlib.sha256()
        if self._data is not None:
            h.update(self._data.images.numpy().tobytes())
        else:
            for f in self.files:
                h.update(f"{f.relative_to(self.root).as_posix()}|{f.stat().st_size}\n".encode())
        return {"source": self.name, "count": self.count, "sha256": h.hexdigest()}

    def batches(self, batch_size: int) -> Iterator[Tuple[int, torch.Tensor]]:
        """``(start index, images (B, C, S, S))`` in index order."""
        for start in range(0, self.count, batch_size):
            yield start, self.load(range(start, min(start + batch_size, self.count)))

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices``, (B, C, S, S) in [0, 1]."""
        if self._data is not None:
            return self._data.get_batch(list(indices))[0]
        from PIL import Image
        arrays = []
        for i in indices:
            with Image.open(self.files[i]) as img:
                img = img.convert("L" if self.channels == 1 else "RGB").resize((self.size, self.size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
            arrays.append(arr[None] if self.channels == 1 else arr.transpose(2, 0, 1))
        return torch.from_numpy(np.stack(arrays)).float() / 255.0


def image_source(spec: Any, model: nn.Module) -> ImageSource:
    """An :class:`ImageSource` for a model: its input size and channel count."""
    space = getattr(model, "input_space", None)
    return ImageSource(str(spec), int(getattr(model, "input_size", 227)), int(getattr(space, "channels", 3)))


def _unit_values(feature: torch.Tensor) -> torch.Tensor:
    """(B, C) activations of the units a sweep renders: the centre of each channel, or flat units."""
    if feature.dim() == 2:
        return feature
    return feature[:, :, feature.shape[2] // 2, feature.shape[3] // 2]


def _merge(best_v: np.ndarray, best_i: np.ndarray, v: np.ndarray, i: np.ndarray, k: int):
    """Top k per row of the union, by value (descending) then index (ascending)."""
    vals = np.concatenate([best_v, v], axis=1)
    idx = np.concatenate([best_i, i], axis=1)
    order = np.lexsort((idx, -np.nan_to_num(vals, nan=-np.inf)), axis=-1)[:, :k]
    return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)


@torch.no_grad()
def top_k_examples(model: nn.Module, layers: Sequence[str], source: ImageSource, k: int = 9,
                   batch_size: int = 256, device: Any = "cpu") -> Dict[str, Dict[str, List[List[float]]]]:
    """The k images that drive each unit of each layer most, from one forward-only pass.

    Args:
        model: the network (left as it was: hooks removed, train/eval restored).
        layers: resolved layer names.
        source: the images.
        k: examples per unit (at most the number of images).
        batch_size: images per forward pass.

    Returns:
        ``{layer: {"index": (C, k) image indices, "activation": (C, k) values}}`` as lists,
        best first.
    """
    from ..render.hooks import ActivationCapture, frozen, preserve_pre_activations
    from ..spaces import UnitSpace, convert
    k = min(int(k), source.count)
    best: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    target = getattr(model, "input_space", None)
    with frozen(model), preserve_pre_activations(model), ActivationCapture(model, list(layers)) as capture:
        for start, images in source.batches(batch_size):
            x = images.to(device)
            if target is not None:
                x = convert(x, UnitSpace(x.shape[1]), target)
            capture.run(x)
            for name in layers:
                vals = _unit_values(capture.features[name]).float().cpu().numpy().T  # (C, B)
                idx = np.broadcast_to(np.arange(start, start + vals.shape[1]), vals.shape)
                if name not in best:
                    best[name] = (np.empty((vals.shape[0], 0), np.float32), np.empty((vals.shape[0], 0), np.int64))
                best[name] = _merge(*best[name], vals, idx, k)
    return {name: {"index": i.tolist(), "activation": [[float(a) for a in row] for row in v]}
            for name, (v, i) in best.items()}


def example_records(topk: Mapping[str, Any], layer: str, unit: int) -> List[Dict[str, Any]]:
    """The ``examples`` column of a unit: ``[{"index", "activation", "file"}, ...]`` best first."""
    entry = topk[layer]
    return [{"index": int(i), "activation": float(a), "file": example_file(int(i))}
            for i, a in zip(entry["index"][unit], entry["activation"][unit])]


def example_file(index: int) -> str:
    """Relative path of a dataset example's PNG."""
    return f"examples/images/{index:06d}.png"


def selected_indices(topk: Mapping[str, Any], units: Mapping[str, Sequence[int]]) -> List[int]:
    """Every image index used by the units of the sweep, sorted."""
    out = set()
    for layer, us in units.items():
        for u in us:
            out.update(int(i) for i in topk[layer]["index"][u])
    return sorted(out)


def save_example_images(root: Path, source: ImageSource, indices: Sequence[int]) -> None:
    """Write each selected image once as a PNG (true colours), skipping those already written."""
    from ..viz import save_png
    todo = [i for i in indices if not (root / example_file(i)).is_file()]
    for start in range(0, len(todo), 256):
        chunk = todo[start:start + 256]
        images = source.load(chunk).permute(0, 2, 3, 1).numpy()
        for i, img in zip(chunk, images):
            save_png(root / example_file(i), img, mode="clip")
