"""Weight files of the shipped models (and of models trained with :mod:`lucent_dgn.training`).

A file is a ``torch.save``-d dict ``{"format", "arch", "config", "state_dict", "meta"}``: the
architecture's class name, the constructor arguments that rebuild it, its weights (floating
parameters may be stored as float16 and are loaded as float32) and a free-form ``meta`` dict.
Architectures that can be stored this way register their class with :func:`register_asset_arch`
where they are defined (the Fashion-MNIST classifiers, the small generator). :func:`load_asset`
checks a file with :func:`check_asset` (layout, config, tensor shapes; the architecture built on
the ``meta`` device only) before it builds anything for real.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Type, TypeVar

import torch
from torch import nn

from ._io import PathLike, save_torch
from .errors import CorruptWeightsError, WeightsNotFoundError, describe
from .weights import read_torch_file

__all__ = ["ASSETS_DIR", "ASSET_FORMAT", "ASSET_ARCHS", "register_asset_arch", "save_asset", "load_asset",
           "check_asset"]

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
    blob = read_torch_file(path, "path")
    model = check_asset(blob, dict(ASSET_ARCHS, **(archs or {})), str(path))(**blob["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptWeightsError(describe("path", "weights matching the stored config", str(path), str(exc))) from exc
    model.meta = blob.get("meta", {})
    return model.eval()


def check_asset(blob: Any, archs: Mapping[str, type], path: str) -> type:
    """Validate a loaded weight file before anything real is built; returns its architecture class.

    Checks, in order: the dict layout (``format``, ``arch`` among ``archs``, ``config`` a dict of
    the constructor's keyword arguments, ``state_dict`` a dict of tensors, ``meta`` a dict); no
    number in ``config`` exceeds the number of values the file stores (a dimension can never
    be larger); the architecture built on the ``meta`` device (no memory) accepts the config; and
    its parameter and buffer names and shapes equal the file's. A file that passes therefore
    builds a model no larger than the weights it holds.

    Raises:
        CorruptWeightsError: the first check that fails, naming ``path``.
    """
    def bad(rule: str, hint: str = "") -> CorruptWeightsError:
        return CorruptWeightsError(describe("path", rule, path, hint))

    if not isinstance(blob, dict) or blob.get("format") != ASSET_FORMAT or blob.get("arch") not in archs:
        raise bad(f"a {ASSET_FORMAT} file of a known architecture ({sorted(archs)})")
    model_cls = archs[blob["arch"]]
    config, state, meta = blob.get("config"), blob.get("state_dict"), blob.get("meta", {})
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v)
                                                           for k, v in state.items()):
        raise bad("a file whose state_dict maps names to tensors")
    if not isinstance(meta, dict):
        raise bad("a file whose meta is a dict", f"Its meta is a {type(meta).__name__}.")
    params = inspect.signature(model_cls.__init__).parameters
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise bad(f"a file whose config is a dict of {model_cls.__name__}'s arguments")
    unknown = sorted(k for k in config if k not in params or k == "self")
    if unknown:
        raise bad(f"a file whose config holds {model_cls.__name__}'s arguments",
                  f"Unknown: {unknown}; known: {sorted(k for k in params if k != 'self')}.")
    stored = sum(int(v.numel()) for v in state.values())
    numbers = _config_numbers(config.values())
    if any(abs(v) > stored for v in numbers):
        raise bad("a file whose config fits its weights",
                  f"The config holds {max(numbers, key=abs)!r}, more than the {stored} values stored.")
    try:
        with torch.device("meta"):
            skeleton = model_cls(**config)
    except Exception as exc:  # noqa: BLE001 - any constructor failure means a config it does not take
        raise bad(f"a file whose config builds a {model_cls.__name__}",
                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        key = (sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]])[0]
        raise bad(f"weights matching the {model_cls.__name__} its config describes",
                  f"First difference: {key} is {expected.get(key, 'absent')} in the architecture and "
                  f"{found.get(key, 'absent')} in the file.")
    return model_cls


def _config_numbers(values: Any) -> List[float]:
    """Every int/float inside a config's values (lists and tuples are searched)."""
    out: List[float] = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out += _config_numbers(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(value)
    return out
