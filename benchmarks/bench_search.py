"""Item 11: gradient-free search against gradient renders over generator codes, on the shipped
Fashion-MNIST classifier and generator (``fashion_classifier()``, ``fashion_generator()``).

Targets: the 10 output units (``fc2``, one batch of 10) and 5 units of ``conv2`` (the centre unit of
channels 0, 13, 26, 39, 52; one batch of 5), each item an independent search. Methods:

* DGN-GD: ``MomentumGD(lr=(0.2, 0), momentum=0.9, decay=0.01)`` (the README's settings), 200 steps;
* DGN-L-BFGS-B: ``LBFGSB()`` (scaled first step), up to the same 200 evaluations (line searches
  included);
* CMA-ES (``CMAES(sigma0=0.5, margin=0.3)``, the tuned setting; the default ``margin=0.1`` is a row
  of its own), the XDream-style GA and random search (``popsize=40``), up to ``budget`` evaluations.

All start from the same codes per seed (``init="stats"`` clipped into ``code_bounds(k=1)``).
Every step records (evaluations, process CPU seconds, activation of the recorded point: the current
code for GD/L-BFGS-B, the best candidate so far for the searches). Scores are normalised per unit
and seed to the best final activation of all methods. Reported:

* the normalised score at 50, 200, 1000 and ``budget`` evaluations per item;
* evaluations to 90 % of the best (first step at or above ``a0 + 0.9 (best - a0)``, ``a0`` the start);
* the ratios of the targets: CMA-ES / random search at equal evaluations (>= 2), and CMA-ES's
  activation within 3x DGN-GD's CPU time / DGN-GD's final activation (>= 0.8).

    OMP_NUM_THREADS=1 python benchmarks/bench_search.py [--quick] [--seeds 3] [--budget 2000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lucent_dgn as ld  # noqa: E402
from lucent_dgn.generators.small import fashion_generator  # noqa: E402
from lucent_dgn.models.fashion import fashion_classifier  # noqa: E402

try:
    from _report import Row, format_table, row
except ImportError:  # run from elsewhere
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _report import Row, format_table, row

__all__ = ["run", "measure"]

CONV_CHANNELS = (0, 13, 26, 39, 52)
GRADIENT = ("DGN-GD", "DGN-L-BFGS-B")


def methods(budget: int, seed: int) -> Dict[str, Tuple[Callable, int]]:
    """name -> (optimizer factory, steps)."""
    return {
        "DGN-GD": (lambda: ld.MomentumGD(lr=(0.2, 0.0), momentum=0.9, decay=0.01), 200),
        "DGN-L-BFGS-B": (lambda: ld.LBFGSB(), 200),
        "CMA-ES": (lambda: ld.CMAES(sigma0=0.5, margin=0.3, seed=seed), budget),
        "CMA-ES default": (lambda: ld.CMAES(seed=seed), budget),
        "GA": (lambda: ld.GeneticSearch(popsize=40, mutation_size=0.3, init_size=0.5, seed=seed), budget),
        "random search": (lambda: ld.RandomSearch(popsize=40, seed=seed), budget),
    }


def targets() -> Dict[str, Tuple[str, torch.Tensor]]:
    fc = torch.zeros(10, 10)
    fc[range(10), range(10)] = 1
    conv = torch.zeros(5, 64, 14, 14)
    for i, c in enumerate(CONV_CHANNELS):
        conv[i, c, 7, 7] = 1
    return {"fc2": ("fc2", fc), "conv2": ("conv2", conv)}


def trace(model, G, layer: str, mask: torch.Tensor, make: Callable, steps: int, budget: int, seed: int):
    """(evals (T,), cpu seconds (T,), activations (T, N)) of one render."""
    lower, upper = G.code_bounds(1.0)
    param = ld.DGNImage(G, batch=mask.shape[0], init="stats", lower=lower, upper=upper, seed=seed, clip_initial=True)
    evals, cpu, acts = [], [], []

    def cb(info):
        evals.append(info.n_evals)
        cpu.append(time.process_time() - t0)
        acts.append(np.asarray(info.activation, dtype=np.float64).copy())
        return info.n_evals >= budget
    t0 = time.process_time()
    ld.render(model, ld.masked_units(layer, mask), param, make(), steps, progress=False, callbacks=[cb])
    return np.array(evals), np.array(cpu), np.stack(acts)


def at(tr, limit: float, axis: int = 0) -> np.ndarray:
    """Activations (N,) of the last step within ``limit`` evaluations (axis 0) or CPU seconds (axis 1)."""
    keys = tr[axis]
    idx = np.searchsorted(keys, limit, side="right") - 1
    return tr[2][max(idx, 0)] if idx >= 0 else np.full(tr[2].shape[1], np.nan)


def measure(seeds: int = 3, budget: int = 2000, log=print) -> Dict:
    torch.set_num_threads(1)
    model, G = fashion_classifier(), fashion_generator()
    out: Dict = {"runs": {}, "budget": budget, "seeds": seeds}
    for seed in range(seeds):
        for tname, (layer, mask) in targets().items():
            for name, (make, steps) in methods(budget, seed).items():
                tr = trace(model, G, layer, mask, make, steps, min(steps, budget) if name in GRADIENT else budget,
                           seed)
                out["runs"][(seed, tname, name)] = tr
                log(f"  seed {seed} {tname:5s} {name:15s}: {tr[0][-1]:5d} evals, {tr[1][-1]:6.1f} s CPU, "
                    f"final mean activation {tr[2][-1].mean():.2f}")
    return out


def summarise(data: Dict) -> Tuple[List[Row], str]:
    runs, budget = data["runs"], data["budget"]
    names = list(methods(budget, 0))
    keys = sorted({(s, t) for s, t, _ in runs})
    checkpoints = [b for b in (50, 200, 1000, budget) if b <= budget]
    norm: Dict[str, Dict[int, List[float]]] = {n: {b: [] for b in checkpoints} for n in names}
    to90: Dict[str, List[float]] = {n: [] for n in names}
    ratio_rs: Dict[int, List[float]] = {b: [] for b in checkpoints}
    gd_cpu, cma_vs_gd, cpu_at_budget = [], [], {n: [] for n in names}
    for s, t in keys:
        finals = np.stack([runs[(s, t, n)][2][-1] for n in names])  # (M, N)
        best = finals.max(0)
        a0 = runs[(s, t, "DGN-GD")][2][0]  # activation after the first step of GD ~ the start
        for n in names:
            tr = runs[(s, t, n)]
            cpu_at_budget[n].append(tr[1][-1])
            for b in checkpoints:
                norm[n][b].extend(at(tr, b) / best)
            for i in range(best.shape[0]):
                hit = np.flatnonzero(tr[2][:, i] >= a0[i] + 0.9 * (best[i] - a0[i]))
                to90[n].append(tr[0][hit[0]] if hit.size else np.nan)
        for b in checkpoints:
            ratio_rs[b].append(np.mean(at(runs[(s, t, "CMA-ES")], b) / best) /
                               np.mean(at(runs[(s, t, "random search")], b) / best))
        gd = runs[(s, t, "DGN-GD")]
        gd_cpu.append(gd[1][-1])
        cma = at(runs[(s, t, "CMA-ES")], 3 * gd[1][-1], axis=1)
        cma_vs_gd.append(np.mean(cma) / np.mean(gd[2][-1]))
    lines = ["| method | " + " | ".join(f"score at {b} evals" for b in checkpoints) +
             " | evals to 90 % (reached) | CPU s per run |", "|---|" + "---:|" * (len(checkpoints) + 2)]
    for n in names:
        cells = [f"{np.nanmean(norm[n][b]):.2f}" for b in checkpoints]
        reach = np.array(to90[n], dtype=float)
        ok = np.isfinite(reach)
        e90 = f"{np.median(reach[ok]):.0f} ({ok.mean():.0%})" if ok.any() else "— (0%)"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {e90} | {np.mean(cpu_at_budget[n]):.1f} |")
    table = "\n".join(lines)
    rows = []
    for b in checkpoints:
        if b >= 200:
            rows.append(row(11, f"11.cma_vs_random.{b}", f"CMA-ES / random search, normalised score at {b} evaluations",
                            float(np.mean(ratio_rs[b])), ">= 2", clock="-"))
    rows.append(row(11, "11.cma_vs_gd.cpu3x", "CMA-ES activation within 3x DGN-GD's CPU time / DGN-GD's final activation",
                    float(np.mean(cma_vs_gd)), ">= 0.8", clock="cpu", gd_cpu_s=float(np.mean(gd_cpu)),
                    per_run=[round(float(v), 3) for v in cma_vs_gd]))
    for n in ("DGN-GD", "DGN-L-BFGS-B", "CMA-ES"):
        reach = np.array(to90[n], dtype=float)
        rows.append(row(11, f"11.evals90.{n}", f"evaluations to 90% of the best, {n}: median over reached units "
                        f"({np.isfinite(reach).mean():.0%} reached)",
                        float(np.nanmedian(reach)) if np.isfinite(reach).any() else float("nan"), "", clock="-"))
    return rows, table


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    """For benchmarks/run.py: quick = 1 seed, 400 evaluations."""
    data = measure(seeds=1 if quick else 3, budget=400 if quick else 2000, log=log)
    rows, table = summarise(data)
    log("\n" + table)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, 400 evaluations")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=2000, help="evaluations per item of the searches")
    args = ap.parse_args()
    seeds, budget = (1, 400) if args.quick else (args.seeds, args.budget)
    t0 = time.perf_counter()
    data = measure(seeds, budget)
    rows, table = summarise(data)
    print(f"\nOMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch threads {torch.get_num_threads()}, "
          f"{seeds} seeds, budget {budget}, {time.perf_counter() - t0:.0f} s, load {os.getloadavg()}\n")
    print(table)
    print()
    print(format_table(rows))


if __name__ == "__main__":
    main()
