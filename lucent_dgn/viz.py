"""Showing and saving images: cnnpref's PNG normalisation, labelled grids, snapshots.

Nothing here runs inside the render loop.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._io import atomic_path, ensure_writable_dir
from .errors import ConfigError, ShapeError, describe
from .render.image_ops import clip_extreme_pixel, normalise_img

__all__ = ["GRID_MAX_COLUMNS", "GRID_MAX_SIDE", "to_uint8", "save_png", "make_grid", "save_grid", "save_snapshots",
           "clip_extreme_pixel", "normalise_img"]

#: Most units per grid row in :func:`lucent_dgn.runs.save_units`; more wrap into further rows.
GRID_MAX_COLUMNS = 16
#: Largest side of a grid canvas in pixels (tiles shrink to fit; 8192 px is at most 192 MiB RGB).
GRID_MAX_SIDE = 8192


def to_uint8(img: np.ndarray, mode: str = "cnnpref", pct: float = 0.04) -> np.ndarray:
    """Convert one image (H, W, 3) or (H, W) to uint8 for saving.

    Args:
        img: float image; 0-1 or 0-255 scale (``mode='cnnpref'`` does not care).
        mode: ``"cnnpref"`` -- ``normalise_img(clip_extreme_pixel(img, pct))`` as cnnpref's scripts
            save (contrast stretched); ``"clip"`` -- clip a 0-1 image to [0, 1] and scale to 255
            (true colours). Default ``"cnnpref"``.
        pct: percentage clipped at the extremes in ``"cnnpref"`` mode (default 0.04, cnnpref's).

    Returns:
        uint8 array of ``img``'s shape.

    Raises:
        ConfigError: an unknown ``mode``.
    """
    img = np.asarray(img)
    if mode == "cnnpref":
        return normalise_img(clip_extreme_pixel(img, pct))
    if mode == "clip":
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ConfigError(describe("mode", "'cnnpref' or 'clip'", mode))


def save_png(path: Union[str, os.PathLike], img: np.ndarray, mode: str = "cnnpref") -> Path:
    """Save an image as PNG atomically (uint8 arrays are saved as they are)."""
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ShapeError(describe("img", "an image (H, W), (H, W, 1) or (H, W, 3)", arr.shape))
    if arr.dtype != np.uint8:
        arr = to_uint8(arr, mode)
    target = Path(path)
    ensure_writable_dir(target.parent, "path")
    with atomic_path(target) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return target


def make_grid(images: Sequence[Optional[np.ndarray]], ncols: int, row_labels: Optional[Sequence[str]] = None,
              col_labels: Optional[Sequence[str]] = None, cell: int = 96, pad: int = 2,
              mode: str = "cnnpref", tile_labels: Optional[Sequence[str]] = None,
              max_side: int = GRID_MAX_SIDE) -> np.ndarray:
    """Tile images into a labelled grid, (H', W', 3) uint8, filled row by row.

    Args:
        images: images (H, W, 3) or (H, W), float (converted with ``mode``) or uint8; None leaves
            a tile empty.
        ncols: images per row (> 0).
        row_labels, col_labels: optional text left of each row / above each column.
        cell: side of each tile in pixels (default 96); images are resized to ``cell`` x ``cell``
            (nearest neighbour keeps small images crisp).
        pad: pixels between tiles (default 2).
        mode: :func:`to_uint8` mode for float images (default ``"cnnpref"``).
        tile_labels: optional text above each tile (for grids whose columns are not aligned units).
        max_side: the canvas's largest allowed side in pixels (default :data:`GRID_MAX_SIDE`);
            tiles shrink (down to 8 px) to keep the grid within it.

    Raises:
        ShapeError: no images, or so many that even 8-pixel tiles exceed ``max_side``.
        ConfigError: a bad ``ncols`` or ``mode``.
    """
    n = len(images)
    if n == 0:
        raise ShapeError(describe("images", "at least one image", 0))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols <= 0:
        raise ConfigError(describe("ncols", "a positive integer", ncols))
    ncols = int(ncols)
    nrows = (n + ncols - 1) // ncols
    left = 0 if not row_labels else 8 + 7 * max(len(str(s)) for s in row_labels)
    top = 0 if not col_labels else 16
    strip = 12 if tile_labels else 0
    fit = min(int(cell), (max_side - left - pad) // ncols - pad, (max_side - top - pad) // nrows - strip - pad)
    if fit < 8:
        raise ShapeError(describe("images", f"few enough for a grid of at most {max_side} pixels a side with "
                                  f"{ncols} columns", f"{n} images", "Save fewer images per grid.", raw=True))
    cell = fit

    def size(c: int) -> tuple:
        return left + ncols * (c + pad) + pad, top + nrows * (c + strip + pad) + pad

    width, height = size(cell)
    font = ImageFont.load_default()
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        x0, y0 = left + pad + c * (cell + pad), top + pad + r * (cell + strip + pad)
        if tile_labels and i < len(tile_labels) and tile_labels[i]:
            draw.text((x0 + 1, y0), str(tile_labels[i])[: max(1, cell // 6)], fill=(0, 0, 0), font=font)
        if img is None:
            continue
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            arr = to_uint8(arr, mode)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        tile = Image.fromarray(arr[..., :3]).resize((cell, cell), Image.NEAREST)
        canvas.paste(tile, (x0, y0 + strip))
    for r, label in enumerate(row_labels or []):
        draw.text((4, top + pad + r * (cell + strip + pad) + strip + cell // 2 - 5), str(label), fill=(0, 0, 0),
                  font=font)
    for c, label in enumerate(col_labels or []):
        draw.text((left + pad + c * (cell + pad) + 2, 2), str(label)[: max(1, cell // 6)], fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def save_grid(path: Union[str, os.PathLike], images: Sequence[np.ndarray], ncols: int, **kwargs) -> Path:
    """:func:`make_grid` then :func:`save_png`."""
    return save_png(path, make_grid(images, ncols, **kwargs))


def save_snapshots(folder: Union[str, os.PathLike], snapshots: Dict[int, np.ndarray], item: int = 0,
                   mode: str = "cnnpref") -> List[Path]:
    """Save snapshots of one batch item as ``%05d.png`` (cnnpref's numbering)."""
    out = ensure_writable_dir(folder, "folder")
    return [save_png(out / f"{step:05d}.png", imgs[item], mode) for step, imgs in sorted(snapshots.items())]
