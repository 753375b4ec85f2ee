"""Item 5: L-BFGS. Optimizer overhead per evaluation, per-evaluation cost in a render, agreement with
SciPy's L-BFGS-B, and forward+backward evaluations to reach 90 % of the best activation vs GD.

Overhead: both L-BFGS-B implementations minimise a bounded, ill-conditioned separable quadratic on
one 3x227x227 image (a closure that costs a few passes over the image), tolerances 0 so every
iteration runs. Overhead per evaluation = time per evaluation minus the closure's own time (timed
alone in the same rounds); the ratio divides it by a bare AlexNet fc8 forward+backward measured in
the same rounds. "Evaluations to 90 %": per problem, ``best`` is the highest activation either
optimizer reached within the budget, ``a0`` the activation of the shared start; an optimizer
reaches 90 % at the first step with ``a - a0 >= 0.9 (best - a0)``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch

import lucent_dgn as ld
from _pipelines import bare_pixel, bvlc_alexnet, centre_mask, generator
from _report import Row, row
from _timing import StepClock, details, interleave, ratio, time_calls

__all__ = ["run"]

SHAPES = {"fc8": (1000,), "conv1": (96, 55, 55), "conv3": (384, 13, 13)}


class _QuadParam:
    """The parameterization seen by the optimizers: one bounded (1, 3, 227, 227) image."""

    def __init__(self, x0: torch.Tensor) -> None:
        self.variable = x0.clone().requires_grad_(True)
        self.batch_size = x0.shape[0]

    def tensors(self):
        return [self.variable]

    def bounds(self):
        return torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 255.0)

    @torch.no_grad()
    def project_(self) -> None:
        self.variable.clamp_(0.0, 255.0)


class QuadProblem:
    """``Problem`` of 0.5 sum h (x - c)^2: h log-uniform in [0.01, 100], c partly outside [0, 255]."""

    jitter_offsets = None

    def __init__(self, steps: int, batch: int = 1, clock: Optional[StepClock] = None) -> None:
        gen = torch.Generator().manual_seed(0)
        shape = (batch, 3, 227, 227)
        self.h = torch.exp(torch.empty(shape).uniform_(np.log(0.01), np.log(100.0), generator=gen))
        self.c = torch.empty(shape).uniform_(-60.0, 320.0, generator=gen)
        self.param = _QuadParam(torch.rand(shape, generator=gen) * 255.0)
        self.n_steps, self.n_evals, self.clock = steps, 0, clock
        self.last_item_losses = None

    def evaluate(self) -> torch.Tensor:
        var = self.param.variable
        with torch.no_grad():
            d = var - self.c
            hd = d.mul_(self.h)
            items = (hd * (var - self.c)).flatten(1).sum(1).mul_(0.5).double()
            var.grad = hd
        self.n_evals += 1
        self.last_item_losses = items
        return items.sum()

    def begin_step(self, t: int) -> None:
        pass

    def end_step(self, t: int) -> bool:
        if self.clock is not None:
            self.clock.tick(self.n_evals)
        return t + 1 >= self.n_steps


def _opt_run(make, steps: int, batch: int = 1):
    def run() -> StepClock:
        clock = StepClock()
        make().run(QuadProblem(steps, batch, clock))
        return clock
    return run


def _closure_run(batch: int = 1, calls: int = 8):
    problem = QuadProblem(1, batch)
    return lambda: time_calls(problem.evaluate, calls)


def overhead_rows(net, quick: bool, threads: int) -> List[Row]:
    """Optimizer overhead per evaluation (quadratic closure) vs a bare fc8 fwd+bwd, batch 1."""
    clock = "cpu" if threads == 1 else "wall"
    steps = 8 if quick else 15
    res = interleave({
        "bare fc8": bare_pixel(net, centre_mask(SHAPES["fc8"]), 1, steps=4),
        "closure": _closure_run(),
        "LBFGSB (torch)": _opt_run(lambda: ld.LBFGSB(history_size=10, ftol=0.0, gtol=0.0), steps),
        "ScipyLBFGSB": _opt_run(lambda: ld.ScipyLBFGSB(m=10, ftol=0.0, gtol=0.0), steps),
    }, 3 if quick else 5, per_eval=True)
    closure = res["closure"].get(clock).median_ms
    bare = res["bare fc8"].get(clock).median_ms
    torch_oh = res["LBFGSB (torch)"].get(clock).median_ms - closure
    scipy_oh = res["ScipyLBFGSB"].get(clock).median_ms - closure
    kw = dict(clock=clock, threads=threads, closure_ms=closure, bare_fc8_ms=bare, torch_overhead_ms=torch_oh,
              scipy_overhead_ms=scipy_oh)
    return [
        row(5, "5.overhead.torch", "L-BFGS-B (torch) overhead per evaluation / bare fc8 fwd+bwd, 3x227x227",
            torch_oh / bare, "<= 0.10", **kw),
        row(5, "5.overhead.scipy", "SciPy L-BFGS-B overhead per evaluation / bare fc8 fwd+bwd (reference)",
            scipy_oh / bare, "", **kw),
        row(5, "5.overhead.speedup", "SciPy overhead / torch overhead per evaluation", scipy_oh / max(torch_oh, 1e-9),
            ">= 10", **kw),
    ]


def render_rows(net, quick: bool, threads: int) -> List[Row]:
    """Time per evaluation of LBFGSB inside a render vs the bare fwd+bwd (fc8 and truncated conv1),
    each render paired step by step with its bare loop (:func:`_pipelines.paired_render`)."""
    from _pipelines import paired_render, prefix
    clock = "cpu" if threads == 1 else "wall"

    def variant(layer: str, bare_net):
        objective = ld.masked_units(layer, ld.unit_mask(SHAPES[layer], 0))
        return paired_render(net, objective, lambda: ld.PixelImage(227, seed=0), ld.LBFGSB,
                             bare_pixel(bare_net, centre_mask(SHAPES[layer]), 1, steps=4), 5,
                             names=(f"LBFGSB {layer}", f"bare {layer}"), per_eval=True)
    res = interleave({"fc8": variant("fc8", net), "conv1": variant("conv1", prefix(net, "conv1"))},
                     3 if quick else 5)
    kw = dict(clock=clock, threads=threads)
    return [
        row(5, "5.render.fc8", "L-BFGS-B in render: time per evaluation / bare fc8 fwd+bwd",
            ratio(res["LBFGSB fc8"], res["bare fc8"], clock), "<= 1.10",
            **kw, **details(res, "LBFGSB fc8", "bare fc8")),
        row(5, "5.render.conv1", "L-BFGS-B in render: time per evaluation / bare truncated conv1 fwd+bwd",
            ratio(res["LBFGSB conv1"], res["bare conv1"], clock), "<= 1.30",
            **kw, **details(res, "LBFGSB conv1", "bare conv1")),
    ]


def _trace(net, gen, layer: str, opt, steps: int, max_evals: Optional[int] = None
           ) -> Tuple[List[int], List[float], float]:
    """(evaluations, activation) after every step of one render, and the final activation."""
    evals: List[int] = []
    acts: List[float] = []

    def cb(info):
        evals.append(info.n_evals)
        acts.append(float(np.mean(info.activation)))
        return max_evals is not None and info.n_evals >= max_evals
    param = (ld.PixelImage(227, seed=0) if gen is None else
             ld.DGNImage(gen, input_size=227, seed=0, clip_initial=True))
    objective = ld.masked_units(layer, ld.unit_mask(SHAPES[layer], 0))
    result = ld.render(net, objective, param, opt, steps, progress=False, callbacks=[cb], seed=0)
    return evals, acts, float(result.final_activation.mean())


def _evals_to_90(evals: List[int], acts: List[float], a0: float, best: float) -> Optional[int]:
    for n, a in zip(evals, acts):
        if a - a0 >= 0.9 * (best - a0):
            return n
    return None


def convergence_rows(net, gen, quick: bool) -> List[Row]:
    """Evaluations to 90 % of the best activation (L-BFGS-B vs GD) and agreement with SciPy."""
    budget, iters = (12, 4) if quick else (40, 15)
    rows: List[Row] = []
    for space, g in (("pixel", None), ("DGN", gen)):
        for layer in ("fc8", "conv3"):
            gd = ld.MomentumGD() if g is None else ld.MomentumGD(decay=0.01)
            ev_l, ac_l, _ = _trace(net, g, layer, ld.LBFGSB(ftol=0.0, gtol=0.0), budget, max_evals=budget)
            ev_g, ac_g, _ = _trace(net, g, layer, gd, budget)
            a0 = ac_g[0]
            best = max(ac_l + ac_g)
            n_l, n_g = _evals_to_90(ev_l, ac_l, a0, best), _evals_to_90(ev_g, ac_g, a0, best)
            what = f"evaluations to 90% of best activation, {space} {layer}: L-BFGS-B / GD"
            value = (n_l or budget + 1) / (n_g or budget + 1)
            rows.append(row(5, f"5.evals90.{space}.{layer}", what, value, "", clock="-",
                            lbfgs_evals=n_l, gd_evals=n_g, budget=budget, best=best, start=a0,
                            lbfgs_best=max(ac_l), gd_best=max(ac_g)))
    for space, g in (("pixel", None), ("DGN", gen)):
        _, _, f_t = _trace(net, g, "fc8", ld.LBFGSB(ftol=0.0, gtol=0.0), iters)
        _, ac_s, f_s = _trace(net, g, "fc8", ld.ScipyLBFGSB(ftol=0.0, gtol=0.0), iters)
        shortfall = (f_s - f_t) / abs(f_s) if f_s else float("nan")
        rows.append(row(5, f"5.vs_scipy.{space}", f"final fc8 activation after {iters} iterations, {space}: "
                        "shortfall of torch L-BFGS-B vs SciPy, (scipy - torch) / |scipy|", shortfall, "<= 0.05",
                        clock="-", torch_final=f_t, scipy_final=f_s, start=ac_s[0] if ac_s else None))
    return rows


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    net = bvlc_alexnet()
    log("  optimizer overhead per evaluation")
    rows = overhead_rows(net, quick, threads)
    log("  L-BFGS-B per evaluation inside render")
    rows += render_rows(net, quick, threads)
    log("  evaluations to 90% of the best activation; agreement with SciPy")
    rows += convergence_rows(net, generator(), quick)
    return rows
