"""Quality of the four variants on the shipped Fashion-MNIST pair, judged by an independent network.

For each variant, the preferred images of the 10 output units are rendered with several seeds
(the shipped classifier's own render settings, ``lucent_dgn.models.fashion_settings``). Reported per variant:

* ``logit``: the target unit's final activation (pre-softmax logit of the visualised classifier);
* ``judge``: the fraction of images that the *independent* judge (an MLP trained separately,
  different architecture and seed) assigns to the target class;
* ``nn-dist``: mean distance, in the judge's penultimate feature space (``relu2``, 128-d),
  from each image to its nearest real test image of the target class, divided by the same
  quantity for held-out real images (real vs real = 1.0; lower is closer to real images);
* ``seconds``: render time for all images of the variant (1 thread).

Needs the Fashion-MNIST test set (Debian package ``dataset-fashion-mnist``).

    python benchmarks/quality.py [--seeds 3] [--steps N]   # prints the README table, writes out/quality.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lucent_dgn.datasets import FashionMNIST
from lucent_dgn.models import fashion_settings
from lucent_dgn.generators.small import fashion_generator
from lucent_dgn.models.fashion import fashion_classifier, fashion_judge
from lucent_dgn.render.hooks import ActivationCapture
from lucent_dgn.runs import render_units

OUT = Path(__file__).resolve().parent / "out"


def judge_features(judge, images: torch.Tensor) -> tuple:
    with torch.no_grad(), ActivationCapture(judge, ["relu2"], stop_early=False) as cap:
        logits = cap.run(images)
        return cap.features["relu2"].clone(), logits.argmax(1)


def nearest_distance(feats: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor) -> float:
    out = []
    for f, y in zip(feats, labels):
        pool = real[real_labels == y]
        out.append(torch.cdist(f[None], pool).min().item())
    return float(np.mean(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, gen, judge = fashion_classifier(), fashion_generator(), fashion_judge()
    test = FashionMNIST(train=False)
    images, labels = test.get_batch(list(range(len(test))))
    real_feats, _ = judge_features(judge, images[:5000])
    held_feats, _ = judge_features(judge, images[5000:5300])
    baseline = nearest_distance(held_feats, labels[5000:5300], real_feats, labels[:5000])
    units = list(range(10))
    rows = {}
    for variant, settings in fashion_settings(gen, args.steps).items():
        logits, judged, dists, seconds = [], [], [], 0.0
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            r = render_units(model, "fc2", units, variant, generator=gen, settings=settings, channels=1, seed=seed,
                             progress=False)
            seconds += time.perf_counter() - t0
            x = torch.from_numpy(r.model_input).clamp(0, 1)
            feats, pred = judge_features(judge, x)
            logits.append(r.final_activation)
            judged.append((pred.numpy() == np.array(units)).mean())
            dists.append(nearest_distance(feats, torch.tensor(units), real_feats, labels[:5000]) / baseline)
        rows[variant] = {"logit": float(np.mean(logits)), "judge": float(np.mean(judged)),
                         "nn_dist": float(np.mean(dists)), "seconds": round(seconds, 1), "images": 10 * args.seeds}
    with torch.no_grad():
        out = model(images[:2000])
        real_logit = float(out.gather(1, labels[:2000, None]).mean())
    OUT.mkdir(exist_ok=True)
    record = {"variants": rows, "real_images_mean_target_logit": real_logit, "seeds": args.seeds,
              "baseline_nn_dist": baseline}
    (OUT / "quality.json").write_text(json.dumps(record, indent=2))
    header = "| variant | target logit | judge agrees | NN distance to real (real = 1.0) | render time, 10 images |"
    print(header)
    print("|---|---:|---:|---:|---:|")
    for v, row in rows.items():
        print(f"| {v} | {row['logit']:.1f} | {row['judge']:.0%} | {row['nn_dist']:.2f} | "
              f"{row['seconds'] / args.seeds:.1f} s |")
    print(f"| real test images | {real_logit:.1f} | — | 1.00 | — |")


if __name__ == "__main__":
    main()
