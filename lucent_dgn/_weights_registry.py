"""The weights registry: :class:`WeightsEntry` records (where a file can be found), by name.

Models add their entries where they are defined (:func:`register_weights`);
:func:`get_weights_entry` imports the modules holding the built-in entries on first use. Everything
here is re-exported by :mod:`lucent_dgn.weights`, which is where to import it from.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from .errors import ConfigError, describe

__all__ = ["WeightsEntry", "REGISTRY", "register_weights", "get_weights_entry"]

#: Modules whose import registers the built-in entries.
_BUILTIN_MODULES = ("lucent_dgn.models", "lucent_dgn.models.zoo", "lucent_dgn.generators.deepsim")


@dataclass(frozen=True)
class WeightsEntry:
    """Where a weights file can be found.

    Attributes:
        name: registry key, e.g. ``"deepsim-fc6"``.
        filename: the file's name in a cache directory (and the name a download is saved as).
        url: where :func:`lucent_dgn.weights.download_file` fetches it from, or None.
        sha256: expected sha256, full hex digest or a prefix of at least 8 hex digits
            (torchvision's file-name convention); None: not verified.
        packages: ``(package, path relative to the package directory)`` pairs of installed
            packages that ship the file.
        alt_filenames: other names of the same weights in a cache directory (a converted
            ``.pt`` next to a ``.caffemodel``, for example); searched after ``filename``.
        extra_dirs: more directories to search after the cache; ``{torch_home}`` and
            ``{torch_hub}`` expand at call time to torch's home and hub directories.
        sha1: expected sha1 (Caffe's model zoo lists these), checked like ``sha256``.
        hint: extra advice for the not-found message.
    """

    name: str
    filename: str
    url: Optional[str] = None
    sha256: Optional[str] = None
    packages: Tuple[Tuple[str, str], ...] = ()
    alt_filenames: Tuple[str, ...] = ()
    extra_dirs: Tuple[str, ...] = ()
    sha1: Optional[str] = None
    hint: str = ""


REGISTRY: Dict[str, WeightsEntry] = {}
"""Entries by name; the modules that define models add theirs with :func:`register_weights`."""


def register_weights(entry: WeightsEntry) -> WeightsEntry:
    """Add (or replace) ``entry`` in :data:`REGISTRY` and return it."""
    REGISTRY[entry.name] = entry
    return entry


def get_weights_entry(entry: Union[str, WeightsEntry]) -> WeightsEntry:
    """Return ``entry`` itself, or the registry entry of that name.

    Raises:
        ConfigError: ``entry`` is neither a :class:`WeightsEntry` nor a registered name.
    """
    if isinstance(entry, WeightsEntry):
        return entry
    if entry not in REGISTRY:  # the built-in entries live with their models
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
    if not isinstance(entry, str) or entry not in REGISTRY:
        raise ConfigError(describe("entry", f"a WeightsEntry or one of {sorted(REGISTRY)}", entry))
    return REGISTRY[entry]
