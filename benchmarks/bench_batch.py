"""Item 8: 16 units, one batch of 16 vs 16 renders of one image (images per second; report only).

Pixel images of BVLC AlexNet fc8 units 0-15 (one per-item mask each), MomentumGD, the same number
of steps per image. Time = whole ``render`` calls (set-up, validation and final passes included),
so images/s is what a user sees. Full mode adds the DGN parameterization.
"""
from __future__ import annotations

from typing import List

import lucent_dgn as ld
from _pipelines import bvlc_alexnet, generator
from _report import Row, row
from _timing import StepClock, interleave

__all__ = ["run"]

UNITS = 16


def _param(gen, batch: int):
    if gen is None:
        return ld.PixelImage(227, batch=batch, seed=0)
    return ld.DGNImage(gen, batch=batch, input_size=227, seed=0)


def _batched(net, gen, steps: int):
    objective = ld.masked_units("fc8", ld.unit_masks((1000,), list(range(UNITS))))

    def run() -> StepClock:
        clock = StepClock()
        clock.tick()
        ld.render(net, objective, _param(gen, UNITS), ld.MomentumGD(decay=0.01), steps, progress=False)
        clock.tick()
        return clock
    return run


def _one_by_one(net, gen, steps: int):
    objectives = [ld.masked_units("fc8", ld.unit_mask((1000,), u)) for u in range(UNITS)]

    def run() -> StepClock:
        clock = StepClock()
        clock.tick()
        for objective in objectives:
            ld.render(net, objective, _param(gen, 1), ld.MomentumGD(decay=0.01), steps, progress=False)
        clock.tick()
        return clock
    return run


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    clock = "cpu" if threads == 1 else "wall"
    net = bvlc_alexnet()
    steps = 4 if quick else 10
    spaces = [("pixel", None)] + ([] if quick else [("DGN", generator())])
    rows = []
    for space, gen in spaces:
        log(f"  16 units, {space}: batch of 16 vs one by one")
        res = interleave({"batch 16": _batched(net, gen, steps), "16 x batch 1": _one_by_one(net, gen, steps)},
                         rounds=1 if quick else 2, warmup=0)
        ips = {k: UNITS / (v.get(clock).median_ms / 1e3) for k, v in res.items()}
        rows.append(row(8, f"8.{space}.batch16", f"{space}, 16 fc8 units, {steps} steps: images/s, batch of 16",
                        ips["batch 16"], "", clock=clock, threads=threads))
        rows.append(row(8, f"8.{space}.one_by_one", f"{space}, 16 fc8 units, {steps} steps: images/s, one by one",
                        ips["16 x batch 1"], "", clock=clock, threads=threads))
        rows.append(row(8, f"8.{space}.speedup", f"{space}: batching speed-up (images/s ratio)",
                        ips["batch 16"] / ips["16 x batch 1"], "", clock=clock, threads=threads))
    return rows
