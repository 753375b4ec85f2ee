"""Item 9: quality of feature inversion (icnn) on shipped Fashion-MNIST test images.

50 test images (0-49 by default) are reconstructed from the shipped classifier's ``relu3``
features (256-d, the layer the shipped generator inverts), all in one batch per variant, with
``lucent_dgn.icnn.fashion_settings`` (icnn's defaults adapted to 28 px grey images). Reported per
variant:

* ``ident``: pairwise identification accuracy (Shen et al. 2019): for every reconstruction i and
  every other test image j != i, whether the pixel-wise Pearson correlation of the reconstruction
  with its own original exceeds that with image j; the fraction over all 50 x 49 pairs (chance 0.5);
* ``agree``: the fraction of reconstructions the classifier assigns to the class it assigns to
  the original image (``label``: to the true label; the classifier is right on ``label`` of the
  originals);
* ``judge``: the same agreement for an independently trained network (an MLP, other seed), which
  did not produce the features;
* ``corr``: the mean correlation of a reconstruction with its original;
* ``cpu_s``: CPU seconds per image (one thread, batch of 50; ``time.process_time``).

Targets: DGN gradient descent >= 0.95 identification and >= 0.90 agreement. Needs the
Fashion-MNIST test set (Debian package ``dataset-fashion-mnist``); rows are skipped without it.

    OMP_NUM_THREADS=1 python benchmarks/bench_invert.py [--start 0] [--n 50] [--variants ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import Row, format_table, row, skipped  # noqa: E402

__all__ = ["run", "measure", "pairwise_identification"]

LAYER = "relu3"
GD_VARIANTS = ("icnn_gd", "icnn_dgn_gd")
ALL_VARIANTS = ("icnn_gd", "icnn_lbfgs", "icnn_dgn_gd", "icnn_dgn_lbfgs")
TARGETS = {"icnn_dgn_gd": {"ident": ">= 0.95", "agree": ">= 0.90"}}


def pairwise_identification(reconstructions: np.ndarray, originals: np.ndarray) -> float:
    """Shen et al.'s pairwise identification accuracy over all ordered pairs (i, j != i).

    Args:
        reconstructions, originals: (N, ...) images, row i of one belonging to row i of the other.

    Returns:
        the fraction of pairs where corr(rec_i, orig_i) > corr(rec_i, orig_j); 0.5 is chance.
    """
    n = len(reconstructions)
    r = reconstructions.reshape(n, -1).astype(np.float64)
    o = originals.reshape(n, -1).astype(np.float64)
    corr = np.corrcoef(r, o)[:n, n:]  # corr[i, j] = corr(rec_i, orig_j)
    own = np.diag(corr)[:, None]
    off = ~np.eye(n, dtype=bool)
    return float((own > corr)[off].mean())


def measure(variants: Sequence[str], start: int = 0, n: int = 50, steps: int = None, log=print) -> Dict[str, Dict]:
    """Reconstruct test images ``start .. start + n - 1`` with each variant; the metrics per variant."""
    import lucent_dgn as ld
    from lucent_dgn.datasets import FashionMNIST
    from lucent_dgn.generators.small import fashion_generator
    from lucent_dgn.icnn import fashion_settings
    from lucent_dgn.models.fashion import fashion_classifier, fashion_judge

    model, judge, gen = fashion_classifier(), fashion_judge(), fashion_generator()
    test = FashionMNIST(train=False)
    images, labels = test.get_batch(list(range(start, start + n)))
    targets = ld.features_of(model, images, [LAYER])
    settings = fashion_settings(gen, steps)
    with torch.no_grad():
        predicted, judged = model(images).argmax(1), judge(images).argmax(1)
    out: Dict[str, Dict] = {"originals": {"label": float((predicted == labels).float().mean()),
                                          "judge_label": float((judged == labels).float().mean())}}
    for variant in variants:
        needs_gen = ld.recipes.get_variant(variant).needs_generator
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = ld.invert(model, targets, variant, gen if needs_gen else None, seed=0, progress=False,
                           **settings[variant])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rec = torch.from_numpy(result.model_input)
        with torch.no_grad():
            p, pj = model(rec).argmax(1), judge(rec.clamp(0, 1)).argmax(1)
        own = [np.corrcoef(rec[i].flatten(), images[i].flatten())[0, 1] for i in range(n)]
        out[variant] = {
            "ident": pairwise_identification(rec.numpy(), images.numpy()),
            "agree": float((p == predicted).float().mean()), "label": float((p == labels).float().mean()),
            "judge": float((pj == judged).float().mean()), "corr": float(np.mean(own)),
            "cpu_s": cpu / n, "wall_s": wall / n, "steps": result.steps, "n_evals": result.n_evals,
            "loss_first_last": [float(result.loss_history[0]), float(result.loss_history[-1])],
        }
        log(f"  {variant:15s} ident {out[variant]['ident']:.3f}  agree {out[variant]['agree']:.2f}  "
            f"cpu {out[variant]['cpu_s']:.3f} s/image")
    return out


def _rows(metrics: Dict[str, Dict], threads: int) -> List[Row]:
    rows: List[Row] = []
    for variant, m in metrics.items():
        if variant == "originals":
            continue
        goal = TARGETS.get(variant, {})
        detail = {k: m[k] for k in ("label", "judge", "corr", "steps", "n_evals", "wall_s")}
        rows.append(row(9, f"9.{variant}.ident", f"icnn {variant}: pairwise identification (relu3, 50 images)",
                        m["ident"], goal.get("ident", ""), clock="-", threads=threads, **detail))
        rows.append(row(9, f"9.{variant}.agree", f"icnn {variant}: classifier agrees with the original's class",
                        m["agree"], goal.get("agree", ""), clock="-", threads=threads))
        rows.append(row(9, f"9.{variant}.cpu", f"icnn {variant}: CPU seconds per image (batch of 50)",
                        m["cpu_s"], "", clock="cpu", threads=threads))
    return rows


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    """Rows of item 9 (GD variants in quick mode, all four otherwise); skipped without the data."""
    from lucent_dgn.datasets import fashion_mnist_available
    if not fashion_mnist_available():
        return [skipped(9, "9.invert", "icnn feature inversion quality (all rows)",
                        "the Fashion-MNIST test set is not installed (dataset-fashion-mnist)")]
    return _rows(measure(GD_VARIANTS if quick else ALL_VARIANTS, log=log), threads)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=int, default=0, help="first test image (default 0)")
    ap.add_argument("--n", type=int, default=50, help="number of test images (default 50)")
    ap.add_argument("--steps", type=int, default=None, help="override every variant's iterations")
    ap.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS), choices=ALL_VARIANTS)
    ap.add_argument("--out", default=str(HERE / "out" / "invert.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    metrics = measure(args.variants, args.start, args.n, args.steps)
    print()
    print(f"| variant | pairwise identification | agrees with the classifier on the original | true label | "
          f"judge agrees | correlation | CPU s / image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant in args.variants:
        m = metrics[variant]
        print(f"| {variant} | {m['ident']:.1%} | {m['agree']:.0%} | {m['label']:.0%} | {m['judge']:.0%} | "
              f"{m['corr']:.2f} | {m['cpu_s']:.2f} |")
    o = metrics["originals"]
    print(f"| original images | 100% | — | {o['label']:.0%} | — | 1.00 | — |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"start": args.start, "n": args.n, "layer": LAYER, "load_average": os.getloadavg(),
                               "torch_threads": torch.get_num_threads(), "metrics": metrics}, indent=1))
    print(f"\nresults written to {out}")
    if metrics and all(r.ok is not False for r in _rows(metrics, 1)):
        return 0
    print(format_table([r for r in _rows(metrics, 1) if r.ok is False]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
