"""Items 1 and 2: the render loop's per-step cost against the bare forward+backward, and truncation.

Model: BVLC AlexNet (random weights, 227 px). Objectives: ``masked_units`` on fc8 unit 0 or on
the centre unit of conv1 channel 0. Pixel: ``PixelImage(227)``; DGN: ``DGNImage`` over the random
DeePSiM fc6 generator, centre crop 256 -> 227. Optimizer: ``MomentumGD`` with decay 0 (item 1:
no image operations) or with ``Jitter(32)`` + decay 0.01 + blur sigma 2.5 every step (item 1's
cnnpref row). Bare baselines: :mod:`_pipelines`. Item 1 pairs every render step with one bare
step (O B O B ..., :func:`_pipelines.paired_render`), so both see the same machine load.
"""
from __future__ import annotations

from typing import Dict, List

import lucent_dgn as ld
from _pipelines import (bare_dgn, bare_pixel, bvlc_alexnet, centre_mask, generator, our_render, paired_render,
                        prefix)
from _report import Row, row
from _timing import details, interleave, ratio

__all__ = ["run"]

FC8, CONV1 = (1000,), (96, 55, 55)


def _objective(layer: str):
    shape = FC8 if layer == "fc8" else CONV1
    return ld.masked_units(layer, ld.unit_mask(shape, 0))


def _pixel_variants(net, batch: int, steps: int, with_ops: bool) -> Dict[str, object]:
    """Each variant is one render paired step by step with its bare baseline (O B O B ...)."""
    def make_param():
        return ld.PixelImage(227, batch=batch, seed=0)

    def plain():
        return ld.MomentumGD(decay=0.0)

    def cnnpref_ops():
        return ld.MomentumGD(decay=0.01, blur_sigma=2.5)

    def jitter():
        return [ld.Jitter(32)]

    def fc8():
        return bare_pixel(net, centre_mask(FC8), batch, steps=steps)

    def conv1():
        return bare_pixel(prefix(net, "conv1"), centre_mask(CONV1), batch, steps=steps)

    v = {"fc8": paired_render(net, _objective("fc8"), make_param, plain, fc8(), steps,
                              names=("ours fc8", "bare fc8")),
         "conv1": paired_render(net, _objective("conv1"), make_param, plain, conv1(), steps,
                                names=("ours conv1", "bare conv1 (truncated)"))}
    if with_ops:
        v["fc8 ops"] = paired_render(net, _objective("fc8"), make_param, cnnpref_ops, fc8(), steps, jitter,
                                     names=("ours fc8 + jitter/decay/blur", "bare fc8 (ops pair)"))
        v["conv1 ops"] = paired_render(net, _objective("conv1"), make_param, cnnpref_ops, conv1(), steps, jitter,
                                       names=("ours conv1 + jitter/decay/blur", "bare conv1 (ops pair)"))
    return v


def pixel_rows(net, batch: int, steps: int, rounds: int, threads: int, clock: str, with_ops: bool) -> List[Row]:
    """Item 1 (pixel, with and without image ops) and item 2 (pixel) at one batch size."""
    res = interleave(_pixel_variants(net, batch, steps, with_ops), rounds)
    kw = dict(clock=clock, threads=threads)
    b = f"b{batch}"
    rows = [
        row(1, f"1.pixel.fc8.{b}", f"loop overhead, pixel fc8, batch {batch}: ours / bare",
            ratio(res["ours fc8"], res["bare fc8"], clock), "<= 1.05",
            **kw, **details(res, "ours fc8", "bare fc8")),
        row(1, f"1.pixel.conv1.{b}", f"loop overhead, pixel conv1, batch {batch}: ours / bare truncated",
            ratio(res["ours conv1"], res["bare conv1 (truncated)"], clock), "",
            **kw, **details(res, "ours conv1", "bare conv1 (truncated)")),
        row(2, f"2.pixel.{b}", f"truncation, pixel, batch {batch}: ours conv1 / ours fc8",
            ratio(res["ours conv1"], res["ours fc8"], clock), "<= 0.20" if batch == 1 else "<= 0.25", **kw),
        row(2, f"2.pixel.bare.{b}", f"truncation limit, batch {batch}: bare conv1 truncated / bare fc8",
            ratio(res["bare conv1 (truncated)"], res["bare fc8"], clock), "", **kw),
    ]
    if with_ops:
        rows += [
            row(1, f"1.ops.fc8.{b}", f"jitter+decay+blur every step, fc8, batch {batch}: ours / bare",
                ratio(res["ours fc8 + jitter/decay/blur"], res["bare fc8 (ops pair)"], clock), "<= 1.06",
                **kw, **details(res, "ours fc8 + jitter/decay/blur", "bare fc8 (ops pair)")),
            row(1, f"1.ops.conv1.{b}", f"jitter+decay+blur every step, conv1, batch {batch}: ours / bare truncated",
                ratio(res["ours conv1 + jitter/decay/blur"], res["bare conv1 (ops pair)"], clock), "<= 1.20",
                **kw, **details(res, "ours conv1 + jitter/decay/blur", "bare conv1 (ops pair)")),
        ]
    return rows


def dgn_rows(net, gen, batch: int, steps: int, rounds: int, threads: int, clock: str, with_conv1: bool) -> List[Row]:
    """Item 1 (DGN) and item 2 (DGN conv1 / DGN fc8) at one batch size."""
    def make_param():
        return ld.DGNImage(gen, batch=batch, input_size=227, seed=0)

    def plain():
        return ld.MomentumGD(decay=0.0)

    variants = {"fc8": paired_render(net, _objective("fc8"), make_param, plain,
                                     bare_dgn(gen, net, centre_mask(FC8), batch, steps=steps), steps,
                                     names=("ours DGN fc8", "bare DGN fc8"))}
    if with_conv1:
        variants["conv1"] = our_render(net, _objective("conv1"), make_param, plain, steps)
    res = interleave(variants, rounds)
    kw = dict(clock=clock, threads=threads)
    rows = [row(1, f"1.dgn.fc8.b{batch}", f"loop overhead, DGN fc8, batch {batch}: ours / bare",
                ratio(res["ours DGN fc8"], res["bare DGN fc8"], clock), "<= 1.05",
                **kw, **details(res, "ours DGN fc8", "bare DGN fc8"))]
    if with_conv1:
        rows.append(row(2, f"2.dgn.b{batch}", f"truncation, DGN, batch {batch}: ours DGN conv1 / ours DGN fc8",
                        ratio(res["conv1"], res["ours DGN fc8"], clock), "<= 0.60",
                        **kw, **details(res, "conv1")))
    return rows


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    """All rows of items 1 and 2 at ``threads`` torch threads (1: CPU-time ratios; 2: wall time)."""
    clock = "cpu" if threads == 1 else "wall"
    net = bvlc_alexnet()
    rows = []
    log("  pixel, batch 1")
    rows += pixel_rows(net, 1, steps=4, rounds=5 if quick else 9, threads=threads, clock=clock, with_ops=True)
    if threads > 1 and quick:
        return rows
    log("  pixel, batch 8")
    rows += pixel_rows(net, 8, steps=3, rounds=3 if quick else 5, threads=threads, clock=clock, with_ops=not quick)
    gen = generator()
    log("  DGN, batch 1")
    rows += dgn_rows(net, gen, 1, steps=4, rounds=4 if quick else 7, threads=threads, clock=clock, with_conv1=True)
    log("  DGN, batch 8")
    rows += dgn_rows(net, gen, 8, steps=3, rounds=2 if quick else 4, threads=threads, clock=clock,
                     with_conv1=not quick)
    return rows
