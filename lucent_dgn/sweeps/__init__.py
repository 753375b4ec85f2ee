"""Whole-layer sweeps: every unit of some layers, several variants and seeds, as a dataset.

>>> import lucent_dgn as ld
>>> summary = ld.sweep("fashion", ["conv1", "fc2"], variants=["gd", "dgn_gd"], generator="fashion",
...                    out_dir="fashion_sweep", workers=2)          # doctest: +SKIP
>>> ld.sweeps.load_index("fashion_sweep")                           # doctest: +SKIP

Modules: :mod:`.spec` (what a sweep is, checked before any work), :mod:`.work` (rendering one
work item), :mod:`.backends` (in-process, process pool), :mod:`.ray_backend` (Ray),
:mod:`.dataset` (files, index, resume, equality), :mod:`.examples` (top-k dataset examples),
:mod:`.presets` (recipe options per variant), :mod:`.core` (:func:`sweep`).
"""
from __future__ import annotations

from .core import SweepSummary, plan_sweep, sweep
from .dataset import RUN_COLUMNS, dataset_digest, load_index, read_rows
from .presets import variant_options
from .spec import Source, resolve_units

__all__ = ["sweep", "SweepSummary", "plan_sweep", "variant_options", "load_index", "read_rows", "dataset_digest",
           "RUN_COLUMNS", "Source", "resolve_units"]
