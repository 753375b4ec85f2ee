"""Item 10: start-up of the command line, as a ratio to ``python -c "import torch"``.

Three commands run as fresh processes, interleaved round by round (forward order in even rounds,
reverse in odd ones) so that load from other jobs falls on all of them alike:

* ``python -c "import torch"`` -- the baseline every torch program pays;
* ``python -m lucent_dgn.cli --help``;
* ``python -m lucent_dgn.cli render --steps 0 ...`` -- an argument error (one line, status 2).

Wall time per process (start to exit), medians over rounds. Target: both ratios <= 1.5.
Run alone: ``python benchmarks/bench_startup.py [--rounds N]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from _report import Row, row

__all__ = ["run", "measure"]

ROOT = Path(__file__).resolve().parents[1]
COMMANDS: Dict[str, List[str]] = {
    "import torch": [sys.executable, "-c", "import torch"],
    "--help": [sys.executable, "-m", "lucent_dgn.cli", "--help"],
    "argument error": [sys.executable, "-m", "lucent_dgn.cli", "render", "--units", "0", "--steps", "0",
                       "--out", os.devnull + "-unused"],
}


def _env() -> Dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def measure(rounds: int) -> Dict[str, List[float]]:
    """Seconds per process for each command, ``rounds`` times each, interleaved."""
    env = _env()
    names = list(COMMANDS)
    for name in names:  # warm the file cache once
        subprocess.run(COMMANDS[name], env=env, capture_output=True)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            proc = subprocess.run(COMMANDS[name], env=env, capture_output=True, text=True)
            times[name].append(time.perf_counter() - t0)
            if name == "argument error" and proc.returncode != 2:
                raise RuntimeError(f"expected status 2 from {COMMANDS[name]}, got {proc.returncode}: {proc.stderr}")
    return times


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    """Rows for ``run.py``: the two ratios (target <= 1.5) and the baseline in seconds."""
    times = measure(5 if quick else 15)
    base = statistics.median(times["import torch"])
    rows = [row(10, "10.import_torch_s", "start-up: python -c 'import torch' (s)", base, clock="wall",
                samples=len(times["import torch"]))]
    for name, key in (("--help", "10.help"), ("argument error", "10.arg_error")):
        med = statistics.median(times[name])
        rows.append(row(10, key, f"start-up: lucent-dgn {name} / import torch", med / base, "<= 1.5", clock="wall",
                        median_s=med, baseline_s=base, samples=len(times[name])))
    log("startup: " + ", ".join(f"{n} {statistics.median(t):.2f} s" for n, t in times.items()))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="processes per command (default 9)")
    args = ap.parse_args()
    measured = measure(args.rounds)
    base_s = statistics.median(measured["import torch"])
    for cmd, samples in measured.items():
        med_s = statistics.median(samples)
        print(f"{cmd:16s} median {med_s:.3f} s  ratio {med_s / base_s:.2f}  (min {min(samples):.3f} s)")
