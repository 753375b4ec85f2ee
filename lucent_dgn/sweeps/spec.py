"""What a sweep is, checked before any work: sources, layers and units, variants, seeds, batches.

A sweep renders every (layer, unit, variant, seed) of its settings. Its *identity* -- everything
that decides the bytes of a unit's result -- is written to ``sweep.json`` and compared on a rerun:

* the model and the generator (how they are loaded, plus a sha256 of their weights),
* each layer's resolved name, feature shape and unit list,
* each variant's options (canonical JSON), the seeds,
* the rows per render of each variant (``batch``), torch's thread count and the device.

How the work is run (backend, worker count, order) is not part of it: a unit's result does not
depend on it. A "unit" of a convolutional layer is the centre unit of a channel (as cnnpref's
example scripts and :func:`lucent_dgn.runs.render_units`); of a flat layer, one element.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, describe

__all__ = ["Source", "LayerPlan", "WorkItem", "SweepPlan", "BATCHED_VARIANTS", "resolve_units", "canonical",
           "fingerprint", "as_source", "check_options"]

#: Variants rendered several units per render. Gradient descent normalises each item's gradient,
#: so items do not interact. Every other variant renders one unit per render: L-BFGS keeps
#: per-item histories, but a batched run's steps and evaluation counts are those of its slowest
#: item, not each unit's.
BATCHED_VARIANTS = ("gd", "dgn_gd")
#: Options the sweep sets itself, with where to set them instead.
_RESERVED = {"batch": "batch_size=", "seed": "seeds="}

UnitSpec = Union[None, str, int, Sequence[int], range, slice, np.ndarray, "os.PathLike[str]"]


@dataclass(frozen=True)
class Source:
    """A model or generator that every worker loads once: by name, from a factory, or a module.

    Attributes:
        role: ``"model"`` or ``"generator"`` (which name table to use).
        name: a name of ``lucent-dgn``'s command line (``"fashion"``, ``"bvlc_alexnet"``, a
            torchvision name; generators ``"fashion"``, ``"deepsim-fc6"`` ...), or None.
        weights: weights file for a name (default: the loading chain).
        factory: a callable ``() -> nn.Module`` (importable at module level for the process
            pool and Ray backends), or None.
        module: a module object (pickled to process-pool and Ray workers), or None.
    """

    role: str
    name: Optional[str] = None
    weights: Optional[str] = None
    factory: Optional[Callable[[], nn.Module]] = None
    module: Optional[nn.Module] = None

    def load(self) -> nn.Module:
        """The module (a fresh one for names and factories)."""
        if self.module is not None:
            return self.module
        if self.factory is not None:
            out = self.factory()
            if not isinstance(out, nn.Module):
                raise ConfigError(describe(self.role, "a factory returning a torch.nn.Module", type(out).__name__))
            return out
        from ..registry import load_generator_by_name, load_model_by_name
        loader = load_model_by_name if self.role == "model" else load_generator_by_name
        return loader(self.name, self.weights)

    def label(self) -> str:
        """How the source is written in ``sweep.json``."""
        if self.name is not None:
            return self.name
        if self.factory is not None:
            f = self.factory
            return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__name__)}"
        return f"object:{type(self.module).__module__}.{type(self.module).__qualname__}"

    def check_picklable(self) -> None:
        """Fail unless the source can be sent to other processes (process pool, Ray)."""
        try:
            pickle.dumps(self)
        except Exception as err:  # noqa: BLE001 - any pickling failure means the same thing here
            raise ConfigError(describe(self.role, "a name, a module-level factory function or a picklable module "
                                       "for the process-pool and Ray backends", self.label(),
                                       f"({type(err).__name__}). Define the factory at module level, or run "
                                       "in-process (no `workers`/`ray`).")) from None


def as_source(value: Any, role: str, weights: Optional[str] = None) -> Optional[Source]:
    """A :class:`Source` from a name, a factory, a module or a Source (None stays None)."""
    if value is None or isinstance(value, Source):
        return value
    if isinstance(value, str):
        return Source(role, name=value, weights=weights)
    if isinstance(value, nn.Module):
        return Source(role, module=value)
    if callable(value):
        return Source(role, factory=value)
    raise ConfigError(describe(role, "a name, a factory () -> nn.Module, or an nn.Module", type(value).__name__))


def fingerprint(module: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and bytes), hex."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def canonical(value: Any, where: str = "option") -> Any:
    """``value`` as plain JSON data (arrays and tensors to nested lists, tuples to lists).

    Raises:
        ConfigError: a value JSON cannot hold (a function, an object ...).
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v, where) for v in value]
    raise ConfigError(describe(where, "JSON data (numbers, strings, lists, arrays)", type(value).__name__,
                               "A sweep's settings are saved and compared as JSON."))


def _range_spec(text: str, n: int) -> List[int]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(text)
    start, stop, step = (int(p) if p.strip() else None for p in parts + [""] * (3 - len(parts)))
    return list(range(*slice(start, stop, step).indices(n))) if step != 0 else []


def _mask_file(path: Path, n: int, layer: str) -> List[int]:
    if not path.is_file():
        raise ConfigError(describe("units", "a mask file that exists", str(path)))
    try:
        arr = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as err:
        raise ConfigError(describe("units", "a .npy mask or a text file of unit indices", str(path), str(err))) from None
    arr = np.asarray(arr)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ConfigError(describe("units", f"a boolean mask of shape ({n},) for layer {layer!r}",
                                       f"shape {arr.shape} in {path}", raw=True))
        return np.flatnonzero(arr).tolist()
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(describe("units", f"a boolean mask of shape ({n},) or a list of unit indices",
                                   f"a {arr.dtype} array of shape {arr.shape} in {path}", raw=True))
    return arr.tolist()


def resolve_units(spec: UnitSpec, n: int, layer: str) -> List[int]:
    """Unit indices (sorted, unique) of a layer with ``n`` channels (or elements).

    Args:
        spec: ``None`` or ``"all"``; an int; ``"start:stop[:step]"`` (Python slice, e.g. ``"::4"``
            every 4th); ``"0,3,7"``; a ``range``/``slice``; a list of ints; a boolean mask
            array of shape (n,); or a mask file: ``.npy`` (boolean (n,) or integer indices) or a
            text file of indices.
        n: channels of the layer.
        layer: layer name for messages.

    Raises:
        ConfigError: unparsable spec, an index outside [0, n), or no unit at all.
    """
    units: List[int]
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        units = list(range(n))
    elif isinstance(spec, (os.PathLike, Path)) or (isinstance(spec, str) and spec.endswith((".npy", ".txt"))):
        units = _mask_file(Path(spec), n, layer)
    elif isinstance(spec, str):
        try:
            units = _range_spec(spec, n) if ":" in spec else [int(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raise ConfigError(describe("units", "'all', 'start:stop[:step]', comma-separated integers or a mask file",
                                       spec)) from None
    elif isinstance(spec, slice):
        units = list(range(*spec.indices(n)))
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        units = [int(spec)]
    else:
        arr = np.asarray(list(spec) if isinstance(spec, range) else spec)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ConfigError(describe("units", f"a boolean mask of shape ({n},) for layer {layer!r}", arr.shape))
            units = np.flatnonzero(arr).tolist()
        elif arr.ndim == 1 and (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            units = [int(u) for u in arr]
        else:
            raise ConfigError(describe("units", "unit indices, a range, a boolean mask or 'all'", spec))
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ConfigError(describe("units", f"unit indices in [0, {n}) for layer {layer!r} ({n} channels)", bad[0],
                                   f"{len(bad)} of {len(units)} requested units are out of range."))
    units = sorted(set(int(u) for u in units))
    if not units:
        raise ConfigError(describe("units", f"a selection of at least one unit of layer {layer!r}", spec))
    return units


def check_options(variant: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """Canonical (JSON) options of one variant; options the sweep sets itself fail.

    Option names and values are checked by :func:`lucent_dgn.recipe` when the plan builds each
    variant once.
    """
    out = {}
    for key, value in options.items():
        if key in _RESERVED:
            raise ConfigError(describe(f"variants[{variant!r}]", "options without the sweep's own settings", key,
                                       f"Pass {_RESERVED[key]} to the sweep instead."))
        out[key] = canonical(value, f"variants[{variant!r}][{key!r}]")
    return out


@dataclass(frozen=True)
class LayerPlan:
    """One layer of a sweep: resolved dotted ``name``, feature ``shape`` (C, ...) and ``units``."""

    name: str
    shape: Tuple[int, ...]
    units: Tuple[int, ...]


@dataclass(frozen=True)
class WorkItem:
    """One render: ``units`` of ``layer`` with ``variant`` and ``seed``, in a render of ``rows`` items.

    Renders of a batched variant always have the same number of rows (the variant's ``batch``);
    a group with fewer units is padded with copies of its first unit, whose results are dropped.
    A unit's result is the same in every group it can land in (see :mod:`lucent_dgn.sweeps`).
    """

    layer: str
    variant: str
    seed: int
    units: Tuple[int, ...]
    rows: int


@dataclass
class SweepPlan:
    """A checked sweep: what :mod:`lucent_dgn.sweeps.work` needs to render any work item."""

    model: Source
    generator: Optional[Source]
    layers: Dict[str, LayerPlan]
    variants: Dict[str, Dict[str, Any]]
    seeds: List[int]
    batch: Dict[str, int]
    threads: int
    device: str
    input_shape: Tuple[int, ...]
    identity: Dict[str, Any] = field(default_factory=dict)

    def keys(self) -> List[Tuple[str, str, int, int]]:
        """Every (layer, variant, seed, unit), in the dataset's canonical order."""
        return [(layer.name, v, s, u) for layer in self.layers.values() for v in self.variants
                for s in self.seeds for u in layer.units]

    def items(self, todo: Sequence[Tuple[str, str, int, int]]) -> List[WorkItem]:
        """Work items covering the keys in ``todo`` (any order): groups of up to ``batch`` units."""
        groups: Dict[Tuple[str, str, int], List[int]] = {}
        for layer, variant, seed, unit in todo:
            groups.setdefault((layer, variant, seed), []).append(unit)
        out = []
        for (layer, variant, seed), units in groups.items():
            units, b = sorted(units), self.batch[variant]
            out += [WorkItem(layer, variant, seed, tuple(units[i:i + b]), b) for i in range(0, len(units), b)]
        return out
