"""Re-create the shipped Fashion-MNIST files in ``lucent_dgn/assets/``.

Usage::

    OMP_NUM_THREADS=1 python -m lucent_dgn.training.make_assets [--out DIR] [--work-dir DIR]

Trains, with fixed seeds, the target classifier (:class:`~lucent_dgn.models.fashion.FashionCNN`),
the independent judge (:class:`~lucent_dgn.models.fashion.FashionMLP`) and the generator inverting
the classifier's ``relu3`` layer, then writes ``fashion_classifier.pt``, ``fashion_judge.pt``,
``fashion_generator.pt`` (float16 weights) and ``fashion_assets.json`` (sha256, sizes, test
accuracies, reconstruction MSE, settings, timings). The weight files hold no timings, so with the
same torch version and one CPU thread a rerun reproduces them byte for byte. Finished stages and the generator checkpoint
are kept in ``--work-dir`` so an interrupted run continues. Needs the Debian package
``dataset-fashion-mnist``. On one CPU thread this takes about 10-15 minutes.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from ..datasets import FashionMNIST, load_batch
from ..generators.small import SmallGenerator, load_generator
from ..models.fashion import FashionCNN, FashionMLP
from .._asset_io import ASSETS_DIR, load_asset, save_asset
from .._io import atomic_write_bytes
from ..render.hooks import ActivationCapture
from ..weights import file_digest
from .classifier import evaluate_classifier, train_classifier
from .generator import save_generator, train_generator

__all__ = ["SETTINGS", "TEST_SUBSET", "sha256", "reconstruction_mse", "make_assets", "main"]

log = logging.getLogger(__name__)

#: Fixed subset of the test split used for the numbers the tests check (first 1000 images).
TEST_SUBSET = range(1000)
SETTINGS: Dict[str, Dict[str, Any]] = {
    "classifier": {"seed": 0, "epochs": 6, "batch_size": 128, "lr": 3e-3, "flips": True,
                   "config": {"width": 32, "hidden": 256, "dropout": 0.5}},
    "judge": {"seed": 1, "epochs": 12, "batch_size": 128, "lr": 2e-3, "flips": True, "weight_decay": 1e-5,
              "config": {"hidden1": 256, "hidden2": 128, "dropout": 0.2}},
    "generator": {"seed": 2, "epochs": 1, "batch_size": 64, "layer": "relu3", "comparator_layers": ["pool1", "pool2"],
                  "pixel_weight": 1.0, "feature_weight": 0.05, "adversarial_weight": 0.005, "lr": 2e-4,
                  "generator_kwargs": {"width": 64, "hidden": 512, "output": "sigmoid"}},
}
INPUT_NOTE = ("images (N, 1, 28, 28) with values in [0, 1] (UnitSpace(1)); the classifiers standardise "
              "inside with mean 0.2860 and std 0.3530")


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return file_digest(path, "sha256")


@torch.no_grad()
def reconstruction_mse(generator: SmallGenerator, classifier: nn.Module, dataset, indices: Sequence[int],
                       layer: Optional[str] = None, batch_size: int = 500) -> float:
    """Mean squared error (0-1 scale) between images and ``generator(code(image))``."""
    layer = layer or generator.inverted_layer
    indices = list(indices)
    total = 0.0
    classifier.eval()
    for start in range(0, len(indices), batch_size):
        images = load_batch(dataset, indices[start:start + batch_size])[0]
        with ActivationCapture(classifier, [layer]) as cap:
            cap.run(images)
            codes = cap.features[layer]
        total += float(((generator(codes) - images) ** 2).sum())
    return total / (len(indices) * dataset[0][0].numel())


def _train_classifier_file(kind: str, cls: type, path: Path, train, progress: bool) -> float:
    if path.is_file():
        log.info("%s: reusing %s", kind, path)
        return 0.0
    cfg = SETTINGS[kind]
    start = time.time()
    torch.manual_seed(cfg["seed"])
    model = cls(**cfg["config"])
    history = train_classifier(model, train, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                               flips=cfg["flips"], weight_decay=cfg.get("weight_decay", 0.0), seed=cfg["seed"],
                               progress=progress)
    seconds = time.time() - start
    save_asset(model, path, cfg["config"], meta={"settings": cfg, "history": history, "input": INPUT_NOTE})
    return seconds


def _describe_file(path: Path) -> Dict[str, Any]:
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def make_assets(out: Path = ASSETS_DIR, work_dir: Path = Path("build/fashion_assets"), progress: bool = True,
                limit: Optional[int] = None) -> Dict[str, Any]:
    """Train everything and write the files to ``out``; returns the JSON summary written.

    Args:
        out: destination folder (default the package's ``assets``).
        work_dir: keeps finished stages and the generator checkpoint.
        progress: tqdm bars.
        limit: train on the first ``limit`` training images only (for quick trials).
    """
    out, work_dir = Path(out), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    train, test = FashionMNIST(train=True), FashionMNIST(train=False)
    if limit:
        train = train.subset(range(limit))
    seconds = {"classifier": _train_classifier_file("classifier", FashionCNN, work_dir / "fashion_classifier.pt",
                                                    train, progress),
               "judge": _train_classifier_file("judge", FashionMLP, work_dir / "fashion_judge.pt", train, progress)}
    classifier = load_asset(work_dir / "fashion_classifier.pt")
    gen_path, cfg = work_dir / "fashion_generator.pt", SETTINGS["generator"]
    start = time.time()
    if not gen_path.is_file():
        result = train_generator(classifier, cfg["layer"], train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                                 seed=cfg["seed"], checkpoint_dir=work_dir / "generator_checkpoint",
                                 comparator_layers=cfg["comparator_layers"], pixel_weight=cfg["pixel_weight"],
                                 feature_weight=cfg["feature_weight"], adversarial_weight=cfg["adversarial_weight"],
                                 lr=cfg["lr"], generator_kwargs=cfg["generator_kwargs"], checkpoint_every=200,
                                 progress=progress)
        result.generator.meta.update({"input": INPUT_NOTE, "classifier_file": "fashion_classifier.pt"})
        save_generator(result.generator, gen_path)
    seconds["generator"] = time.time() - start
    summary = _evaluate_and_copy(work_dir, out, test, seconds, limit)
    text = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
    atomic_write_bytes(out / "fashion_assets.json", lambda handle: handle.write(text))
    return summary


def _evaluate_and_copy(work_dir: Path, out: Path, test, seconds: Dict[str, float], limit: Optional[int]) -> Dict:
    out.mkdir(parents=True, exist_ok=True)
    classifier, judge = load_asset(work_dir / "fashion_classifier.pt"), load_asset(work_dir / "fashion_judge.pt")
    generator = load_generator(work_dir / "fashion_generator.pt")
    recon_all = reconstruction_mse(generator, classifier, test, range(len(test)))
    summary: Dict[str, Any] = {
        "input": INPUT_NOTE, "settings": SETTINGS, "train_limit": limit, "train_seconds": seconds,
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "classifier": {"arch": "FashionCNN", "params": sum(p.numel() for p in classifier.parameters()),
                       "test_accuracy": evaluate_classifier(classifier, test),
                       "test_subset_accuracy": evaluate_classifier(classifier, test, TEST_SUBSET)},
        "judge": {"arch": "FashionMLP", "params": sum(p.numel() for p in judge.parameters()),
                  "test_accuracy": evaluate_classifier(judge, test),
                  "test_subset_accuracy": evaluate_classifier(judge, test, TEST_SUBSET)},
        "generator": {"arch": "SmallGenerator", "layer": generator.inverted_layer,
                      "params": sum(p.numel() for p in generator.parameters()),
                      "test_reconstruction_mse": recon_all,
                      "test_subset_reconstruction_mse": reconstruction_mse(generator, classifier, test, TEST_SUBSET),
                      "dead_units": int((generator.code_max <= 0).sum()), "history": generator.meta.get("history")},
        "test_subset": "first 1000 images of the Fashion-MNIST test split",
    }
    for kind in ("classifier", "judge", "generator"):
        src, dst = work_dir / f"fashion_{kind}.pt", out / f"fashion_{kind}.pt"
        if src.resolve() != dst.resolve():
            data = src.read_bytes()
            atomic_write_bytes(dst, lambda handle: handle.write(data))
        summary[kind].update(_describe_file(dst))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (``python -m lucent_dgn.training.make_assets --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="destination folder (default: the package assets)")
    parser.add_argument("--work-dir", type=Path, default=Path("build/fashion_assets"),
                        help="keeps finished stages and the checkpoint (default: build/fashion_assets)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = make_assets(args.out, args.work_dir, progress=not args.no_progress, limit=args.limit)
    brief = {k: summary[k] for k in ("classifier", "judge", "generator", "train_seconds")}
    brief["generator"] = {k: v for k, v in brief["generator"].items() if k != "history"}
    print(json.dumps(brief, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
