"""Small image datasets for training classifiers and generators.

* :class:`FashionMNIST` -- the Fashion-MNIST idx files (Debian package ``dataset-fashion-mnist``
  installs them in :data:`FASHION_MNIST_DIR`), 28x28 grey images.
* :class:`ImageFolder` -- every image file below a folder, resized to a square, grey or RGB.
* :class:`TensorImages` -- images already in memory.

All three return ``(image, label)`` pairs: ``image`` is a float32 tensor (C, H, W) with values
in [0, 1] (:class:`~lucent_dgn.spaces.UnitSpace`), ``label`` an int (0 when there are none).
Each also offers ``get_batch(indices) -> (images (B, C, H, W), labels (B,))`` for fast batching.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import ConfigError, LucentDGNError, ShapeError, describe

__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FashionMNISTNotFoundError",
    "read_idx",
    "fashion_mnist_available",
    "FashionMNIST",
    "ImageFolder",
    "TensorImages",
    "load_batch",
]

#: Where the Debian package ``dataset-fashion-mnist`` puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES: Tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class FashionMNISTNotFoundError(LucentDGNError, FileNotFoundError):
    """The Fashion-MNIST files are missing (install ``dataset-fashion-mnist``)."""


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read an idx file (as used by MNIST), gzip-compressed or not.

    Returns:
        numpy array with the shape and dtype stored in the file's header.

    Raises:
        ShapeError: the header is not an idx header or the data size does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ShapeError(describe("path", "an idx file (header 00 00 <type> <ndim>)", str(path)))
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)) * dtype.itemsize:
        raise ShapeError(describe("path", f"an idx file holding {dims} values", str(path),
                                  "The file is truncated or corrupt."))
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _fashion_files(root: Path, train: bool) -> Tuple[Path, Path]:
    prefix = "train" if train else "t10k"
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        candidates = [root / f"{prefix}-{kind}-ubyte.gz", root / f"{prefix}-{kind}-ubyte"]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise FashionMNISTNotFoundError(
                f"Fashion-MNIST file {candidates[0]} is missing. Install the Debian package "
                f"`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), or pass `root=` "
                f"pointing to a folder with {prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz."
            )
        found.append(match)
    return found[0], found[1]


def fashion_mnist_available(root: Union[str, Path, None] = None) -> bool:
    """True when both the training and the test files are present in ``root``."""
    try:
        _fashion_files(Path(root or FASHION_MNIST_DIR), True)
        _fashion_files(Path(root or FASHION_MNIST_DIR), False)
    except FashionMNISTNotFoundError:
        return False
    return True


class TensorImages(Dataset):
    """Images held in memory.

    Args:
        images: (N, C, H, W) or (N, H, W) tensor/array; uint8 (0-255) or float in [0, 1].
        labels: optional (N,) integer labels (default all 0).
    """

    def __init__(self, images: Union[torch.Tensor, np.ndarray],
                 labels: Union[torch.Tensor, np.ndarray, Sequence[int], None] = None) -> None:
        images = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4:
            raise ShapeError(describe("images", "a tensor of shape (N, C, H, W) or (N, H, W)", tuple(images.shape)))
        self.images = images  # uint8 kept as is (4x smaller); converted per batch
        n = images.shape[0]
        labels = torch.zeros(n, dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
        if labels.shape != (n,):
            raise ShapeError(describe("labels", f"a tensor of shape ({n},)", tuple(labels.shape)))
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        return self._convert(self.images[index]), int(self.labels[index])

    def get_batch(self, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) float in [0, 1] and labels (B,) for ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._convert(self.images[idx]), self.labels[idx]

    def subset(self, indices: Sequence[int]) -> "TensorImages":
        """A new dataset with the items at ``indices`` (shares no storage)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorImages(self.images[idx].clone(), self.labels[idx].clone())


class FashionMNIST(TensorImages):
    """Fashion-MNIST: 60,000 training or 10,000 test images, (1, 28, 28) in [0, 1], labels 0-9.

    Args:
        train: the training split (default) or the test split.
        root: folder with the idx files; default :data:`FASHION_MNIST_DIR`.

    Raises:
        FashionMNISTNotFoundError: the files are missing (the message says what to install).
    """

    classes = FASHION_MNIST_CLASSES

    def __init__(self, train: bool = True, root: Union[str, Path, None] = None) -> None:
        image_file, label_file = _fashion_files(Path(root or FASHION_MNIST_DIR), train)
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise ShapeError(describe("root", "a folder with matching Fashion-MNIST files",
                                      (images.shape, labels.shape)))
        super().__init__(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
        self.train = train


def load_batch(dataset: Dataset, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) float and labels (B,) of ``dataset`` at ``indices``.

    Uses ``dataset.get_batch`` when present; otherwise stacks ``dataset[i]`` items, which may be
    ``(image, label)`` pairs or bare images (label 0).
    """
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)
    images, labels = [], []
    for i in indices:
        item = dataset[int(i)]
        image, label = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, 0)
        images.append(torch.as_tensor(image, dtype=torch.float32))
        labels.append(int(label))
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def _list_images(root: Path) -> List[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


class ImageFolder(TensorImages):
    """Every image file below ``root`` (recursively), loaded into memory.

    Labels come from the first-level sub-folder (sorted names -> 0, 1, ...) when images live in
    sub-folders; files directly in ``root`` get label 0. ``classes`` lists the folder names.

    Args:
        root: the folder.
        size: side of the square the images are resized to (default 28).
        channels: 1 (grey, default) or 3 (RGB).
    """

    def __init__(self, root: Union[str, Path], size: int = 28, channels: int = 1) -> None:
        from PIL import Image

        root = Path(root)
        if not root.is_dir():
            raise ConfigError(describe("root", "an existing folder", os.fspath(root)))
        if channels not in (1, 3) or int(size) < 1:
            raise ConfigError(describe("channels/size", "channels 1 or 3 and size >= 1", (channels, size)))
        files = _list_images(root)
        if not files:
            raise ConfigError(describe("root", f"a folder containing images ({', '.join(_IMAGE_SUFFIXES)})",
                                       os.fspath(root)))
        self.classes = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
        lookup = {name: i for i, name in enumerate(self.classes)}
        arrays, labels = [], []
        for f in files:
            with Image.open(f) as img:
                img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
            arrays.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            parts = f.relative_to(root).parts
            labels.append(lookup[parts[0]] if len(parts) > 1 else 0)
        super().__init__(torch.from_numpy(np.stack(arrays)), torch.tensor(labels))
        self.files = files
