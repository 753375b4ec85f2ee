"""A sweep's results on disk: files per unit, an append-only index, resume and equality.

Layout of a sweep directory::

    sweep.json                      the sweep's identity (settings), written before any work
    index.jsonl                     one JSON object per finished unit (see ROW_COLUMNS)
    units/<layer>/<variant>/seed<s>/<unit:05d>.png   cnnpref's PNG: normalise(clip_extreme(img, 0.04))
    units/<layer>/<variant>/seed<s>/<unit:05d>.npy   (H, W, 3) float32 RGB, cnnpref's 0-255 scale, unclipped
    examples/topk.json, examples/images/<index>.png  top-k dataset examples (when asked for)
    atlas/                          the static site (``lucent-dgn atlas``), not part of the dataset

**Why JSON Lines and not Parquet.** The index grows one unit at a time while a sweep runs, and
a killed run must leave it readable. A Parquet file cannot be appended to: it would need one
part file per unit (10,000+ files) or a rewrite per unit. A JSON line is appended with one
``write`` by the driver, the only writer; a line cut short by a crash is recognised (no final
newline) and dropped on the next run. pandas reads the table with :func:`load_index`
(``load_index(d).to_parquet(...)`` converts it when pyarrow is installed).

**Order of writes.** A unit's PNG and ``.npy`` are written atomically (temporary file + rename,
:mod:`lucent_dgn._io`) before its row is appended, so a row always points to complete files.
A rerun drops rows whose files are missing, removes temporary files left by a killed run, and
redoes every unit without a row. When a run ends the index is rewritten in the canonical order
(layer, variant, seed, unit), so a completed sweep's index does not depend on completion order.

**What "the same dataset" means.** Every file byte for byte (``sweep.json``, PNGs, ``.npy``,
examples) and every index row, except the columns in :data:`RUN_COLUMNS` (``wall_time_s``,
``worker``), which say how a particular run went. :func:`dataset_digest` hashes exactly that.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._io import atomic_write_bytes, save_npy
from ..errors import ConfigError, describe

__all__ = ["SETTINGS_FILE", "INDEX_FILE", "ROW_COLUMNS", "RUN_COLUMNS", "SweepDir", "read_rows", "load_index",
           "dataset_digest", "unit_key", "unit_stem", "make_row"]

SETTINGS_FILE = "sweep.json"
INDEX_FILE = "index.jsonl"
LOCK_FILE = ".lock"
ATLAS_DIR = "atlas"
#: Columns of an index row, in order.
ROW_COLUMNS = ("key", "layer", "unit", "variant", "seed", "status", "error", "final_activation",
               "activation_initial", "activation_max", "activation_curve", "curve_steps", "steps", "evaluations",
               "batch", "png", "npy", "examples", "versions", "wall_time_s", "worker")
#: Columns that describe one run (timing, which worker) and are excluded from dataset equality.
RUN_COLUMNS = ("wall_time_s", "worker")
#: Points kept of each activation history in the index (the full curve has one per step).
CURVE_POINTS = 64

Key = Tuple[str, str, int, int]


def unit_key(layer: str, variant: str, seed: int, unit: int) -> str:
    """The ``key`` column: ``"<layer>/<variant>/seed<seed>/<unit>"``."""
    return f"{layer}/{variant}/seed{seed}/{unit}"


def unit_stem(layer: str, variant: str, seed: int, unit: int) -> str:
    """Relative path of a unit's files without suffix."""
    return f"units/{layer}/{variant}/seed{seed}/{unit:05d}"


def _finite(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else float(value)


def make_row(layer: str, variant: str, seed: int, output: Any, batch: int, versions: Dict[str, str], worker: str,
             examples: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The index row of one :class:`~lucent_dgn.sweeps.work.UnitOutput` (files not written here)."""
    ok = output.error is None
    stem = unit_stem(layer, variant, seed, output.unit)
    hist = output.history if ok else np.zeros(0, np.float32)
    picks = (np.arange(len(hist)) if len(hist) <= CURVE_POINTS
             else np.unique(np.linspace(0, len(hist) - 1, CURVE_POINTS).round().astype(int)))
    row = {
        "key": unit_key(layer, variant, seed, output.unit), "layer": layer, "unit": int(output.unit),
        "variant": variant, "seed": int(seed), "status": "ok" if ok else "failed", "error": output.error,
        "final_activation": _finite(output.final_activation),
        "activation_initial": _finite(float(hist[0])) if len(hist) else None,
        "activation_max": _finite(float(np.max(hist))) if len(hist) else None,
        "activation_curve": [_finite(float(hist[i])) for i in picks], "curve_steps": [int(i) for i in picks],
        "steps": int(output.steps), "evaluations": int(output.evaluations), "batch": int(batch),
        "png": f"{stem}.png" if ok else None, "npy": f"{stem}.npy" if ok else None,
        "examples": examples, "versions": dict(versions),
        "wall_time_s": round(float(output.wall_time_s), 4), "worker": worker,
    }
    return {k: row[k] for k in ROW_COLUMNS}


def _dumps(row: Dict[str, Any]) -> bytes:
    return (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _parse(data: bytes) -> Tuple[List[Dict[str, Any]], bool]:
    """Rows of an index file's bytes, and whether anything had to be dropped (a cut-off line)."""
    rows, dropped = [], False
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:  # no final newline: the last line was cut off by a crash
        lines.pop()
        dropped = True
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            dropped = True
    return rows, dropped


def read_rows(root: Any) -> List[Dict[str, Any]]:
    """Every complete row of a sweep's index (a cut-off last line is ignored); [] without an index."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        return []
    return _parse(path.read_bytes())[0]


def load_index(root: Any):
    """The index of a sweep directory as a pandas DataFrame (one row per unit, :data:`ROW_COLUMNS`)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is part of the sweep extra
        raise ImportError("load_index needs pandas: pip install 'lucent-dgn[sweep]'") from None
    rows = read_rows(root)
    return pd.DataFrame.from_records(rows, columns=list(ROW_COLUMNS))


def _dataset_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in (ATLAS_DIR, INDEX_FILE, LOCK_FILE):
            continue
        yield path


def dataset_digest(root: Any) -> str:
    """sha256 of a sweep's dataset: every file except the index, the atlas and the lock file, plus
    the index rows without :data:`RUN_COLUMNS`, sorted by key. Equal digests = the same dataset."""
    root = Path(root)
    h = hashlib.sha256()
    for path in _dataset_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    for row in sorted(read_rows(root), key=lambda r: r["key"]):
        h.update(json.dumps({k: v for k, v in row.items() if k not in RUN_COLUMNS}, sort_keys=True).encode())
    return h.hexdigest()


def _differences(old: Any, new: Any, path: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [path or "(all)"]


class SweepDir:
    """The sweep directory of one run: identity check, lock, index and unit files.

    Args:
        root: the output directory.
        identity: the sweep's identity (``sweep.json``'s content).
    """

    def __init__(self, root: Any, identity: Dict[str, Any]) -> None:
        self.root = Path(root)
        self.identity = identity
        self._lock_fd: Optional[int] = None
        self._index_fd: Optional[int] = None

    # -- checks before any work -------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail unless the directory exists and is writable, or can be created.

        Raises:
            ConfigError: naming the directory (and the part of its path that is not writable).
        """
        root = self.root
        probe = root
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            rule = "a writable directory" if probe == root else "a directory that can be created"
            why = "" if probe == root else f"'{probe}' is not a writable directory."
            raise ConfigError(describe("out_dir", rule, f"'{root}'", why, raw=True))

    def check(self) -> bool:
        """Fail if the directory cannot hold this sweep; True when it already holds it (a rerun).

        Raises:
            ConfigError: not creatable/writable; it holds a different sweep; or other files.
        """
        self.check_writable()
        root = self.root
        settings = root / SETTINGS_FILE
        if settings.is_file():
            try:
                old = json.loads(settings.read_text())
            except ValueError:
                old = None
            diff = _differences(old, json.loads(json.dumps(self.identity)))
            if diff:
                shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
                raise ConfigError(describe("out_dir", "a new directory or one holding this same sweep",
                                           f"'{root}', which holds a different sweep (settings differ in: {shown})",
                                           "Use another output directory, or delete this one to start over.",
                                           raw=True))
            return True
        if root.is_dir() and any(p.name != LOCK_FILE for p in root.iterdir()):
            raise ConfigError(describe("out_dir", "a new or empty directory, or one holding this same sweep",
                                       f"'{root}', which holds other files and no {SETTINGS_FILE}", raw=True))
        return False

    # -- open / close ------------------------------------------------------------------------
    def open(self) -> Dict[str, Dict[str, Any]]:
        """Create the directory, take its lock, write ``sweep.json``, clean up after a killed run.

        Returns:
            the rows already finished, by key (rows whose files are missing are dropped).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            settings = self.root / SETTINGS_FILE
            if not settings.is_file():
                text = (json.dumps(self.identity, indent=1, sort_keys=True) + "\n").encode()
                atomic_write_bytes(settings, lambda fh: fh.write(text))
            for part in self.root.rglob(".*.part"):  # temporary files of a killed run
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
            return self._load_index()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        import fcntl
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(describe("out_dir", "a directory no other running sweep is writing to",
                                       f"'{self.root}'", "Wait for the other run to finish.", raw=True)) from None
        self._lock_fd = fd

    def _load_index(self) -> Dict[str, Dict[str, Any]]:
        path = self.root / INDEX_FILE
        rows, dropped = _parse(path.read_bytes()) if path.is_file() else ([], False)
        done: Dict[str, Dict[str, Any]] = {}
        for row in rows:
            files = [row.get("png"), row.get("npy")] if row.get("status") == "ok" else []
            if row.get("key") in done or not all(f and (self.root / f).is_file() for f in files):
                dropped = True
                continue
            done[row["key"]] = row
        if dropped:
            self.rewrite(list(done.values()))
        self._index_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return done

    def close(self) -> None:
        """Release the index and the lock."""
        for name in ("_index_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    # -- writing -----------------------------------------------------------------------------
    def write_unit(self, row: Dict[str, Any], image: Optional[np.ndarray]) -> None:
        """Write a unit's PNG and ``.npy`` (when it succeeded), then append its row."""
        from ..viz import save_png
        if row["status"] == "ok":
            save_png(self.root / row["png"], image)
            save_npy(self.root / row["npy"], image * np.float32(255.0))
        self.append([row])

    def append(self, rows: Iterable[Dict[str, Any]]) -> None:
        """Append rows to the index (one ``write`` call)."""
        data = b"".join(_dumps(r) for r in rows)
        if data:
            os.write(self._index_fd, data)

    def rewrite(self, rows: Sequence[Dict[str, Any]]) -> None:
        """Replace the index with ``rows`` atomically (later appends go to the new file)."""
        data = b"".join(_dumps(r) for r in rows)
        path = self.root / INDEX_FILE
        atomic_write_bytes(path, lambda fh: fh.write(data))
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def finish(self, order: Sequence[str]) -> None:
        """Rewrite the index in canonical ``order`` (keys) when it is not in that order already."""
        path = self.root / INDEX_FILE
        rows = _parse(path.read_bytes())[0] if path.is_file() else []
        rank = {k: i for i, k in enumerate(order)}
        ordered = sorted(rows, key=lambda r: rank.get(r["key"], len(rank)))
        if [r["key"] for r in ordered] != [r["key"] for r in rows]:
            self.rewrite(ordered)

    # -- dataset examples --------------------------------------------------------------------
    def read_json(self, rel: str) -> Optional[Any]:
        path = self.root / rel
        return json.loads(path.read_text()) if path.is_file() else None

    def write_json(self, rel: str, data: Any) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n").encode()
        atomic_write_bytes(path, lambda fh: fh.write(text))
