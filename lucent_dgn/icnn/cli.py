"""``lucent-dgn invert``: reconstruct an image from its CNN features (or from stored features)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict

from ..errors import ConfigError, describe

__all__ = ["add_invert_arguments", "invert_command"]


def add_invert_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``invert`` options on ``parser``."""
    from .presets import ICNN_VARIANTS
    parser.add_argument("image", help="an image file (resized to the model's input size), or a .npz file of "
                                      "target features (one array per layer, as lucent_dgn.save_features writes)")
    parser.add_argument("--layers", nargs="+", default=None,
                        help="layers whose features are matched (required for an image; default for .npz: all)")
    parser.add_argument("--variant", default="icnn_dgn_gd", choices=tuple(ICNN_VARIANTS))
    parser.add_argument("--model", default="fashion", help="fashion (shipped), bvlc_alexnet, or a torchvision name")
    parser.add_argument("--weights", default=None, help="weights file of the model")
    parser.add_argument("--generator", default="fashion", help="generator for the DGN variants")
    parser.add_argument("--generator-weights", default=None, help="weights file of the generator")
    parser.add_argument("--code-bounds", default="auto",
                        help="DGN code bounds: 'auto' (the generator's mean + 3 std when it stores code statistics, "
                             "as icnn's act_range/3x; else icnn's [0, 100]), 'icnn' ([0, 100]), or an act_range file "
                             "of upper bounds (lower 0)")
    parser.add_argument("--layer-weights", default="inverse_norm", choices=("inverse_norm", "equal"),
                        help="inverse_norm: 1/||target||^2 normalised (icnn's scripts); equal: 1/L (bdpy's default)")
    parser.add_argument("--metric", default="mse", choices=("mse", "inner", "corr"))
    parser.add_argument("--space", default=None, choices=("caffe", "gray", "unit"),
                        help="pixel variants: where the image is stored and decayed (default caffe, icnn's net space)")
    parser.add_argument("--steps", type=int, default=None, help="iterations (GD) or L-BFGS iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for small nets)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _code_bounds(spec: str, generator: Any) -> Dict[str, Any]:
    if spec == "icnn":
        return {"lower": 0.0, "upper": 100.0}
    if spec == "auto":
        if int(getattr(generator, "code_count", 0) or 0) > 0 and hasattr(generator, "code_bounds"):
            lower, upper = generator.code_bounds(k=3.0)
            return {"lower": lower, "upper": upper}
        return {"lower": 0.0, "upper": 100.0}
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(describe("--code-bounds", "'auto', 'icnn' or an existing act_range file", spec))
    return {"lower": 0.0, "upper": str(path)}


def invert_command(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    import numpy as np
    import torch

    from .._io import ensure_writable_dir, save_json, save_npy
    from ..cli import _check_model_name, _check_run_args, load_generator_by_name, load_model_by_name
    from ..cnnpref.presets import CNNPREF_SIZE
    from ..layers import resolve_layer
    from ..recipes import get_variant
    from ..runs import versions
    from ..viz import save_png
    from .presets import ICNN_VARIANTS, invert
    from .targets import features_of, load_features, model_input_space, read_image

    _check_run_args(args)
    _check_model_name(args.model)
    source = Path(args.image)
    is_features = source.suffix == ".npz"
    if not is_features and not args.layers:
        raise ConfigError(describe("--layers", "one or more layer names when IMAGE is an image", None,
                                   "For example --layers relu3 or --layers conv1 conv2 relu3."))
    if not source.is_file():
        raise ConfigError(describe("IMAGE", "an existing image or .npz file", str(source)))
    out = ensure_writable_dir(args.out, "--out")  # fail before any work
    torch.set_num_threads(args.threads)
    model = load_model_by_name(args.model, args.weights).to(args.device)
    generator = None
    options: Dict[str, Any] = {"layer_weights": args.layer_weights, "metric": args.metric}
    if get_variant(args.variant).needs_generator:
        generator = load_generator_by_name(args.generator, args.generator_weights).to(args.device)
        options.update(_code_bounds(args.code_bounds, generator))
    elif args.space is not None:
        options["space"] = args.space
    if args.steps is not None:
        options["maxiter" if "maxiter" in ICNN_VARIANTS[args.variant]["defaults"] else "iter_n"] = args.steps
    original = None
    if is_features:
        targets = load_features(source, layers=args.layers)
    else:
        for layer in args.layers:
            resolve_layer(model, layer, arg="--layers")
        size = int(getattr(model, "input_size", None) or CNNPREF_SIZE)
        options["input_size" if generator is not None else "image_size"] = size
        original = read_image(source, size)
        targets = features_of(model, original, args.layers)
    start = time.perf_counter()
    result = invert(model, targets, args.variant, generator, seed=args.seed, progress=not args.quiet, **options)
    seconds = time.perf_counter() - start
    files = []
    for i, image in enumerate(result.images):
        stem = "reconstruction" if len(result.images) == 1 else f"reconstruction_{i:03d}"
        save_png(out / f"{stem}.png", image, mode="clip")
        save_npy(out / f"{stem}.npy", image)
        files.append(f"{stem}.png")
    record: Dict[str, Any] = {"variant": args.variant, "model": args.model, "generator": args.generator if generator
                              is not None else None, "source": str(source), "layers": list(targets), "seed": args.seed,
                              "options": {k: v for k, v in options.items() if not isinstance(v, torch.Tensor)},
                              "files": files, "loss_history": result.loss_history, "seconds": round(seconds, 3),
                              "steps": result.steps, "n_evals": result.n_evals, "versions": versions()}
    record["final_layer_losses"] = {key.split(":", 1)[1]: np.asarray(values).tolist()
                                    for key, values in result.activations.items() if key.startswith("feature_match:")}
    if original is not None:
        save_png(out / "original.png", original)
        space = model_input_space(model)
        rgb = space.to_rgb01(torch.as_tensor(result.model_input)).mean(1).flatten().numpy()
        record["pixel_correlation"] = float(np.corrcoef(rgb, original.mean(-1).flatten() / 255.0)[0, 1])
    save_json(out / "settings.json", record)
    print(f"wrote {', '.join(files)} and settings.json to {out} ({args.variant}, {result.steps} steps, "
          f"{seconds:.1f} s)")
    return 0

