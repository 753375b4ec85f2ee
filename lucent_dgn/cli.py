"""``lucent-dgn`` command line: render, layers, convert-caffemodel, train-generator, demo, sweep, atlas.

Errors on bad arguments print one line (``lucent-dgn: error: ...`` or, for usage errors,
``lucent-dgn <command>: error: ...``) and exit with status 2; no traceback is shown.
``convert-caffemodel`` exits with status 1 when its input cannot be read or converted.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from .errors import ConfigError, LucentDGNError, describe
from .named import SHIPPED_MODELS, load_generator_by_name, load_model_by_name

__all__ = ["main", "load_model_by_name", "load_generator_by_name"]

VARIANT_NAMES = ("gd", "lbfgs", "dgn_gd", "dgn_lbfgs")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _check_model_name(name: str) -> None:
    """Fail on an unknown ``--model`` before anything is loaded."""
    from .models.zoo import available_models
    known = list(SHIPPED_MODELS) + available_models()
    if name not in known:
        import difflib
        close = difflib.get_close_matches(name, known, n=3)
        hint = ("Did you mean " + ", ".join(map(repr, close)) + "?") if close else \
            "Run `python -c 'import lucent_dgn.models as m; print(m.available_models())'` for the names."
        raise ConfigError(describe("--model", "'fashion', 'fashion-judge', 'bvlc_alexnet' or a torchvision "
                                   "classifier name", name, hint))


def _check_run_args(args: argparse.Namespace) -> None:
    """Check --threads, --steps and (for commands that have it) --device before any work."""
    import torch
    if args.threads < 1:
        raise ConfigError(describe("--threads", "a positive integer", args.threads))
    if args.steps is not None and args.steps <= 0:
        raise ConfigError(describe("--steps", "a positive integer", args.steps))
    if getattr(args, "device", None) is None:
        return
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise ConfigError(describe("--device", "a torch device such as 'cpu' or 'cuda:0'", args.device)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(describe("--device", "an available device", args.device, "No CUDA device is available; "
                                   "use --device cpu."))


def _units(text: str) -> List[int]:
    try:
        if ":" in text:
            start, stop, *step = (int(p) for p in text.split(":"))
            return list(range(start, stop, step[0] if step else 1))
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(describe("--units", "comma-separated integers or start:stop[:step]", text)) from None


def _cmd_render(args: argparse.Namespace) -> int:
    import torch
    from .cnnpref.presets import EXAMPLE_SETTINGS
    from .runs import render_units, save_units
    from ._io import ensure_writable_dir
    _check_run_args(args)
    units = _units(args.units)
    if not units:
        raise ConfigError(describe("--units", "at least one unit", args.units))
    _check_model_name(args.model)
    out = ensure_writable_dir(args.out, "--out")  # fail before any work
    torch.set_num_threads(args.threads)
    model = load_model_by_name(args.model, args.weights).to(args.device)
    generator = None
    if any(v.startswith("dgn") for v in args.variant):
        generator = load_generator_by_name(args.generator, args.generator_weights).to(args.device)
    channels = getattr(getattr(model, "input_space", None), "channels", 3)
    results = {}
    for variant in args.variant:
        settings = dict(EXAMPLE_SETTINGS.get((variant, args.preset), {})) if args.preset != "default" else {}
        if args.steps is not None:
            settings["maxiter" if "lbfgs" in variant else "iter_n"] = args.steps
        if args.unit_weight is not None:
            settings["weight"] = args.unit_weight
        results[variant] = render_units(model, args.layer, units, variant, generator=generator, settings=settings,
                                        seed=args.seed, channels=channels, progress=not args.quiet)
    record = save_units(out, results, args.layer, units, extra={"model": args.model, "generator": args.generator,
                                                                "seed": args.seed, "preset": args.preset})
    print(f"wrote {len(units) * len(results)} images, {record['grid']} and settings.json to {out}")
    return 0


def _cmd_examples(args: argparse.Namespace) -> int:
    import torch
    from .examples import run_examples
    from ._io import ensure_writable_dir
    _check_run_args(args)
    _check_model_name(args.model)
    out = ensure_writable_dir(args.out, "--out")  # fail before any work
    torch.set_num_threads(args.threads)
    model = load_model_by_name(args.model, args.weights)
    generator = load_generator_by_name(args.generator, args.generator_weights) if args.generator else None
    layer = args.layer or {"lower": "conv1", "higher": "fc8"}[args.kind]
    units = _units(args.units) if args.units else None
    record = run_examples(model, layer, args.kind, out, generator=generator, units=units, bounds_file=args.bounds_file,
                          steps=args.steps, seed=args.seed, progress=not args.quiet, mode=args.mode)
    print(f"wrote cnnpref's {args.kind}-layer examples to {out} in {record['mode']} mode ({record['mode_description']})")
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from .layers import layer_shapes, list_layers
    _check_model_name(args.model)
    model = load_model_by_name(args.model, args.weights)
    size = args.size or int(getattr(model, "input_size", 224))
    channels = getattr(getattr(model, "input_space", None), "channels", 3)
    names = list_layers(model)
    shapes = layer_shapes(model, names, (channels, size, size))
    for name in names:
        shape = shapes.get(name)
        print(f"{name:30s} {type(model.get_submodule(name)).__name__:22s} {shape if shape is not None else '-'}")
    return 0


def _cmd_convert(argv: Sequence[str]) -> int:
    from .convert import convert_caffemodel_cli
    return int(convert_caffemodel_cli(list(argv)))


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from .training.cli import train_generator_command
    return int(train_generator_command(args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(out_dir=args.out, steps=args.steps, seed=args.seed, imagenet=not args.no_imagenet,
             progress=not args.quiet, sweep=not args.no_sweep)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps import Source, sweep
    from .sweeps.presets import variant_options
    _check_model_name(args.model)
    from .recipes import get_variant
    needs_generator = any(get_variant(v).needs_generator for v in args.variants)
    generator = Source("generator", name=args.generator, weights=args.generator_weights) if needs_generator else None
    shipped = (load_generator_by_name(args.generator, args.generator_weights)
               if needs_generator and args.generator == "fashion" else None)
    options = variant_options(args.variants, args.preset, model_name=args.model, generator=shipped,
                              steps=args.steps, options_file=args.options)
    summary = sweep(Source("model", name=args.model, weights=args.weights), args.layers, args.units, options,
                    out_dir=args.out, seeds=args.seeds, generator=generator, batch_size=args.batch_size,
                    threads=args.threads, device=args.device, examples=args.examples, top_k=args.top_k,
                    workers=args.workers, ray=args.ray, retry_failed=args.retry_failed, progress=not args.quiet)
    print(f"{summary.rendered} units rendered ({summary.failed} failed), {summary.skipped} already done, "
          f"{summary.units} in the sweep; {summary.seconds:.1f} s on {summary.backend} x{summary.workers}; "
          f"dataset in {summary.out_dir}")
    if args.atlas:
        from .atlas import build_atlas
        print(f"atlas: {build_atlas(summary.out_dir).resolve().as_uri()}")
    return 0


def _cmd_atlas(args: argparse.Namespace) -> int:
    from .atlas import build_atlas
    print(f"atlas: {build_atlas(args.sweep_dir, args.out, args.per_page).resolve().as_uri()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lucent-dgn", description="Preferred images for CNN units (cnnpref's "
                                     "four algorithms on Lucent).")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render preferred images of units")
    r.add_argument("--model", default="fashion", help="fashion (shipped), bvlc_alexnet, or a torchvision name")
    r.add_argument("--weights", default=None, help="weights file of the model (default: the loading chain)")
    r.add_argument("--layer", required=True, help="layer name: dotted path or Lucent underscore name")
    r.add_argument("--units", required=True, help="channels whose centre unit to render, e.g. 0,3,6 or 0:96:3")
    r.add_argument("--variant", nargs="+", default=["gd"], choices=VARIANT_NAMES, help="one or more variants")
    r.add_argument("--generator", default="fashion", help="generator for the dgn variants")
    r.add_argument("--generator-weights", default=None, help="weights file of the generator")
    r.add_argument("--preset", default="default", choices=("default", "lower", "higher"),
                   help="cnnpref's function defaults, or its lower/higher-layer example settings")
    r.add_argument("--steps", type=int, default=None, help="iterations (GD) or L-BFGS iterations")
    r.add_argument("--unit-weight", type=float, default=None, help="feature weight (cnnpref feature_weight)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for small nets)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_render)

    e = sub.add_parser("examples", help="cnnpref's example runs: lower (conv) or higher (output) layer, all variants")
    e.add_argument("kind", choices=("lower", "higher"))
    e.add_argument("--model", default="fashion")
    e.add_argument("--weights", default=None)
    e.add_argument("--layer", default=None, help="default conv1 (lower) / fc8 (higher)")
    e.add_argument("--units", default=None, help="channels (default: every int(C/25)-th)")
    e.add_argument("--generator", default="fashion", help="generator for the DGN variants ('' to skip them)")
    e.add_argument("--generator-weights", default=None)
    e.add_argument("--bounds-file", default=None, help="act_range file of upper code bounds (cnnpref 3x/fc6.txt)")
    e.add_argument("--steps", type=int, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--mode", choices=("faithful", "fast"), default="faithful",
                   help="faithful (default): reproduce cnnpref's scripts (one render per unit, SciPy's L-BFGS-B, "
                        "cnnpref's jitter/momentum rule and return values); fast: batched, torch L-BFGS-B, "
                        "corrected rules")
    e.add_argument("--out", required=True)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_examples)

    la = sub.add_parser("layers", help="list a model's layers with their feature shapes")
    la.add_argument("--model", default="fashion")
    la.add_argument("--weights", default=None)
    la.add_argument("--size", type=int, default=None, help="input size (default: the model's)")
    la.set_defaults(func=_cmd_layers)

    sub.add_parser("convert-caffemodel", help="convert a .caffemodel to a PyTorch state dict "
                   "(run `lucent-dgn convert-caffemodel --help`)", add_help=False)

    t = sub.add_parser("train-generator", help="train a DeePSiM-style generator that inverts a classifier layer")
    from .training.cli import add_train_generator_arguments
    add_train_generator_arguments(t)
    t.set_defaults(func=_cmd_train_generator)

    d = sub.add_parser("demo", help="offline demo: all four variants on the shipped Fashion-MNIST models")
    d.add_argument("--out", default="demo_output")
    d.add_argument("--steps", type=int, default=None, help="override the iterations of every variant")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-imagenet", action="store_true", help="skip the MobileNetV2 part")
    d.add_argument("--no-sweep", action="store_true", help="skip the sweep and its atlas")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_demo)

    w = sub.add_parser("sweep", help="every unit of some layers, several variants and seeds, as a dataset that "
                       "resumes; local processes or Ray")
    w.add_argument("--model", default="fashion", help="fashion (shipped), bvlc_alexnet, or a torchvision name")
    w.add_argument("--weights", default=None, help="weights file of the model")
    w.add_argument("--layers", nargs="+", required=True, help="layer names")
    w.add_argument("--units", default="all", help="all, start:stop[:step] (::4 = every 4th), 0,3,7, or a mask file "
                   "(.npy boolean/indices, .txt indices); a conv unit is the centre unit of a channel")
    w.add_argument("--variants", nargs="+", default=["gd"], choices=VARIANT_NAMES)
    w.add_argument("--generator", default="fashion", help="generator for the dgn variants")
    w.add_argument("--generator-weights", default=None)
    w.add_argument("--preset", default="auto", choices=("auto", "default", "lower", "higher", "fashion"),
                   help="variant options: auto = fashion for the shipped model, else cnnpref's defaults")
    w.add_argument("--steps", type=int, default=None, help="iterations of every variant")
    w.add_argument("--options", default=None, help="JSON file {variant: {option: value}} applied last")
    w.add_argument("--seeds", type=int, nargs="+", default=[0])
    w.add_argument("--batch-size", type=int, default=8, help="rows per render of the GD variants (part of the "
                   "settings)")
    w.add_argument("--threads", type=int, default=1, help="torch threads per worker (part of the settings)")
    w.add_argument("--device", default="cpu")
    w.add_argument("--workers", type=int, default=None, help="local worker processes (or Ray actors with --ray)")
    w.add_argument("--ray", default=None, help="run on Ray: auto, local, or a cluster address")
    w.add_argument("--examples", default=None, help="top-k dataset examples from fashion-mnist or an image folder")
    w.add_argument("--top-k", type=int, default=9)
    w.add_argument("--retry-failed", action="store_true", help="render units recorded as failed again")
    w.add_argument("--out", required=True, help="sweep directory (a rerun resumes it)")
    w.add_argument("--atlas", action="store_true", help="write the atlas when the sweep is done")
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(func=_cmd_sweep)

    a = sub.add_parser("atlas", help="static site of a sweep: layers, unit grids, unit pages (opens from file://)")
    a.add_argument("sweep_dir")
    a.add_argument("--out", default=None, help="site folder (default SWEEP_DIR/atlas)")
    a.add_argument("--per-page", type=int, default=240, help="units per page of a layer grid")
    a.set_defaults(func=_cmd_atlas)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "convert-caffemodel":
            return _cmd_convert(argv[1:])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:  # --help (0) or a usage error (2, one line already printed)
            return int(stop.code or 0)
        return int(args.func(args))
    except (LucentDGNError, FileNotFoundError, PermissionError) as err:
        print(f"lucent-dgn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lucent-dgn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
