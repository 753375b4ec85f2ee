"""Run the benchmarks of items 1-12, print every ratio next to its target, write ``out/results.json``.

Usage::

    python benchmarks/run.py --quick            # < 10 minutes on 2 CPU cores
    python benchmarks/run.py                    # more rounds, batch-8 image ops, DGN batching
    python benchmarks/run.py --only loop,lucent # a subset (loop, lucent, bdpy, lbfgs, ops, memory, batch, threads2,
                                                # invert, search, startup, sweep)

Primary numbers use one torch thread and the process's CPU time (see ``_timing``); the ``threads2``
part repeats the batch-1 pixel rows of items 1 and 2 with two threads on wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from _report import Row, format_table, skipped  # noqa: E402

PARTS = ("loop", "lucent", "bdpy", "lbfgs", "ops", "batch", "threads2", "memory", "invert", "search", "startup",
         "sweep")


def _machine() -> Dict[str, object]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name, module in (("torchvision", "torchvision"), ("numpy", "numpy"), ("scipy", "scipy"),
                         ("torch-lucent", "lucent"), ("kornia", "kornia"), ("bdpy", "bdpy")):
        try:
            versions[name] = getattr(__import__(module), "__version__", "?")
        except Exception:  # noqa: BLE001 - report what is missing, do not fail
            versions[name] = None
    for name in [n for n, v in versions.items() if v in (None, "?")]:
        try:
            from importlib.metadata import version
            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - not installed
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "versions": versions,
            "load_average_start": os.getloadavg()}


def _part(name: str) -> Callable:
    import importlib
    module = {"threads2": "bench_loop"}.get(name, f"bench_{name}")
    return importlib.import_module(module).run


def _run_part(name: str, quick: bool, log) -> List[Row]:
    threads = 2 if name == "threads2" else 1
    torch.set_num_threads(threads)
    try:
        rows = _part(name)(quick, threads, log=log)
        for r in rows if threads > 1 else ():
            r.key, r.what = f"{r.key}.t{threads}", f"{r.what} [{threads} threads]"
        return rows
    except Exception as err:  # noqa: BLE001 - one failing part must not lose the others
        traceback.print_exc()
        return [skipped(0, f"{name}.error", f"part '{name}'", f"failed: {type(err).__name__}: {err}")]
    finally:
        torch.set_num_threads(1)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few rounds; finishes in under 10 minutes on 2 cores")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    ap.add_argument("--out", default=str(HERE / "out" / "results.json"), help="JSON output path")
    args = ap.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)

    machine = _machine()
    log(f"{machine['cpu']}, {machine['cores']} cores, torch {torch.__version__}, load {machine['load_average_start']}")
    rows: List[Row] = []
    for name in parts:
        log(f"part {name}")
        rows += _run_part(name, args.quick, log)
    machine["load_average_end"] = os.getloadavg()
    elapsed = time.perf_counter() - t0
    rows.sort(key=lambda r: (r.item if r.item else 99))
    print()
    print(format_table(rows))
    missed = [r for r in rows if r.ok is False]
    print(f"\n{sum(r.ok is True for r in rows)} targets met, {len(missed)} missed, "
          f"{sum(r.ok is None for r in rows)} report-only/skipped; {elapsed:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"mode": "quick" if args.quick else "full", "parts": parts, "elapsed_s": elapsed,
                               "machine": machine, "rows": [r.as_dict() for r in rows]}, indent=1, default=str))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
