"""Weight files of the shipped models (and of models trained with :mod:`lucent_dgn.training`).

A file is a ``torch.save``-d dict ``{"format", "arch", "config", "state_dict", "meta"}``: the
architecture's class name, the constructor arguments that rebuild it, its weights (floating
parameters may be stored as float16 and are loaded as float32) and a free-form ``meta`` dict.
Architectures that can be stored this way register their class with :func:`register_asset_arch`
where they are defined (the Fashion-MNIST classifiers, the small generator).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

import torch
from torch import nn

from ._io import PathLike, save_torch
from .errors import CorruptWeightsError, WeightsNotFoundError, describe

__all__ = ["ASSETS_DIR", "ASSET_FORMAT", "ASSET_ARCHS", "register_asset_arch", "save_asset", "load_asset"]

#: Folder of the shipped weight files (``lucent_dgn/assets``).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ASSET_FORMAT = "lucent_dgn.asset/1"
#: Architectures :func:`load_asset` can rebuild, by class name.
ASSET_ARCHS: Dict[str, type] = {}

M = TypeVar("M", bound=Type[nn.Module])


def register_asset_arch(cls: M) -> M:
    """Let :func:`load_asset` rebuild ``cls`` from its stored config (usable as a class decorator)."""
    ASSET_ARCHS[cls.__name__] = cls
    return cls


def save_asset(model: nn.Module, path: PathLike, config: Dict[str, Any], meta: Optional[Dict[str, Any]] = None,
               half: bool = True) -> Path:
    """Write ``model``'s weights with its constructor ``config`` and ``meta`` (atomically).

    With ``half`` (default) parameters are stored as float16; buffers keep their dtype.
    """
    params = {name for name, _ in model.named_parameters()}
    state = {k: (v.detach().cpu().half() if half and k in params and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    blob = {"format": ASSET_FORMAT, "arch": type(model).__name__, "config": dict(config),
            "state_dict": state, "meta": dict(meta or {})}
    return save_torch(blob, path)


def load_asset(path: PathLike, archs: Optional[Mapping[str, type]] = None) -> nn.Module:
    """Build the model a weight file describes and load its weights (as float32), in eval mode.

    Args:
        path: a file written by :func:`save_asset`.
        archs: extra architectures by class name, beside the registered ones (:data:`ASSET_ARCHS`).

    The file's ``meta`` dict is attached as ``model.meta``.

    Raises:
        WeightsNotFoundError: no file at ``path``.
        CorruptWeightsError: unreadable file, unknown architecture or mismatched weights.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(describe(
            "path", "an existing weight file", str(path),
            "Re-create the shipped files with `python -m lucent_dgn.training.make_assets`."))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a bad file
        raise CorruptWeightsError(describe("path", "a readable weight file", str(path), f"Loading failed: {exc}")) from exc
    table = dict(ASSET_ARCHS, **(archs or {}))
    if not isinstance(blob, dict) or blob.get("format") != ASSET_FORMAT or blob.get("arch") not in table:
        raise CorruptWeightsError(describe("path", f"a {ASSET_FORMAT} file of a known architecture ({sorted(table)})",
                                           str(path)))
    model = table[blob["arch"]](**blob["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptWeightsError(describe("path", "weights matching the stored config", str(path), str(exc))) from exc
    model.meta = blob.get("meta", {})
    return model.eval()
