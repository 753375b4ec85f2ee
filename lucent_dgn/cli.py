"""``lucent-dgn`` command line: render, examples, layers, convert-caffemodel, train-generator, invert, demo,
sweep, atlas.

Exit status: 0 on success; 2 for a bad argument or input file, with one line on stderr
(``lucent-dgn <command>: error: ...`` for a usage error, ``lucent-dgn: error: ...`` for a value
found wrong after parsing), never a traceback; 130 after Ctrl-C (one line; ``render``,
``examples`` and ``invert`` write nothing, ``demo`` keeps the parts it finished). Every value is checked before
any model is loaded or any file written.

Parsing imports the package core and the small modules that name the choices (variants,
generators, Caffe layouts); torchvision, the weights and the models' code paths that need them are
imported only by the command that runs (``--help`` and argument errors cost about one
``import torch``; ``benchmarks/bench_startup.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import ConfigError, LucentDGNError, describe

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class CommandInterrupted(BaseException):
    """Ctrl-C during a command. Not a KeyboardInterrupt, so the render loop (which returns partial
    results on KeyboardInterrupt, for notebooks) does not catch it; its clean-up still runs."""


NOTHING_WRITTEN = "the command stopped and wrote no partial results"


@contextlib.contextmanager
def _stop_on_ctrl_c(outcome: str = NOTHING_WRITTEN) -> Iterator[None]:
    """While inside, one SIGINT raises :class:`CommandInterrupted` carrying ``outcome``, what the
    user is told about the files (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        raise CommandInterrupted(outcome)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------------------ checks
def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_common(args: argparse.Namespace) -> None:
    """Check --threads, --steps, --seed and --device (where a command has them) before any work."""
    threads = getattr(args, "threads", None)
    if threads is not None:
        cpus = _available_cpus()
        if not 1 <= threads <= cpus:
            raise ConfigError(describe("--threads", f"between 1 and {cpus} (the CPUs available to this process)",
                                       threads))
    steps = getattr(args, "steps", None)
    if steps is not None and steps <= 0:
        raise ConfigError(describe("--steps", "a positive integer", steps))
    if getattr(args, "seed", None) is not None:
        from ._validate import check_seed
        check_seed(args.seed, "--seed", allow_none=False)
    if getattr(args, "device", None) is not None:
        _check_device(args.device)


def _check_device(text: str) -> None:
    """A device torch can render on here: cpu, an existing CUDA device, or an available mps."""
    import torch
    rule = "a device torch can render on here ('cpu', 'cuda', 'cuda:N' or 'mps')"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(describe("--device", rule, text)) from None
    if device.type == "cpu":
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(describe("--device", "an available device", text, "No CUDA device is available; "
                                       "use --device cpu."))
        if device.index is not None and device.index >= count:
            raise ConfigError(describe("--device", f"an existing CUDA device (cuda:0 to cuda:{count - 1})", text))
        return
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(describe("--device", "an available device", text, "MPS is not available here; "
                                       "use --device cpu."))
        return
    raise ConfigError(describe("--device", rule, text))


def _check_finite(arg: str, value: Optional[float], minimum: Optional[float] = None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        rule = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")
        raise ConfigError(describe(arg, rule, value))


def _units(text: str) -> Optional[List[int]]:
    """``--units``: ``all`` (None), ``0,3,6`` or ``start:stop[:step]``; distinct non-negative channels."""
    if text.strip() == "all":
        return None
    rule = "comma-separated integers, start:stop[:step] or 'all'"
    try:
        if ":" in text:
            start, stop, *step = (int(p) for p in text.split(":"))
            units = list(range(start, stop, step[0] if step else 1))
        else:
            units = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(describe("--units", rule, text)) from None
    if not units:
        raise ConfigError(describe("--units", "at least one unit", text))
    if min(units) < 0:
        raise ConfigError(describe("--units", "non-negative channel indices", text))
    repeated = sorted({u for u in units if units.count(u) > 1}) if len(set(units)) < len(units) else []
    if repeated:
        raise ConfigError(describe("--units", "distinct units (each unit gets one image file)", text,
                                   f"Repeated: {', '.join(map(str, repeated))}."))
    return units


def _load_networks(args: argparse.Namespace, needs_generator: bool, device: Optional[str] = None) -> Tuple[Any, Any]:
    """The command's ``--model`` and, when ``needs_generator``, its ``--generator`` (else None), by
    name, moved to ``device`` when given; a weights error names ``--weights`` or ``--generator-weights``."""
    from .registry import load_generator_by_name, load_model_by_name
    with _blame("--weights", args.weights):
        model = load_model_by_name(args.model, args.weights)
    generator = None
    if needs_generator:
        with _blame("--generator-weights", args.generator_weights):
            generator = load_generator_by_name(args.generator, args.generator_weights)
    if device is not None:
        model = model.to(device)
        generator = None if generator is None else generator.to(device)
    return model, generator


@contextlib.contextmanager
def _blame(arg: str, given: Optional[str]) -> Iterator[None]:
    """Name ``arg`` in a WeightsError raised inside, when the user gave that file (``given``): the
    message's generic leading argument (`path`, `weights`, `weights file`) becomes ``arg``."""
    from .errors import WeightsError
    try:
        yield
    except WeightsError as err:
        if given is None:
            raise
        text = str(err)
        match = re.match(r"`(path|weights|weights file)` ", text)
        raise type(err)(f"`{arg}` {text[match.end():]}" if match else f"{arg}: {text}") from None


def _out_dir(path: str) -> Tuple[Path, bool]:
    """Create ``--out`` (checking it is writable) before any work; returns (path, created here)."""
    from ._io import ensure_writable_dir
    existed = Path(path).exists()
    return ensure_writable_dir(path, "--out"), not existed


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _input_shape(model: Any, size: Optional[int] = None) -> Tuple[int, int, int]:
    """(C, S, S) of the model's input: ``size`` or the size the model declares (nothing guessed)."""
    from .cnnpref._compat import input_size
    channels = getattr(getattr(model, "input_space", None), "channels", 3)
    side = input_size(model, size)
    return channels, side, side


@contextlib.contextmanager
def _sized(size_arg: str, model: Any, side: int) -> Iterator[None]:
    """A forward pass inside that fails at this input size is a ConfigError naming ``size_arg``."""
    try:
        yield
    except LucentDGNError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(describe(size_arg, f"an input size {type(model).__name__} takes", side,
                                   f"Its forward pass fails at that size: {first}")) from None


def _probe_layer(model: Any, layer: Any, shape: Tuple[int, int, int], size_arg: str) -> Tuple[str, Tuple[int, ...]]:
    """Resolve ``layer`` (named as ``--layer`` in errors) and its feature shape at ``shape``."""
    from .layers import layer_shape, resolve_layer
    name, _ = resolve_layer(model, layer, arg="--layer")
    with _sized(size_arg, model, shape[-1]):
        return name, layer_shape(model, name, shape)


# ------------------------------------------------------------------------------------------ render
def _parse_set(items: Sequence[str], variants: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """``--set [VARIANT.]KEY=VALUE`` items -> variant -> {option: value}; values are Python
    literals (numbers, tuples, None, True/False) or else strings."""
    import ast
    from .recipes import recipe_options
    out: Dict[str, Dict[str, Any]] = {v: {} for v in variants}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(describe("--set", "KEY=VALUE or VARIANT.KEY=VALUE (e.g. lr=0.5, dgn_gd.iter_n=50)",
                                       item))
        targets = list(variants)
        prefix, dot, option = key.partition(".")
        if dot:
            if prefix not in variants:
                raise ConfigError(describe("--set", f"a VARIANT.KEY whose variant is rendered ({', '.join(variants)})",
                                           item))
            targets, key = [prefix], option
        try:
            value: Any = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        for variant in targets:
            valid = sorted(recipe_options(variant))
            if key not in valid:
                raise ConfigError(describe("--set", f"an option of the {variant} recipe", key,
                                           "Valid: " + ", ".join(valid) + "."))
            out[variant][key] = value
    return out


def _load_mask(path: str, feature_shape: Tuple[int, ...], layer: str):
    """``--mask FILE.npy``: a (*feature_shape) or (B, *feature_shape) array of 0/1 or bool."""
    import numpy as np
    import torch
    try:
        mask = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(describe("--mask", "an existing .npy file", path)) from None
    except (OSError, ValueError) as err:
        raise ConfigError(describe("--mask", "a .npy file holding a numeric array", path,
                                   f"Reading it failed: {str(err).splitlines()[0]}")) from None
    if mask.dtype.kind not in "biuf":
        raise ConfigError(describe("--mask", "a numeric or boolean array", f"dtype {mask.dtype}", raw=True))
    if tuple(mask.shape) == tuple(feature_shape):
        mask = mask[None]
    if tuple(mask.shape[1:]) != tuple(feature_shape):
        raise ConfigError(describe("--mask", f"of shape {tuple(feature_shape)} or (B, {', '.join(map(str, feature_shape))})"
                                   f" to fit layer {layer}", tuple(mask.shape)))
    if not np.isin(mask, (0, 1)).all() or not mask.reshape(len(mask), -1).any(1).all():
        raise ConfigError(describe("--mask", "0/1 values selecting at least one unit per item", path))
    return torch.from_numpy(mask.astype(bool))


def _cmd_render(args: argparse.Namespace) -> int:
    import torch
    from .recipes import get_variant, recipe
    from .registry import check_model_name
    from .runs import render_units, save_units
    _check_common(args)
    units = _units(args.units) if args.units is not None else None
    _check_finite("--unit-weight", args.unit_weight)
    _check_finite("--bounds", args.bounds, 0.0)
    variants = list(dict.fromkeys(args.variant))
    dgn = [v for v in variants if get_variant(v).needs_generator]
    if args.bounds is not None and not dgn:
        raise ConfigError(describe("--bounds", "used with a dgn variant", f"--variant {' '.join(variants)}", raw=True))
    overrides = _parse_set(args.set, variants)
    check_model_name(args.model)
    out, created = _out_dir(args.out)
    try:
        with _stop_on_ctrl_c():
            torch.set_num_threads(args.threads)
            model, generator = _load_networks(args, bool(dgn), args.device)
            settings = {v: _variant_options(args, model, v, generator if v in dgn else None, overrides[v])
                        for v in variants}
            name, shape, units_out, masks, labels = _targets(args, model, units, settings)
            for variant in variants:  # every variant's options are checked before the first render
                recipe(variant, name, masks, generator if variant in dgn else None, batch=len(masks),
                       **settings[variant])
            results = {}
            for variant in variants:
                print(f"rendering {variant}: {len(units_out)} units of {name}", flush=True)
                result = render_units(model, name, units_out, variant, generator=generator, settings=settings[variant],
                                      seed=args.seed, channels=shape[0], input_size=shape[-1], masks=masks,
                                      progress=not args.quiet)
                if result.interrupted:  # the loop returned early on a KeyboardInterrupt
                    raise CommandInterrupted(NOTHING_WRITTEN)
                results[variant] = result
            record = save_units(out, results, name, units_out, unit_labels=labels,
                                extra={"model": args.model, "generator": args.generator if dgn else None,
                                       "seed": args.seed, "preset": args.preset, "set": list(args.set),
                                       "bounds": args.bounds, "mask": args.mask})
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    print(f"wrote {len(units_out) * len(results)} images, {record['grid']} and settings.json to {out}")
    return 0


def _variant_options(args: argparse.Namespace, model: Any, variant: str, generator: Any,
                     overrides: Dict[str, Any]) -> Dict[str, Any]:
    """One variant's recipe options: the preset's (default: the model's own), code bounds
    (--bounds, or 3 std with cnnpref's example presets), --unit-weight, --steps, then --set."""
    from .runs import variant_settings, with_steps
    options = variant_settings(model, variant, generator, args.preset)
    if generator is not None and (args.bounds is not None or args.preset in ("lower", "higher")):
        options.update(_code_bounds(generator, args.bounds))
    if args.unit_weight is not None:
        options["weight"] = args.unit_weight
    options = with_steps(options, variant, args.steps)
    options.update(overrides)  # --set is the most specific: it wins over --steps
    return options


def _targets(args: argparse.Namespace, model: Any, units: Optional[List[int]],
             settings: Dict[str, Dict[str, Any]]) -> Tuple[str, Tuple[int, int, int], List[int], Any, List[str]]:
    """(layer name, input shape, unit numbers, masks (B, *feature_shape), labels) of a render."""
    from .layers import output_layer
    from .runs import unit_labels, unit_mask_batch
    size = next((s.get("image_size") or s.get("input_size") for s in settings.values()
                 if s.get("image_size") or s.get("input_size")), None)
    shape = _input_shape(model, size)
    layer = args.layer
    if layer is None:
        with _sized("the model's input size", model, shape[-1]):
            layer = output_layer(model, shape)
        if layer is None:
            raise ConfigError(describe("--layer", "given for this model (its output is not one layer's)", None))
    name, feature_shape = _probe_layer(model, layer, shape, "--set image_size" if size else "the model's input size")
    if args.mask is not None:
        masks = _load_mask(args.mask, feature_shape, name)
        return name, shape, list(range(len(masks))), masks, [f"mask{i}" for i in range(len(masks))]
    channels = feature_shape[0]
    units_out = list(range(channels)) if units is None else units
    if max(units_out) >= channels:
        raise ConfigError(describe("--units", f"channels of {name} (0 to {channels - 1})", args.units))
    masks = unit_mask_batch(model, name, units_out, shape[-1], shape[0])
    return name, shape, units_out, masks, unit_labels(model, name, units_out, shape)


def _code_bounds(generator: Any, k: Optional[float]) -> Dict[str, Any]:
    """lower/upper from the generator's code statistics: ``k`` std (default 3, DGN-AM's "3x")."""
    bounds = getattr(generator, "code_bounds", None)
    if not callable(bounds):
        if k is None:
            return {}
        raise ConfigError(describe("--bounds", "used with a generator that has code statistics",
                                   type(generator).__name__, "Give the bounds with --set lower=... upper=... instead."))
    try:
        lower, upper = bounds(k=3.0 if k is None else k)
    except ConfigError:
        if k is None:
            return {}
        raise
    return {"lower": lower, "upper": upper}


# ---------------------------------------------------------------------------------------- examples
def _cmd_examples(args: argparse.Namespace) -> int:
    import torch
    from .examples import example_layer, run_examples
    from .registry import check_model_name
    _check_common(args)
    units = _units(args.units) if args.units is not None else None
    check_model_name(args.model)
    out, created = _out_dir(args.out)
    try:
        with _stop_on_ctrl_c():
            torch.set_num_threads(args.threads)
            model, generator = _load_networks(args, args.generator != "none")
            layer = args.layer or example_layer(model, args.kind)
            name, feature_shape = _probe_layer(model, layer, _input_shape(model), "the model's input size")
            if units is not None and max(units) >= feature_shape[0]:
                raise ConfigError(describe("--units", f"channels of {name} (0 to {feature_shape[0] - 1})", args.units))
            record = run_examples(model, name, args.kind, out, generator=generator, units=units,
                                  bounds_file=args.bounds_file, steps=args.steps, seed=args.seed,
                                  progress=not args.quiet, mode=args.mode)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    print(f"wrote cnnpref's {args.kind}-layer examples ({name}) to {out} in {record['mode']} mode "
          f"({record['mode_description']})")
    return 0


# ------------------------------------------------------------------------------------------ layers
def _cmd_layers(args: argparse.Namespace) -> int:
    from .layers import layer_shapes, list_layers
    from .registry import check_model_name, load_model_by_name
    if args.size is not None and args.size <= 0:
        raise ConfigError(describe("--size", "a positive integer", args.size))
    check_model_name(args.model)
    with _blame("--weights", args.weights):
        model = load_model_by_name(args.model, args.weights)
    shape = _input_shape(model, args.size)
    names = list_layers(model)
    if not names:
        raise ConfigError(describe("--model", "a model with layers", args.model))
    with _sized("--size", model, shape[-1]):
        shapes = layer_shapes(model, names, shape)
    for name in names:
        found = shapes.get(name)
        print(f"{name:30s} {type(model.get_submodule(name)).__name__:22s} {found if found is not None else '-'}")
    return 0


# ---------------------------------------------------------------------------------------- others
def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_command
    return int(convert_command(args))


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from .training.cli import train_generator_command
    _check_common(args)
    with _stop_on_ctrl_c("checkpoints in --checkpoint-dir, if given, are kept (run again to resume); the "
                         "generator file was not written"):
        return int(train_generator_command(args))


# ------------------------------------------------------------------------------------------ invert
def _invert_bounds(spec: str, generator: Any) -> Dict[str, Any]:
    """``--code-bounds``: 'auto', 'icnn' or an act_range file -> the lower/upper options."""
    if spec == "icnn" or (spec == "auto" and not int(getattr(generator, "code_count", 0) or 0)):
        return {"lower": 0.0, "upper": 100.0}
    if spec == "auto":
        lower, upper = generator.code_bounds(k=3.0)
        return {"lower": lower, "upper": upper}
    if not Path(spec).is_file():
        raise ConfigError(describe("--code-bounds", "'auto', 'icnn' or an existing act_range file", spec))
    return {"lower": 0.0, "upper": spec}


def _cmd_invert(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch
    from ._io import save_json, save_npy
    from .icnn.presets import fashion_settings, invert
    from .icnn.targets import features_of, load_features, model_input_space, read_image
    from .layers import resolve_layer
    from .registry import check_model_name
    from .runs import versions, with_steps
    from .variants import get_variant
    from .viz import save_png
    _check_common(args)
    check_model_name(args.model)
    source = Path(args.image)
    is_features = source.suffix == ".npz"
    if not is_features and not args.layers:
        raise ConfigError(describe("--layers", "one or more layer names when IMAGE is an image", None,
                                   "For example --layers relu3 or --layers conv1 conv2 relu3."))
    if not source.is_file():
        raise ConfigError(describe("IMAGE", "an existing image or .npz file", str(source)))
    out, created = _out_dir(args.out)
    try:
        with _stop_on_ctrl_c():
            torch.set_num_threads(args.threads)
            model, generator = _load_networks(args, get_variant(args.variant).needs_generator, args.device)
            options = dict(fashion_settings(generator)[args.variant]) if args.preset == "fashion" else {}
            options.update(layer_weights=args.layer_weights, metric=args.metric)
            if generator is not None and (args.preset == "icnn" or args.code_bounds != "auto"):
                options.update(_invert_bounds(args.code_bounds, generator))
            if generator is None and args.space is not None:
                options["space"] = args.space
            options = with_steps(options, args.variant, args.steps)
            original = None
            if is_features:
                targets = load_features(source, layers=args.layers)
            else:
                for layer in args.layers:
                    resolve_layer(model, layer, arg="--layers")
                size = getattr(model, "input_size", None)
                if size is None:
                    raise ConfigError(describe("--model", "a model that declares its input size (`input_size`)",
                                               args.model))
                options.setdefault("input_size" if generator is not None else "image_size", int(size))
                original = read_image(source, int(size))
                with _sized("the model's input size", model, int(size)):
                    targets = features_of(model, original, args.layers)
            start = time.perf_counter()
            result = invert(model, targets, args.variant, generator, seed=args.seed, progress=not args.quiet,
                            **options)
            if result.interrupted:  # the loop returned early on a KeyboardInterrupt
                raise CommandInterrupted(NOTHING_WRITTEN)
            seconds = time.perf_counter() - start
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    files = []
    for i, image in enumerate(result.images):
        stem = "reconstruction" if len(result.images) == 1 else f"reconstruction_{i:03d}"
        save_png(out / f"{stem}.png", image, mode="clip")
        save_npy(out / f"{stem}.npy", image)
        files.append(f"{stem}.png")
    record = {"variant": args.variant, "preset": args.preset, "model": args.model,
              "generator": args.generator if generator is not None else None, "source": str(source),
              "layers": list(targets), "seed": args.seed,
              "options": {k: v for k, v in options.items() if not isinstance(v, torch.Tensor)}, "files": files,
              "loss_history": result.loss_history, "seconds": round(seconds, 3), "steps": result.steps,
              "n_evals": result.n_evals, "versions": versions(),
              "final_layer_losses": {key.split(":", 1)[1]: np.asarray(v).tolist()
                                     for key, v in result.activations.items() if key.startswith("feature_match:")}}
    if original is not None:
        save_png(out / "original.png", original)
        grey = model_input_space(model).to_rgb01(torch.as_tensor(result.model_input)).mean(1).flatten().numpy()
        record["pixel_correlation"] = float(np.corrcoef(grey, original.mean(-1).flatten() / 255.0)[0, 1])
    save_json(out / "settings.json", record)
    print(f"wrote {', '.join(files)} (and .npy), settings.json to {out} ({args.variant}, {result.steps} steps, "
          f"{seconds:.1f} s)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    _check_common(args)
    with _stop_on_ctrl_c("the parts of the demo that finished are kept; the interrupted part wrote nothing"):
        run_demo(out_dir=args.out, steps=args.steps, seed=args.seed, imagenet=not args.no_imagenet,
                 progress=not args.quiet, sweep=not args.no_sweep)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    """Check every value, then sweep; Ctrl-C keeps the finished units (a rerun resumes)."""
    from .recipes import get_variant
    from .registry import check_generator_name, check_model_name
    from .sweeps import Source, sweep
    from .sweeps.presets import variant_options
    check_model_name(args.model)
    needs_generator = any(get_variant(v).needs_generator for v in args.variants)
    if needs_generator:
        check_generator_name(args.generator)
    _check_common(argparse.Namespace(steps=args.steps, threads=args.threads,
                                     device=args.device if args.ray is None else None))
    from ._validate import check_seed
    for seed in args.seeds:
        check_seed(seed, "--seeds", allow_none=False)
    for arg, value in (("--batch-size", args.batch_size), ("--top-k", args.top_k), ("--workers", args.workers)):
        if value is not None and value <= 0:
            raise ConfigError(describe(arg, "a positive integer", value))
    model = generator = None
    if args.preset == "model":  # the model's own tuned settings (they may read the generator's statistics)
        model, generator = _load_networks(args, needs_generator)
    options = variant_options(args.variants, args.preset, model=model, generator=generator, steps=args.steps,
                              options_file=args.options)
    del model, generator  # the sweep loads its own copies (by name, so workers can too)
    gen_source = Source("generator", name=args.generator, weights=args.generator_weights) if needs_generator else None
    with _stop_on_ctrl_c("the units that finished are in the dataset; rerun the same command to resume"):
        summary = sweep(Source("model", name=args.model, weights=args.weights), args.layers, args.units, options,
                        out_dir=args.out, seeds=args.seeds, generator=gen_source, batch_size=args.batch_size,
                        threads=args.threads, device=args.device, examples=args.examples, top_k=args.top_k,
                        workers=args.workers, ray=args.ray, retry_failed=args.retry_failed,
                        progress=not args.quiet)
    print(f"{summary.rendered} units rendered ({summary.failed} failed), {summary.skipped} already done, "
          f"{summary.units} in the sweep; {summary.seconds:.1f} s on {summary.backend} x{summary.workers}; "
          f"dataset in {summary.out_dir}")
    if args.atlas:
        from .atlas import build_atlas
        print(f"atlas: {build_atlas(summary.out_dir).resolve().as_uri()}")
    return 0


def _cmd_atlas(args: argparse.Namespace) -> int:
    from .atlas import build_atlas
    if args.per_page <= 0:
        raise ConfigError(describe("--per-page", "a positive integer", args.per_page))
    print(f"atlas: {build_atlas(args.sweep_dir, args.out, args.per_page).resolve().as_uri()}")
    return 0


# ------------------------------------------------------------------------------------------ parser
def _add_run_options(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    p.add_argument("--steps", type=int, default=None,
                   help="iterations of every variant (GD steps or L-BFGS iterations; default: the settings')")
    p.add_argument("--seed", type=int, default=0, help="seed of the render (0 to 2**64 - 1; default 0)")
    if device:
        p.add_argument("--device", default="cpu", help="where to render: cpu (default), cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, fastest for small nets)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``lucent-dgn`` argument parser (imports no torchvision and loads no weights)."""
    from .recipes import get_variant, variant_names
    from .registry import GENERATOR_NAMES, SHIPPED_MODELS
    from .runs import PRESETS
    models_help = (f"{', '.join(SHIPPED_MODELS)} (shipped), bvlc_alexnet, or a torchvision classifier name "
                   "(default: fashion)")
    parser = _Parser(prog="lucent-dgn", description="Preferred images for CNN units (cnnpref's four algorithms "
                     "on Lucent). `lucent-dgn COMMAND --help` describes each command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("render", help="render preferred images of units",
                       description="Render the preferred image of each unit with one or more variants; writes "
                                   "a PNG and .npy per image, a grid and settings.json.")
    r.add_argument("--model", default="fashion", help=models_help)
    r.add_argument("--weights", default=None, help="weights file of the model (default: the loading chain)")
    r.add_argument("--layer", default=None, help="layer name, dotted path or Lucent underscore name "
                                                 "(default: the model's output layer)")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--units", help="channels whose centre unit to render: 0,3,6, 0:96:3 or all")
    which.add_argument("--mask", help=".npy file of unit masks, (C[, H, W]) or (B, C[, H, W]), one image per mask")
    unit_variants = [v for v in variant_names() if get_variant(v).needs_units]  # not icnn's (see invert)
    r.add_argument("--variant", nargs="+", default=["gd"], choices=unit_variants,
                   help="one or more variants (default: gd)")
    r.add_argument("--generator", default="fashion", choices=GENERATOR_NAMES,
                   help="generator of the dgn variants: " + ", ".join(GENERATOR_NAMES) + " (default: fashion)")
    r.add_argument("--generator-weights", default=None, help="weights file of the generator")
    r.add_argument("--preset", default="model", choices=PRESETS,
                   help="settings: the model's own tuned ones (model, default), cnnpref's function defaults "
                        "(cnnpref), or cnnpref's lower/higher-layer example settings")
    r.add_argument("--set", action="append", default=[], metavar="[VARIANT.]KEY=VALUE",
                   help="set a recipe option, e.g. --set lr=0.5 --set dgn_gd.decay=0.02 (repeatable; an unknown "
                        "key lists the valid ones)")
    r.add_argument("--bounds", type=float, default=None, metavar="K",
                   help="dgn code bounds from the generator's statistics: K standard deviations (lower = 0 for "
                        "units never negative)")
    r.add_argument("--unit-weight", type=float, default=None, help="feature weight (cnnpref's feature_weight)")
    r.add_argument("--out", required=True, help="output directory")
    _add_run_options(r)
    r.set_defaults(func=_cmd_render)

    e = sub.add_parser("examples", help="cnnpref's example runs: lower (conv) or higher (output) layer, all "
                                        "variants",
                       description="cnnpref's example scripts: every variant on the centre unit of every "
                                   "int(C/25)-th channel. 'lower' takes the model's first convolution (AlexNet "
                                   "conv1), 'higher' its output layer (AlexNet fc8); --layer picks another.")
    e.add_argument("kind", choices=("lower", "higher"), help="lower: the first convolution; higher: the output layer")
    e.add_argument("--model", default="fashion", help=models_help)
    e.add_argument("--weights", default=None, help="weights file of the model (default: the loading chain)")
    e.add_argument("--layer", default=None, help="layer to render (default: see above)")
    e.add_argument("--units", default=None, help="channels, as for render (default: every int(C/25)-th)")
    e.add_argument("--generator", default="fashion", choices=GENERATOR_NAMES + ("none",),
                   help="generator of the dgn variants: " + ", ".join(GENERATOR_NAMES) +
                        ", or none to skip them (default: fashion)")
    e.add_argument("--generator-weights", default=None, help="weights file of the generator")
    e.add_argument("--bounds-file", default=None, help="act_range file of upper code bounds (cnnpref's 3x/fc6.txt)")
    e.add_argument("--mode", choices=("faithful", "fast"), default="faithful",
                   help="faithful (default): reproduce cnnpref's scripts (one render per unit, SciPy's L-BFGS-B, "
                        "cnnpref's jitter/momentum rule and return values); fast: batched, torch L-BFGS-B, "
                        "corrected rules")
    e.add_argument("--out", required=True, help="output directory")
    _add_run_options(e, device=False)
    e.set_defaults(func=_cmd_examples)

    la = sub.add_parser("layers", help="list a model's layers with their feature shapes",
                        description="List every layer of a model with its type and feature shape.")
    la.add_argument("--model", default="fashion", help=models_help)
    la.add_argument("--weights", default=None, help="weights file of the model (default: the loading chain)")
    la.add_argument("--size", type=int, default=None, help="input side in pixels (default: the model's)")
    la.set_defaults(func=_cmd_layers)

    c = sub.add_parser("convert-caffemodel", help="convert a .caffemodel to a PyTorch state dict",
                       description="Convert a Caffe .caffemodel to a PyTorch state dict.")
    from .convert import add_convert_arguments
    add_convert_arguments(c)
    c.set_defaults(func=_cmd_convert)

    t = sub.add_parser("train-generator", help="train a DeePSiM-style generator that inverts a classifier layer",
                       description="Train a DeePSiM-style generator that inverts a classifier layer.")
    from .training.cli import add_train_generator_arguments
    add_train_generator_arguments(t)
    t.set_defaults(func=_cmd_train_generator)

    from .icnn.presets import ICNN_VARIANTS
    i = sub.add_parser("invert", help="reconstruct an image from its CNN features (icnn: pixel or DGN, GD or "
                                      "L-BFGS-B)",
                       description="Reconstruct an image from its features in one or more layers (icnn's feature "
                                   "inversion); writes the reconstruction (PNG and .npy) and settings.json.")
    i.add_argument("image", help="an image file (resized to the model's input size), or a .npz file of target "
                                 "features (one array per layer, as lucent_dgn.save_features writes)")
    i.add_argument("--layers", nargs="+", default=None,
                   help="layers whose features are matched (required for an image; default for .npz: all)")
    i.add_argument("--variant", default="icnn_dgn_gd", choices=sorted(ICNN_VARIANTS),
                   help="pixel or generator code, gradient descent or L-BFGS-B (default: icnn_dgn_gd)")
    i.add_argument("--model", default="fashion", help=models_help)
    i.add_argument("--weights", default=None, help="weights file of the model (default: the loading chain)")
    i.add_argument("--generator", default="fashion", choices=GENERATOR_NAMES,
                   help="generator of the dgn variants: " + ", ".join(GENERATOR_NAMES) + " (default: fashion)")
    i.add_argument("--generator-weights", default=None, help="weights file of the generator")
    i.add_argument("--preset", default="icnn", choices=("icnn", "fashion"),
                   help="icnn: icnn's published defaults; fashion: lucent_dgn.icnn.fashion_settings, tuned for the "
                        "shipped 28 px Fashion-MNIST classifier and generator")
    i.add_argument("--code-bounds", default="auto",
                   help="DGN code bounds: 'auto' (icnn preset: the generator's mean + 3 std when it stores code "
                        "statistics, as icnn's act_range/3x, else icnn's [0, 100]; fashion preset: its own), 'icnn' "
                        "([0, 100]), or an act_range file of upper bounds (lower 0)")
    i.add_argument("--layer-weights", default="inverse_norm", choices=("inverse_norm", "equal"),
                   help="inverse_norm: 1/||target||^2 normalised (icnn's scripts); equal: 1/L (bdpy's default)")
    i.add_argument("--metric", default="mse", choices=("mse", "inner", "corr"),
                   help="feature distance: mean squared error (default), inner product or correlation")
    i.add_argument("--space", default=None, choices=("caffe", "gray", "unit"),
                   help="pixel variants: where the image is stored and decayed (default caffe, icnn's net space)")
    i.add_argument("--out", required=True, help="output directory")
    _add_run_options(i)
    i.set_defaults(func=_cmd_invert)

    d = sub.add_parser("demo", help="offline demo: all four variants on the shipped Fashion-MNIST models",
                       description="The offline demo: all four variants on the shipped Fashion-MNIST models, "
                                   "and MobileNetV2 when its weights are installed.")
    d.add_argument("--out", default="demo_output", help="output directory (default: demo_output)")
    d.add_argument("--steps", type=int, default=None, help="override the iterations of every variant")
    d.add_argument("--seed", type=int, default=0, help="seed of every render (default 0)")
    d.add_argument("--no-imagenet", action="store_true", help="skip the MobileNetV2 part")
    d.add_argument("--no-sweep", action="store_true", help="skip the sweep and its atlas")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    w = sub.add_parser("sweep", help="every unit of some layers, several variants and seeds, as a dataset that "
                       "resumes; local processes or Ray")
    w.add_argument("--model", default="fashion", help="fashion (shipped), bvlc_alexnet, or a torchvision name")
    w.add_argument("--weights", default=None, help="weights file of the model")
    w.add_argument("--layers", nargs="+", required=True, help="layer names")
    w.add_argument("--units", default="all", help="all, start:stop[:step] (::4 = every 4th), 0,3,7, or a mask file "
                   "(.npy boolean/indices, .txt indices); a conv unit is the centre unit of a channel")
    w.add_argument("--variants", nargs="+", default=["gd"], choices=unit_variants,
                   help="variants to render every unit with (default: gd)")
    w.add_argument("--generator", default="fashion", choices=GENERATOR_NAMES,
                   help="generator of the dgn variants (default: fashion)")
    w.add_argument("--generator-weights", default=None, help="weights file of the generator (default: the "
                   "loading chain)")
    w.add_argument("--preset", default="model", choices=PRESETS,
                   help="variant options: model = the model's own tuned settings (default), cnnpref = its function "
                        "defaults, lower/higher = its example scripts' settings")
    w.add_argument("--steps", type=int, default=None, help="iterations of every variant")
    w.add_argument("--options", default=None, help="JSON file {variant: {option: value}} applied last")
    w.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds; every unit is rendered once per "
                   "seed (default 0)")
    w.add_argument("--batch-size", type=int, default=8, help="rows per render of the GD variants (part of the "
                   "settings)")
    w.add_argument("--threads", type=int, default=1, help="torch threads per worker (part of the settings)")
    w.add_argument("--device", default="cpu", help="torch device of the renders (default cpu; with --ray, a "
                   "device of the workers' machines)")
    w.add_argument("--workers", type=int, default=None, help="local worker processes (or Ray actors with --ray)")
    w.add_argument("--ray", default=None, help="run on Ray: auto, local, or a cluster address")
    w.add_argument("--examples", default=None, help="top-k dataset examples from fashion-mnist or an image folder")
    w.add_argument("--top-k", type=int, default=9, help="dataset examples kept per unit (default 9)")
    w.add_argument("--retry-failed", action="store_true", help="render units recorded as failed again")
    w.add_argument("--out", required=True, help="sweep directory (a rerun resumes it)")
    w.add_argument("--atlas", action="store_true", help="write the atlas when the sweep is done")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_cmd_sweep)

    a = sub.add_parser("atlas", help="static site of a sweep: layers, unit grids, unit pages (opens from file://)")
    a.add_argument("sweep_dir", help="directory of a sweep (its sweep.json and index)")
    a.add_argument("--out", default=None, help="site folder (default SWEEP_DIR/atlas)")
    a.add_argument("--per-page", type=int, default=240, help="units per page of a layer grid")
    a.set_defaults(func=_cmd_atlas)
    parser.commands = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra:  # reported by the command's own parser, so the usage names the command
                parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        except SystemExit as stop:  # --help (0) or a usage error (2, one line already printed)
            return int(stop.code or 0)
        return int(args.func(args))
    except (LucentDGNError, FileNotFoundError, PermissionError) as err:
        print(f"lucent-dgn: error: {err}", file=sys.stderr)
        return 2
    except CommandInterrupted as stop:
        print(f"lucent-dgn: interrupted; {stop.args[0] if stop.args else NOTHING_WRITTEN}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before a command installed its handler: nothing was written yet
        print(f"lucent-dgn: interrupted; {NOTHING_WRITTEN}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
