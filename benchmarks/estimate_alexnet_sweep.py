"""Paper estimate: time to sweep every unit of BVLC AlexNet (10,568) with cnnpref's four variants.

    python benchmarks/estimate_alexnet_sweep.py            # prints the README's table

Nothing is rendered; the script combines measured per-image costs with stated assumptions.

Measured (``/work/shared/docs/perf_anchors.md`` section 1, reproduced by ``benchmarks/run.py``
item 1 within 1-3 %): one CPU thread of a shared 2-core AMD EPYC, BVLC AlexNet (Caffe layout,
227 px), forward + backward to the input, frozen weights, ms per image.

Counted: forward FLOPs per layer of ``lucent_dgn.models.bvlc_alexnet`` and of the DeePSiM fc6
generator, with ``torch.utils.flop_counter`` (a step that stops at layer l costs the FLOPs up to l).

Assumed (say so when quoting the result):

* Steps: cnnpref's example settings -- "lower" for conv layers (GD 200 steps, L-BFGS 50,
  DGN-GD 200, DGN-L-BFGS 200 iterations), "higher" for fc layers (GD 200, L-BFGS 500, DGN-GD 200,
  DGN-L-BFGS 500) -- and every L-BFGS run going to its iteration limit (an upper bound: runs stop
  earlier when they converge).
* Evaluations per L-BFGS iteration: 1.43 (pixel) and 1.89 (DGN), measured on the demo's sweep
  of the shipped Fashion-MNIST model (line searches on AlexNet may differ).
* GD variants run batched (``batch_size``); L-BFGS variants one unit per render (the sweep does
  not batch them, see lucent_dgn.sweeps.spec.BATCHED_VARIANTS).
* GPU (not measured here: no GPU was available): an A100-class card in FP32 (TF32 off, for
  reproducible bytes) sustaining 40 % of its 19.5 TFLOP/s peak in batched steps (7.8 TFLOP/s),
  and batch-1 evaluations bound by kernel launches: 2.5 ms per pixel evaluation and 4.5 ms per
  DGN evaluation (about 100 kernel launches at ~10 us each plus compute at low occupancy).
* Workers do not share a GPU or a core; the driver's writes (~0.7 MB per unit) are not limiting.
"""
from __future__ import annotations

from typing import Dict, Tuple

#: Units per layer of BVLC AlexNet (conv: channels, rendered at their centre unit).
UNITS = {"conv1": 96, "conv2": 256, "conv3": 384, "conv4": 384, "conv5": 256, "fc6": 4096, "fc7": 4096,
         "fc8": 1000}
#: Cumulative forward GFLOP up to each layer (flop_counter on lucent_dgn.models.bvlc_alexnet, 227 px).
CUM_GFLOP = {"conv1": 0.211, "conv2": 0.659, "conv3": 0.958, "conv4": 1.182, "conv5": 1.332, "fc6": 1.407,
             "fc7": 1.441, "fc8": 1.449}
GEN_GFLOP = 2.013  # DeePSiM fc6 generator forward, 4096 -> 3x256x256
#: Measured CPU ms per image (1 thread): (batched b8 per image, batch 1).
CPU_MS = {"conv1": (13.4, 14.2), "conv5": (55.4, 59.2), "fc8": (64.7, 82.2)}
CPU_DGN_FC8_MS = (126.8, 156.6)  # generator + crop + AlexNet to fc8
CPU_GEN_MS = (51.5, 74.9)  # generator + crop alone
#: Iterations per unit: (conv layers, fc layers).
STEPS = {"gd": (200, 200), "lbfgs": (50, 500), "dgn_gd": (200, 200), "dgn_lbfgs": (200, 500)}
EVALS_PER_STEP = {"gd": 1.0, "lbfgs": 1.43, "dgn_gd": 1.0, "dgn_lbfgs": 1.89}
BATCHED = {"gd": True, "lbfgs": False, "dgn_gd": True, "dgn_lbfgs": False}
GPU_TFLOPS_BATCHED = 19.5 * 0.40
GPU_MS_B1 = {"pixel": 2.5, "dgn": 4.5}


def _interp(layer: str, anchors: Dict[str, float]) -> float:
    """CPU cost of a step that stops at ``layer``: measured anchors, interpolated on cumulative FLOPs."""
    if layer in anchors:
        return anchors[layer]
    lo, hi = ("conv1", "conv5") if layer.startswith("conv") else ("conv5", "fc8")
    t = (CUM_GFLOP[layer] - CUM_GFLOP[lo]) / (CUM_GFLOP[hi] - CUM_GFLOP[lo])
    return anchors[lo] + t * (anchors[hi] - anchors[lo])


def cpu_ms(variant: str, layer: str) -> float:
    """CPU ms per image-evaluation (1 thread)."""
    b = 0 if BATCHED[variant] else 1
    alex = _interp(layer, {k: v[b] for k, v in CPU_MS.items()})
    if not variant.startswith("dgn"):
        return alex
    scale = (CPU_DGN_FC8_MS[b] - CPU_GEN_MS[b]) / CPU_MS["fc8"][b]  # AlexNet's share inside a DGN step
    return CPU_GEN_MS[b] + alex * scale


def gpu_ms(variant: str, layer: str) -> float:
    """Assumed GPU ms per image-evaluation."""
    if not BATCHED[variant]:
        return GPU_MS_B1["dgn" if variant.startswith("dgn") else "pixel"]
    gflop = 2 * CUM_GFLOP[layer] + (2 * GEN_GFLOP if variant.startswith("dgn") else 0.0)  # forward + backward
    return gflop / GPU_TFLOPS_BATCHED  # GFLOP / (TFLOP/s) = ms


def estimate() -> Dict[str, Tuple[float, float, float]]:
    """{variant: (image-evaluations, CPU core-hours, GPU-hours)}."""
    out = {}
    for variant in STEPS:
        evals = cpu = gpu = 0.0
        for layer, n in UNITS.items():
            steps = STEPS[variant][0 if layer.startswith("conv") else 1]
            e = n * steps * EVALS_PER_STEP[variant]
            evals += e
            cpu += e * cpu_ms(variant, layer) / 3.6e6
            gpu += e * gpu_ms(variant, layer) / 3.6e6
        out[variant] = (evals, cpu, gpu)
    return out


def main() -> None:
    rows = estimate()
    total = [sum(r[i] for r in rows.values()) for i in range(3)]
    print("| variant | evaluations (images x steps) | CPU core-hours (1 thread) | GPU-hours (A100 class, assumed) |")
    print("|---|---:|---:|---:|")
    for variant, (e, c, g) in list(rows.items()) + [("all four", tuple(total))]:
        print(f"| {variant} | {e / 1e6:.1f} M | {c:,.0f} | {g:.1f} |")
    print()
    print("| workers N | CPU cores: wall time | GPUs: wall time |")
    print("|---:|---:|---:|")
    for n in (1, 8, 32, 128):
        print(f"| {n} | {total[1] / n:,.1f} h | {total[2] / n * 60:,.0f} min |")


if __name__ == "__main__":
    main()
