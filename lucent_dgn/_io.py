"""Atomic file writing: write to a temporary file in the target folder, then rename.

A crash or exception mid-write never leaves a partial file under the final name. JSON, ``.npy``
and ``torch.save`` files (state dicts, checkpoints) all go through :func:`atomic_write_bytes`.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import numpy as np
import torch

from .errors import ConfigError, describe

__all__ = ["atomic_path", "atomic_write_bytes", "save_json", "save_npy", "save_torch", "ensure_writable_dir"]

PathLike = Union[str, os.PathLike]


def ensure_writable_dir(path: PathLike, arg: str = "out_dir") -> Path:
    """Create ``path`` (with parents) and check it is writable; ConfigError otherwise."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(describe(arg, "a directory that can be created", f"'{p}'", str(err), raw=True)) from None
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(describe(arg, "a writable directory", f"'{p}'", raw=True))
    return p


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=str(target.parent))
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; finished files get the usual mode
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: PathLike, write: Callable[[Any], None], durable: bool = True) -> Path:
    """Open a temporary file in binary mode, call ``write(fileobj)``, then rename atomically.

    ``durable=False`` skips the ``fsync`` before the rename: the file is still never seen
    half-written after a crash of the process, only a power loss may lose it (for files that are
    cheap to make again, such as web pages generated from data on disk).
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
    return Path(path)


def save_json(path: PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy values converted)."""
    def default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        return str(o)
    text = json.dumps(data, indent=2, default=default, sort_keys=False).encode()
    return atomic_write_bytes(path, lambda fh: fh.write(text))


def save_npy(path: PathLike, array: np.ndarray) -> Path:
    """Write a .npy file atomically."""
    return atomic_write_bytes(path, lambda fh: np.save(fh, np.asarray(array)))


def save_torch(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` atomically, creating missing parent folders.

    A failure part-way (e.g. an object that cannot be pickled) leaves any previous file at
    ``path`` intact and no temporary file behind. Saving into an open file object keeps the
    archive's inner name fixed, so the same object gives the same bytes.

    Returns:
        ``Path(path)``.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, lambda handle: torch.save(obj, handle))
