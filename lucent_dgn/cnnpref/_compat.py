"""Shared pieces of the cnnpref-compatible ``generate_image`` functions."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import torch
from torch import nn

from .._io import ensure_writable_dir
from ..render.callbacks import Snapshot
from ..render.result import StepInfo
from ..spaces import CaffeSpace, ImageSpace
from ..viz import save_png, save_snapshots

__all__ = ["input_size", "net_space", "Display", "snapshot_callbacks", "save_run_snapshots", "as_numpy"]


def input_size(net: nn.Module, image_size: Optional[int]) -> int:
    """The network's input size: ``image_size``, else ``net.input_size``, else 227 (AlexNet)."""
    if image_size is not None:
        return int(image_size)
    return int(getattr(net, "input_size", 227))


def net_space(net: nn.Module) -> ImageSpace:
    """The net's input space: ``net.input_space`` when declared, else Caffe net space (as cnnpref)."""
    space = getattr(net, "input_space", None)
    return space if isinstance(space, ImageSpace) else CaffeSpace()


def as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class Display:
    """Print ``iter=<t+1>; mean(feat)=<value>;`` every ``every`` steps (cnnpref's disp_every).

    cnnpref prints the mean absolute activation of the selected units; this prints their signed
    mean (the value being maximised).
    """

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def __call__(self, info: StepInfo) -> None:
        if self.every > 0 and (info.step + 1) % self.every == 0:
            print(f"iter={info.step + 1}; mean(feat)={float(np.mean(info.activation)):g};")


def snapshot_callbacks(save_intermediate: bool, every: int, disp_every: int) -> List[Any]:
    callbacks: List[Any] = [Display(disp_every)] if disp_every else []
    if save_intermediate:
        callbacks.append(Snapshot(every))
    return callbacks


def save_run_snapshots(save_intermediate: bool, path: Optional[str], prefix: str, snapshots: dict,
                       initial: Optional[np.ndarray] = None) -> Optional[Path]:
    """Write snapshots as ``%05d.png`` (and ``initial_image.png``) to ``path`` or ``./<prefix>_<timestamp>``."""
    if not save_intermediate:
        return None
    folder = Path(path) if path else Path(f"./{prefix}_{time.strftime('%Y%m%dT%H%M%S')}")
    ensure_writable_dir(folder, "save_intermediate_path")
    if initial is not None:
        save_png(folder / "initial_image.png", initial)
    save_snapshots(folder, snapshots)
    return folder
