"""Item 12: sweep throughput -- units per second with 1 and 2 workers (process pool, Ray), and Ray's
per-unit cost against the process pool, on the shipped Fashion-MNIST classifier and generator.

Workload: DGN-GD (the variant with the most work per step) on units of ``conv2``, 2 rows per
render, ``STEPS`` steps, one torch thread per worker. Every backend gets the same work items; the
units' bytes are the same on all of them (tests/test_sweeps.py), so only time differs.

* **Throughput** (units/s) is measured in the steady state: from the moment every worker has
  handed back its first item (model loaded, process warm) to the last result. Start-up (spawning
  processes, loading the model) is reported separately; on a cluster it is paid once per sweep.
* **Ray / pool per unit** compares 2 Ray actors with 2 pool processes on a 20-unit sweep, whole
  calls (start-up of the workers included; the Ray session itself is started once, as a cluster
  would be), and in the steady state.

Wall time with one torch thread per worker: the workers are separate processes, so CPU time of
this process means nothing here. The load average of the machine is recorded with every row.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Dict, List, Sequence, Tuple

from _report import Row, row, skipped

__all__ = ["run"]

STEPS = 60
BATCH = 2


def _timed(backend, config, items) -> Tuple[float, List[Tuple[float, int]]]:
    t0 = time.perf_counter()
    stamps = [(time.perf_counter() - t0, len(r.outputs)) for r in backend.run(config, items)]
    return time.perf_counter() - t0, stamps


def _steady_rate(stamps: Sequence[Tuple[float, int]], workers: int) -> float:
    """Units per second after each worker's first item."""
    start = stamps[workers - 1][0]
    units = sum(n for _, n in stamps[workers:])
    return units / max(stamps[-1][0] - start, 1e-9)


def _measure(name: str, make, config, items, workers: int, log) -> Dict[str, float]:
    load0 = os.getloadavg()[0]
    total, stamps = _timed(make(workers), config, items)
    units = sum(n for _, n in stamps)
    out = {"units": units, "total_s": total, "startup_s": stamps[workers - 1][0], "load_start": load0,
           "load_end": os.getloadavg()[0], "units_per_s": _steady_rate(stamps, workers),
           "per_unit_total_s": total / units}
    log(f"    {name} x{workers}: {out['units_per_s']:.2f} units/s steady, {total:.1f} s total "
        f"(first results after {out['startup_s']:.1f} s), load {load0:.1f} -> {out['load_end']:.1f}")
    return out


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    from lucent_dgn.sweeps.backends import ProcessPool
    from lucent_dgn.sweeps.core import plan_sweep, worker_config
    n_units = 24 if quick else 48
    options = {"dgn_gd": {"iter_n": STEPS, "init": "stats"}}
    plan, *_ = plan_sweep("fashion", "conv2", f"0:{n_units}", options, generator="fashion", batch_size=BATCH)
    config = worker_config(plan)
    items = plan.items([k for k in plan.keys()])
    rows: List[Row] = []
    results = {}
    log(f"  {n_units} units of conv2, DGN-GD {STEPS} steps, {BATCH} rows per render, {len(items)} work items")
    for workers in (1, 2):
        results[("pool", workers)] = _measure("process pool", ProcessPool, config, items, workers, log)
    try:
        import ray
        from lucent_dgn.sweeps.ray_backend import RayBackend
    except ImportError:
        ray = None
        rows.append(skipped(12, "12.ray", "Ray backend", "ray is not installed"))
    if ray is not None:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        try:
            for workers in (1, 2):
                results[("ray", workers)] = _measure("ray", lambda w: RayBackend("auto", w), config, items, workers,
                                                     log)
            twenty = plan.items([k for k in plan.keys()][:20])
            results[("pool20", 2)] = _measure("process pool, 20 units", ProcessPool, config, twenty, 2, log)
            results[("ray20", 2)] = _measure("ray, 20 units", lambda w: RayBackend("auto", w), config, twenty, 2, log)
        finally:
            ray.shutdown()
    for name in ("pool", "ray"):
        if (name, 2) not in results:
            continue
        one, two = results[(name, 1)], results[(name, 2)]
        label = {"pool": "process pool", "ray": "Ray"}[name]
        for w, r in ((1, one), (2, two)):
            rows.append(row(12, f"12.{name}.w{w}", f"sweep throughput, {label}, {w} worker(s) (units/s, steady)",
                            r["units_per_s"], clock="wall", **r))
        rows.append(row(12, f"12.{name}.scaling", f"sweep throughput, {label}: 2 workers / 1 worker",
                        two["units_per_s"] / one["units_per_s"], ">= 1.6", clock="wall",
                        load=[one["load_start"], two["load_end"]]))
    if ("ray20", 2) in results:
        ray20, pool20 = results[("ray20", 2)], results[("pool20", 2)]
        rows.append(row(12, "12.ray.cost20", "20-unit sweep, 2 workers: Ray / process pool, per unit (whole call)",
                        ray20["per_unit_total_s"] / pool20["per_unit_total_s"], "<= 1.15", clock="wall",
                        ray=ray20, pool=pool20))
        rows.append(row(12, "12.ray.cost20.steady", "20-unit sweep, 2 workers: Ray / process pool, per unit (steady)",
                        pool20["units_per_s"] / ray20["units_per_s"], "", clock="wall"))
    return rows
