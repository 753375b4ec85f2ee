"""Shared pieces of the cnnpref-compatible ``generate_image`` functions."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .._io import ensure_writable_dir
from ..errors import ConfigError, describe
from ..spaces import CaffeSpace, ImageSpace
from ..render.callbacks import Snapshot
from ..render.result import RenderResult, StepInfo
from ..viz import save_png, save_snapshots

__all__ = ["input_size", "net_space", "as_generator", "RETURNS", "cnnpref_render", "Display",
           "snapshot_callbacks", "save_run_snapshots", "as_numpy"]


def input_size(net: nn.Module, image_size: Optional[int] = None, initial_image: Any = None) -> int:
    """The side S of the network's (square) input images, as cnnpref reads it from the ``data`` blob.

    In order: ``image_size`` when given; the size the model declares (``net.input_size``: 227
    for BVLC AlexNet, 224 for VGG19 and torchvision's models); the side of ``initial_image``
    (H, W, 3) when it is square.

    Raises:
        ConfigError: none of these is available (nothing is guessed), or a non-square
            ``initial_image`` is the only source.
    """
    if image_size is not None:
        return int(image_size)
    declared = getattr(net, "input_size", None)
    if declared is not None:
        return int(declared)
    if initial_image is not None:
        shape = np.shape(initial_image)
        if len(shape) == 3 and shape[0] == shape[1]:
            return int(shape[0])
        raise ConfigError(describe("initial_image", "a square RGB image (S, S, 3)", shape,
                                   f"{type(net).__name__} declares no input size, so the image's gives it.", raw=True))
    raise ConfigError(describe(
        "image_size", "given, or declared by the model as `net.input_size`", None,
        f"{type(net).__name__} declares no input size, and cnnpref takes it from the network's data blob. "
        "Pass image_size=... (227 for BVLC AlexNet, 224 for VGG19), set net.input_size, or (pixel variants) "
        "pass an initial image."))


def net_space(net: nn.Module) -> ImageSpace:
    """The net's input space: ``net.input_space`` when declared, else Caffe net space (as cnnpref)."""
    space = getattr(net, "input_space", None)
    return space if isinstance(space, ImageSpace) else CaffeSpace()


class _DeclaredGenerator(nn.Module):
    """A generator module with the ``code_shape`` and ``output_space`` that :class:`DGNImage` reads."""

    def __init__(self, net: nn.Module, code_shape: Tuple[int, ...], output_space: ImageSpace) -> None:
        super().__init__()
        self.net = net
        self.code_shape = code_shape
        self.output_space = output_space

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)


def as_generator(net_gen: nn.Module, initial_gen_feat: Any = None) -> nn.Module:
    """``net_gen`` ready for :class:`~lucent_dgn.parameterizations.DGNImage`, as cnnpref takes any generator net.

    A module that declares ``code_shape`` and ``output_space`` is returned as it is. Otherwise the
    code shape is that of ``initial_gen_feat`` (cnnpref reads it from the generator's input blob),
    and the output is Caffe net space (BGR, mean-subtracted, 0-255) unless the module declares
    ``output_space``.

    Raises:
        ConfigError: ``net_gen`` is not a module, or declares no ``code_shape`` and no
            ``initial_gen_feat`` is given.
    """
    if not isinstance(net_gen, nn.Module):
        raise ConfigError(describe("net_gen", "a torch.nn.Module (the generator)", type(net_gen).__name__))
    code_shape = getattr(net_gen, "code_shape", None)
    space = getattr(net_gen, "output_space", None)
    if code_shape is not None and space is not None:
        return net_gen
    if code_shape is None:
        if initial_gen_feat is None:
            raise ConfigError(describe(
                "initial_gen_feat", "given when the generator declares no `code_shape`", None,
                f"{type(net_gen).__name__} does not say what codes it takes: pass the initial code (e.g. "
                "initial_gen_feat=np.zeros(4096, np.float32) for DeePSiM fc6) or set net_gen.code_shape."))
        code_shape = np.shape(as_numpy(initial_gen_feat))
    return _DeclaredGenerator(net_gen, tuple(int(d) for d in code_shape), space if space is not None else CaffeSpace())


def as_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array (a tensor is detached and moved to the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


#: cnnpref's return value of each variant (spec §10): ``"final"`` the image of the final variable
#: (float32), ``"clipped"`` the same as float64 clipped to [0, 255] (pixel L-BFGS-B, whose bounds
#: keep it there), ``"pre_update"`` the image generated before the last update (DGN-GD, Q8).
RETURNS: Dict[str, str] = {"gd": "final", "lbfgs": "clipped", "dgn_gd": "pre_update", "dgn_lbfgs": "final"}


class _PreviousCode:
    """Remembers the variable before the latest update (for cnnpref's stale DGN-GD image, Q8)."""

    def __init__(self, variable: torch.Tensor) -> None:
        self.previous = variable.detach().clone()
        self.current = variable.detach().clone()

    def __call__(self, info: StepInfo) -> None:
        self.previous = self.current
        self.current = info.param.variable.detach().clone()


def cnnpref_render(pieces: Any, net: nn.Module, *, seed: Optional[int], returns: str = "final",
                   callbacks: Sequence[Any] = ()) -> Tuple[np.ndarray, RenderResult]:
    """Render built pieces of one image as cnnpref does and return ``(image, result)``.

    The net's input space is :func:`net_space` (Caffe net space unless the net declares one).

    Args:
        pieces: :class:`~lucent_dgn.recipes.Pieces` of batch 1 (``recipe(...).build(net)``).
        net: the classifier.
        seed: the render's seed.
        returns: ``"final"``, ``"clipped"`` or ``"pre_update"`` (see :data:`RETURNS`).
        callbacks: render callbacks (display, snapshots).

    Returns:
        the RGB image (H, W, 3) on the 0-255 scale as cnnpref's function returns it, and the
        render's :class:`~lucent_dgn.render.result.RenderResult`.
    """
    if returns not in ("final", "clipped", "pre_update"):
        raise ConfigError(describe("returns", "'final', 'clipped' or 'pre_update'", returns))
    callbacks = list(callbacks)
    tracker = _PreviousCode(pieces.param.variable) if returns == "pre_update" else None
    if tracker is not None:
        callbacks.append(tracker)
    result = pieces.render(net, seed=seed, progress=False, callbacks=callbacks, input_space=net_space(net))
    if returns == "clipped":
        return np.clip(np.float64(result.images_255[0]), 0.0, 255.0), result
    if tracker is None:
        return np.float32(result.images_255[0]), result
    param = pieces.param
    with torch.no_grad():
        param.variable.copy_(tracker.previous)
        image = param.to_rgb(param())[0].cpu().numpy() * 255.0
        param.variable.copy_(result.final_params)
    return np.float32(image), result


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
    """cnnpref's display (every ``disp_every`` steps, 0 = off) and, when saving, a snapshot every ``every`` steps."""
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
