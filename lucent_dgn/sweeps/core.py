"""``sweep()``: check everything, then render every (layer, unit, variant, seed) into a dataset."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import ConfigError, describe
from .dataset import SweepDir, make_row, unit_key
from ..recipes import get_variant, variant_names
from .spec import BATCHED_VARIANTS, LayerPlan, Source, SweepPlan, as_source, check_options, fingerprint, resolve_units
from .work import WorkerConfig, build_recipe

__all__ = ["sweep", "SweepSummary", "plan_sweep", "worker_config", "FORMAT"]

FORMAT = "lucent_dgn.sweep/1"
EXAMPLES_FILE = "examples/topk.json"

VariantSpec = Union[str, Sequence[str], Mapping[str, Optional[Mapping[str, Any]]]]


@dataclass
class SweepSummary:
    """What a call of :func:`sweep` did.

    Attributes:
        out_dir: the sweep directory.
        units: work units of the sweep (layers x units x variants x seeds).
        skipped: units already finished by an earlier run.
        rendered: units rendered by this run (failures included).
        failed: units of this run that failed (recorded with their error).
        seconds: wall time of this call.
        backend: ``"in-process"``, ``"process-pool"`` or ``"ray"``; workers: how many.
    """

    out_dir: Path
    units: int
    skipped: int
    rendered: int
    failed: int
    seconds: float
    backend: str
    workers: int


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(describe(name, "a positive integer", value))
    return int(value)


def _variants(spec: VariantSpec) -> Dict[str, Dict[str, Any]]:
    if isinstance(spec, str):
        spec = [spec]
    items = list(spec.items()) if isinstance(spec, Mapping) else [(v, None) for v in spec]
    if not items:
        raise ConfigError(describe("variants", f"at least one of {variant_names()}", spec))
    out: Dict[str, Dict[str, Any]] = {}
    for name, options in items:
        get_variant(name)
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(describe(f"variants[{name!r}]", "a dict of recipe options or None", options))
        out[name] = check_options(name, dict(options or {}))
    return {v: out[v] for v in variant_names() if v in out}  # canonical order


def _seeds(spec: Any) -> List[int]:
    values = [spec] if isinstance(spec, int) else list(spec)
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(describe("seeds", "non-negative integers", s))
    if not values:
        raise ConfigError(describe("seeds", "at least one seed", spec))
    return sorted(set(values))


def _device(spec: Any) -> str:
    try:
        return str(torch.device(spec))
    except (RuntimeError, TypeError):
        raise ConfigError(describe("device", "a torch device such as 'cpu' or 'cuda'", spec)) from None


def _check_device_here(device: str) -> None:
    """The device must exist on this machine (in-process and process-pool backends)."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(describe("device", "an available device", device, "No CUDA device is available here; "
                                   "with Ray the workers' machines need one, not the driver's."))


def _input_size(net: nn.Module, variants: Mapping[str, Mapping[str, Any]]) -> int:
    """The model's input side: its ``input_size``, else the variants' ``image_size``/``input_size``."""
    size = getattr(net, "input_size", None)
    if size is None:
        given = {int(o[k]) for o in variants.values() for k in ("image_size", "input_size")
                 if isinstance(o.get(k), int)}
        if len(given) != 1:
            raise ConfigError(describe("model", "a network that declares `input_size`, or variants with one "
                                       "`image_size`/`input_size` option", type(net).__name__,
                                       f"Sizes given: {sorted(given)}." if given else ""))
        size = given.pop()
    return int(size)


def _source_identity(source: Optional[Source], module: Optional[nn.Module]) -> Optional[Dict[str, Any]]:
    if source is None:
        return None
    return {"source": source.label(), "weights": source.weights, "sha256": fingerprint(module)}


def plan_sweep(model: Any, layers: Union[str, Sequence[str]], units: Any = "all", variants: VariantSpec = "gd", *,
               seeds: Any = 0, generator: Any = None, batch_size: int = 8, threads: int = 1, device: str = "cpu",
               examples: Any = None, top_k: int = 9) -> Tuple[SweepPlan, nn.Module, Optional[nn.Module], Any]:
    """Check a sweep's arguments and build its plan (loads the model and generator; renders nothing).

    Returns:
        ``(plan, model, generator, image_source)``; the modules are the driver's copies, on the
        CPU unless they were passed as modules.

    Raises:
        ConfigError, LayerNotFoundError: any bad argument, with one message (see :func:`sweep`).
    """
    from ..layers import layer_shapes, resolve_layer
    from ..objectives.masks import unit_masks
    variant_options = _variants(variants)
    seed_list = _seeds(seeds)
    batch_size, threads, top_k = _positive("batch_size", batch_size), _positive("threads", threads), \
        _positive("top_k", top_k)
    device = _device(device)
    layer_list = [layers] if isinstance(layers, str) else list(layers)
    if not layer_list:
        raise ConfigError(describe("layers", "at least one layer name", layers))
    model_src = as_source(model, "model")
    gen_src = as_source(generator, "generator")
    dgn = [v for v in variant_options if get_variant(v).needs_generator]
    if dgn and gen_src is None:
        raise ConfigError(describe("generator", f"a generator for the variant(s) {dgn}", None,
                                   "Pass generator= (a name such as 'fashion', a factory or a module)."))
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = model_src.load()
        gen = gen_src.load() if (gen_src is not None and dgn) else None
    finally:
        torch.set_num_threads(saved_threads)
    space = getattr(net, "input_space", None)
    size = _input_size(net, variant_options)
    input_shape = (int(getattr(space, "channels", 3)), size, size)
    names = [resolve_layer(net, layer, arg="layers")[0] for layer in layer_list]
    if len(set(names)) != len(names):
        raise ConfigError(describe("layers", "distinct layers", layer_list))
    shapes = layer_shapes(net, names, input_shape)
    unit_specs = units if isinstance(units, Mapping) else {layer: units for layer in layer_list}
    plans: Dict[str, LayerPlan] = {}
    for layer, name in zip(layer_list, names):
        shape = tuple(int(s) for s in shapes[name])
        if len(shape) not in (1, 3):
            raise ConfigError(describe("layers", "layers with (C,) or (C, H, W) outputs", f"{name} with {shape}"))
        spec = unit_specs.get(layer, unit_specs.get(name, "all")) if isinstance(units, Mapping) else units
        plans[name] = LayerPlan(name, shape, tuple(resolve_units(spec, shape[0], name)))
    first = next(iter(plans.values()))
    for variant, options in variant_options.items():  # build each recipe once: bad option values fail here
        build_recipe(gen, first.name, unit_masks(first.shape, [first.units[0]]), variant, options, seed_list[0], size)
    batch = {v: (batch_size if v in BATCHED_VARIANTS else 1) for v in variant_options}
    source = None
    if examples is not None:
        from .examples import image_source
        source = image_source(examples, net)
    identity = {
        "format": FORMAT,
        "model": _source_identity(model_src, net),
        "generator": _source_identity(gen_src, gen) if gen is not None else None,
        "input_shape": list(input_shape),
        "layers": [{"name": p.name, "shape": list(p.shape), "units": list(p.units)} for p in plans.values()],
        "variants": variant_options, "seeds": seed_list, "batch": batch, "threads": threads, "device": device,
        "examples": None if source is None else dict(source.identity(), top_k=top_k),
    }
    plan = SweepPlan(model_src, gen_src if gen is not None else None, plans, variant_options, seed_list, batch,
                     threads, device, input_shape, identity)
    return plan, net, gen, source


def worker_config(plan: SweepPlan) -> WorkerConfig:
    """What every worker of ``plan`` needs (sent once per worker)."""
    return WorkerConfig(plan.model, plan.generator, {n: p.shape for n, p in plan.layers.items()}, plan.variants,
                        plan.threads, plan.device, plan.input_shape[1])


def _backend(workers: Optional[int], ray: Optional[str], plan: SweepPlan, preloaded):
    from .backends import InProcess, ProcessPool
    if workers is not None:
        _positive("workers", workers)
    if ray is not None and not isinstance(ray, str):
        raise ConfigError(describe("ray", "'auto', 'local' or a cluster address", ray))
    if ray is None:
        _check_device_here(plan.device)
    if ray is None and not workers:
        net, gen = preloaded
        for source, module in ((plan.model, net), (plan.generator, gen)):
            if source is not None and source.module is None and module is not None:
                module.to(plan.device)  # the driver's own copy
        return InProcess(preloaded)
    import multiprocessing
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # a spawned child re-running __main__
        raise ConfigError(describe("workers", "used from a script whose sweep call is under "
                                   "`if __name__ == '__main__':`", workers,
                                   "Worker processes import the main script; without the guard they would "
                                   "start the sweep again."))
    for source in (plan.model, plan.generator):
        if source is not None:
            source.check_picklable()
    if ray is not None:
        from .ray_backend import RayBackend
        return RayBackend(ray, workers)
    return ProcessPool(workers)


def _examples(sd: SweepDir, plan: SweepPlan, net: nn.Module, source: Any, top_k: int) -> Dict[str, Any]:
    from .backends import preserved_process_state
    from .examples import save_example_images, selected_indices, top_k_examples
    topk = sd.read_json(EXAMPLES_FILE)
    if topk is None:
        with preserved_process_state(plan.threads):
            from ..render._setup import device_of
            topk = top_k_examples(net, list(plan.layers), source, k=top_k, device=device_of(net) or "cpu")
        sd.write_json(EXAMPLES_FILE, topk)
    save_example_images(sd.root, source, selected_indices(topk, {n: p.units for n, p in plan.layers.items()}))
    return topk


def sweep(model: Any, layers: Union[str, Sequence[str]], units: Any = "all", variants: VariantSpec = "gd", *,
          out_dir: Any, seeds: Any = 0, generator: Any = None, batch_size: int = 8, threads: int = 1,
          device: str = "cpu", examples: Any = None, top_k: int = 9, workers: Optional[int] = None,
          ray: Optional[str] = None, retry_failed: bool = False, progress: bool = True) -> SweepSummary:
    """Render the preferred image of every unit of some layers, with several variants and seeds.

    Results go to ``out_dir`` as a dataset (:mod:`lucent_dgn.sweeps.dataset`): per unit a PNG, the
    raw array (``.npy``) and one index row (``load_index(out_dir)`` gives a DataFrame). Running
    the same call again skips finished units and redoes unfinished ones; after a crash or a kill
    the rerun gives the same dataset as an uninterrupted run. A unit whose render fails (a NaN
    loss, say) is recorded with its error and the sweep goes on.

    Every argument is checked before any work; a bad one raises one error naming it.

    Args:
        model: a name (``"fashion"``, ``"bvlc_alexnet"``, a torchvision classifier), a factory
            ``() -> nn.Module`` (module level, for ``workers``/``ray``), a module, or a
            :class:`~lucent_dgn.sweeps.spec.Source` (name with a weights file).
        layers: layer names (dotted paths or Lucent underscore names).
        units: per layer: ``"all"`` (default), ``"start:stop[:step]"``, ``"0,3,7"``, a list,
            ``range``, boolean mask, or a mask file (``.npy``/``.txt``); a dict gives one per layer.
            A unit of a convolutional layer is the centre unit of a channel.
        variants: a variant name, a list of names, or ``{name: options}`` with the options of the
            variant's recipe (``gd_recipe`` ...: ``iter_n``, ``lr``, ``maxiter``, ``init`` ...;
            ``weight`` is the unit weight). Default ``"gd"``.
        out_dir: the sweep directory (new, empty, or holding this same sweep).
        seeds: one seed or several; each unit is rendered once per seed. Every unit of a seed
            starts from the same initial image or code. Default 0.
        generator: for the DGN variants: a name (``"fashion"``, ``"deepsim-fc6"``), a factory,
            a module or a Source.
        batch_size: rows per render of the gradient-descent variants (default 8); part of the
            sweep's settings, because the rounding of a batched matrix product depends on it.
            L-BFGS variants render one unit at a time.
        threads: torch threads per worker (default 1); part of the settings (DGN results round
            differently with other thread counts).
        device: ``"cpu"`` (default) or ``"cuda"``; part of the settings.
        examples: ``"fashion-mnist"`` (the test set) or a folder of images: keep the ``top_k``
            images that drive each unit most (one forward pass) and store them with the rows.
        top_k: dataset examples per unit (default 9).
        workers: run on a local pool of this many processes (each loads the model once);
            with ``ray``, the number of Ray actors.
        ray: ``"auto"``, ``"local"`` or a Ray cluster address: run on Ray (``lucent-dgn[ray]``).
        retry_failed: render units recorded as failed again.
        progress: show a progress bar over units.

    Returns:
        :class:`SweepSummary`.

    Raises:
        ConfigError: bad arguments: unknown variant or option, unit out of range, an output
            directory that cannot be written or holds a different sweep, ...
        LayerNotFoundError: an unknown layer (with close names).
    """
    from tqdm.auto import tqdm
    t0 = time.perf_counter()
    if ray is not None and not isinstance(ray, str):
        raise ConfigError(describe("ray", "'auto', 'local' or a cluster address", ray))
    SweepDir(out_dir, {}).check_writable()
    plan, net, gen, source = plan_sweep(model, layers, units, variants, seeds=seeds, generator=generator,
                                        batch_size=batch_size, threads=threads, device=device, examples=examples,
                                        top_k=top_k)
    backend = _backend(workers, ray, plan, (net, gen))
    sd = SweepDir(out_dir, plan.identity)
    sd.check()
    order = [unit_key(*k) for k in plan.keys()]
    done = sd.open()
    rendered = failed = 0
    try:
        if retry_failed and any(r["status"] != "ok" for r in done.values()):
            done = {k: r for k, r in done.items() if r["status"] == "ok"}
            sd.rewrite(list(done.values()))
        topk = _examples(sd, plan, net, source, top_k) if source is not None else None
        todo = [k for k, key in zip(plan.keys(), order) if key not in done]
        config = worker_config(plan)
        from .examples import example_records
        with tqdm(total=len(todo), desc="sweep", unit="unit", disable=not progress) as bar:
            for result in backend.run(config, plan.items(todo)):
                item = result.item
                for out in result.outputs:
                    ex = example_records(topk, item.layer, out.unit) if topk is not None else None
                    row = make_row(item.layer, item.variant, item.seed, out, item.rows, result.versions,
                                   result.worker, ex)
                    sd.write_unit(row, out.image)
                    rendered += 1
                    failed += row["status"] != "ok"
                bar.update(len(result.outputs))
        sd.finish(order)
    finally:
        sd.close()
    return SweepSummary(Path(out_dir), len(order), len(order) - len(todo), rendered, failed,
                        time.perf_counter() - t0, backend.name, int(backend.workers or 1))
