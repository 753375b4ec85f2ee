"""Find, fetch and read pretrained weight files: one loading chain for every model.

:func:`resolve_weights` returns the first hit of, in order: an explicit ``path`` (must exist);
the cache directory (``cache_dir``, else ``$LUCENT_DGN_CACHE``, else ``~/.cache/lucent_dgn``, read
at call time) and the entry's extra directories (e.g. ``$TORCH_HOME/hub/checkpoints``); an
installed package that ships the file (found with ``importlib.util.find_spec``, never imported);
and, only when ``download=True``, a download into the cache: written to a temporary file, checked
against the known sha256/sha1, then renamed into place atomically. Nothing found ->
:class:`~lucent_dgn.errors.WeightsNotFoundError` listing every place searched and how to get the
file. Files are read with ``torch.load(weights_only=True)`` (no code runs); ``.caffemodel`` files
are converted on the fly. Models register their entries in :data:`REGISTRY` where they are defined
(the registry lives in ``lucent_dgn._weights_registry``; every name is importable from here).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import urllib.request
from pathlib import Path
from typing import BinaryIO, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ._io import PathLike, atomic_path
from ._weights_registry import REGISTRY, WeightsEntry, get_weights_entry, register_weights
from .errors import (ChecksumError, ConfigError, CorruptWeightsError, WeightsError,
                     WeightsNotFoundError, describe)
from .caffemodel import caffemodel_to_state_dict

__all__ = [
    "WeightsEntry", "REGISTRY", "register_weights", "get_weights_entry", "default_cache_dir", "resolve_weights",
    "download_file", "fetch_url", "file_digest", "load_state_dict_file", "load_weights_file", "load_into",
]

logger = logging.getLogger(__name__)
CACHE_ENV = "LUCENT_DGN_CACHE"


def default_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """``cache_dir``, else ``$LUCENT_DGN_CACHE``, else ``~/.cache/lucent_dgn`` (read now)."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or "~/.cache/lucent_dgn"
    return Path(chosen).expanduser()


def _torch_home() -> str:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return os.path.expanduser(os.environ.get("TORCH_HOME", default))


def _search_dirs(entry: WeightsEntry, cache: Path) -> List[Path]:
    dirs = [cache]
    for template in entry.extra_dirs:
        dirs.append(Path(template.format(torch_home=_torch_home(), torch_hub=torch.hub.get_dir())).expanduser())
    return dirs


def _package_candidates(entry: WeightsEntry) -> List[Tuple[str, Optional[Path]]]:
    """(description, path or None when the package is absent) for each shipping package."""
    found: List[Tuple[str, Optional[Path]]] = []
    for package, relative in entry.packages:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations and spec is not None and spec.origin:
            locations = [os.path.dirname(spec.origin)]
        if not locations:
            found.append((f"package {package!r} (not installed)", None))
        for location in locations:
            found.append((f"package {package!r}", Path(location) / relative))
    return found


def resolve_weights(entry: Union[str, WeightsEntry], path: Optional[PathLike] = None,
                    cache_dir: Optional[PathLike] = None, download: bool = False,
                    progress: bool = True) -> Path:
    """Find ``entry``'s file: explicit path -> cache dirs -> installed package -> download.

    Args:
        entry: a :class:`WeightsEntry` or a :data:`REGISTRY` name.
        path: explicit file; when given, it must exist (no fall-back).
        cache_dir: cache directory; default ``$LUCENT_DGN_CACHE`` or ``~/.cache/lucent_dgn``.
        download: fetch ``entry.url`` into the cache when not found locally. Default False.
        progress: show a tqdm bar while downloading. Default True.

    Returns:
        Path of an existing file.

    Raises:
        WeightsNotFoundError: not found and no download allowed (the message lists every place
            searched and how to get the file).
        ChecksumError: a downloaded file's digest differs from the expected one.
    """
    entry = get_weights_entry(entry)
    if path is not None:
        explicit = Path(path).expanduser()
        if explicit.is_file():
            return explicit
        raise WeightsNotFoundError(describe("weights", f"an existing file for {entry.name!r}", str(explicit),
                                            "Check the path, or pass weights='default' to search the cache."))
    cache = default_cache_dir(cache_dir)
    looked: List[str] = []
    for directory in _search_dirs(entry, cache):
        for name in (entry.filename,) + entry.alt_filenames:
            candidate = directory / name
            if candidate.is_file():
                return candidate
            looked.append(str(candidate))
    for description, candidate in _package_candidates(entry):
        if candidate is not None and candidate.is_file():
            return candidate
        looked.append(description if candidate is None else f"{candidate} ({description})")
    if download and entry.url:
        return download_file(entry.url, cache / entry.filename, sha256=entry.sha256, sha1=entry.sha1,
                             progress=progress)
    raise WeightsNotFoundError(_not_found_message(entry, cache, looked))


def _not_found_message(entry: WeightsEntry, cache: Path, looked: List[str]) -> str:
    places = "".join(f"\n  - {place}" for place in looked)
    if entry.url:
        how = (f"To get it, call again with download=True (fetches {entry.url}), or download it yourself "
               f"and save it as {cache / entry.filename}, or pass its path as weights=...")
    else:
        how = f"Save it as {cache / entry.filename} or pass its path as weights=..."
    how += f" The cache directory is set by cache_dir=... or ${CACHE_ENV}."
    if entry.hint:
        how += " " + entry.hint
    return describe("weights", f"a file {entry.filename!r} for {entry.name!r}", "no such file in any "
                    "place searched", f"Searched:{places}\n{how}", raw=True)


def fetch_url(url: str, out: BinaryIO, progress: bool = True, timeout: float = 60.0) -> None:
    """Stream ``url`` into the open binary file ``out`` (tqdm bar when ``progress``)."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs of registry entries
        total = int(response.headers.get("Content-Length") or 0) or None
        name = url.rsplit("/", 1)[-1][:40]
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc=name) as bar:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``"sha256"`` or any ``hashlib`` algorithm), read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, url: str, sha256: Optional[str], sha1: Optional[str]) -> None:
    checks = [(alg, exp.lower()) for alg, exp in (("sha256", sha256), ("sha1", sha1)) if exp]
    if not checks:
        logger.warning("No checksum is known for %s: the downloaded file is not verified.", url)
    for algorithm, expected in checks:
        actual = file_digest(path, algorithm)
        if not actual.startswith(expected):
            raise ChecksumError(describe(f"{algorithm} of {url}", f"{expected}", actual,
                                         "The download is corrupt or the file changed upstream; "
                                         "nothing was saved. Try again or fetch the file by hand."))


def download_file(url: str, dest: PathLike, sha256: Optional[str] = None, sha1: Optional[str] = None,
                  progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically: into a temporary file next to ``dest``, digests checked,
    then renamed. On any failure the temporary file is removed and ``dest`` is left untouched.

    Raises:
        WeightsError: the fetch failed. ChecksumError: a digest differs.
    """
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            try:
                fetch_url(url, out, progress=progress)
            except OSError as exc:  # URLError, timeouts, connection resets
                raise WeightsError(describe("url", "reachable", url, f"Download failed ({exc}). Fetch the file "
                                            f"by hand and save it as {dest}.")) from exc
        _verify(tmp, url, sha256, sha1)
    return dest


def _unwrap(obj: object, path: Path) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (plain, or under 'state_dict' / 'model' ...)."""
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return dict(tensors)
        for key in ("state_dict", "model_state_dict", "model", "generator", "G"):
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path)
        if tensors:
            return dict(tensors)
    raise CorruptWeightsError(describe("weights file", "a state dict (a mapping of names to tensors)",
                                       f"{type(obj).__name__} in {path}", raw=True))


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a PyTorch state dict on the CPU with ``weights_only=True`` (no code execution).

    Raises:
        WeightsNotFoundError: no such file. CorruptWeightsError: truncated, not a torch file,
            pickled objects other than tensors, or no tensor mapping inside.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(describe("weights", "an existing file", str(path)))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError ... here
        raise CorruptWeightsError(describe(
            "weights file", "a complete PyTorch state dict", str(path),
            f"torch.load failed: {str(exc).splitlines()[0][:200]}. The file may be truncated (download it "
            "again) or hold a whole pickled model (re-save model.state_dict()).")) from exc
    return _unwrap(obj, path)


def load_weights_file(path: PathLike,
                      caffe_mapping: Optional[Mapping[str, str]] = None) -> Dict[str, torch.Tensor]:
    """name -> CPU tensor from a PyTorch state dict file, or from a ``.caffemodel`` converted with
    ``caffe_mapping`` (Caffe layer name -> module prefix; required for ``.caffemodel`` files)."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".caffemodel":
        return load_state_dict_file(path)
    if caffe_mapping is None:
        raise ConfigError(describe("caffe_mapping", "a Caffe-layer -> module mapping for .caffemodel files", None))
    if not path.is_file():
        raise WeightsNotFoundError(describe("weights", "an existing file", str(path)))
    try:
        state = caffemodel_to_state_dict(path, dict(caffe_mapping))
    except WeightsError:
        raise
    except Exception as exc:
        raise CorruptWeightsError(describe("weights file", "a readable .caffemodel", str(path),
                                           f"{type(exc).__name__}: {exc}")) from exc
    return {k: torch.as_tensor(v) for k, v in state.items()}


def _strip_leading_ones(shape: torch.Size) -> Tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return tuple(dims)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    """Strictly load ``state`` into ``module``; legacy Caffe 4-D blob shapes such as (1, 1, out, in)
    are reshaped to the parameter's shape. Every key must match.

    Raises:
        CorruptWeightsError: missing or unexpected keys, or a shape that does not fit (names ``source``).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CorruptWeightsError(describe(
            "weights", f"a state dict for {type(module).__name__}", source,
            f"Missing keys: {missing[:6]}{' ...' if len(missing) > 6 else ''}; unexpected keys: "
            f"{unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}.", raw=True))
    fixed = {}
    for key, target in own.items():
        tensor = torch.as_tensor(state[key])
        if tensor.shape != target.shape:
            if _strip_leading_ones(tensor.shape) != _strip_leading_ones(target.shape):
                raise CorruptWeightsError(describe(f"{key} in {source}", f"of shape {tuple(target.shape)}",
                                                   tuple(tensor.shape), "Is this the right model variant?"))
            tensor = tensor.reshape(target.shape)
        fixed[key] = tensor.to(target.dtype)
    module.load_state_dict(fixed, strict=True)
    return module
