"""The worker side of a sweep: load the model once, render work items, hand back per-unit results.

Every backend runs the same :class:`Worker`; only where it lives differs (this process, a pool
process, a Ray actor). A unit's result depends on its work item's (layer, unit, variant,
options, seed) and the sweep's ``rows``/``threads``/``device`` only:

* every item of a render starts from the same initial state, drawn from the seed alone (what a
  one-image render with that seed draws), and the render's jitter comes from the same seed;
* renders of a batched variant always have the same number of rows (short groups are padded),
  because on CPU (MKL) and GPU (cuBLAS) a matrix product's rounding depends on the batch size
  but, for a given batch size, not on an item's position or its batch mates; the tests check
  this byte for byte;
* gradient descent normalises each item's gradient on its own, so items do not interact.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import LucentDGNError
from ..objectives.masks import unit_masks
from ..render.result import RenderResult
from .spec import Source, WorkItem

__all__ = ["WorkerConfig", "UnitOutput", "ItemResult", "Worker", "build_recipe", "render_group", "initial_state"]


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs, sent once when it starts (picklable).

    Attributes:
        model, generator: sources loaded once per worker (generator None unless a variant needs one).
        shapes: feature shape (C, ...) of each layer, by resolved name.
        variants: canonical options per variant.
        threads: torch threads per worker.
        device: torch device of the renders.
        input_size: the model's input side S (pixels).
    """

    model: Source
    generator: Optional[Source]
    shapes: Dict[str, Tuple[int, ...]]
    variants: Dict[str, Dict[str, Any]]
    threads: int
    device: str
    input_size: int


@dataclass
class UnitOutput:
    """One unit's result.

    Attributes:
        unit: the unit index.
        image: (H, W, 3) float32 RGB on the 0-1 scale, unclipped; None when the unit failed.
        history: (T,) float32 target activation per step; None when failed.
        final_activation: activation of the final image (no transforms); None when failed.
        steps, evaluations: outer steps and forward+backward evaluations of the render.
        wall_time_s: the render's loop time divided by the units it rendered.
        error: ``"ErrorType: message"`` when the unit failed, else None.
    """

    unit: int
    image: Optional[np.ndarray] = None
    history: Optional[np.ndarray] = None
    final_activation: Optional[float] = None
    steps: int = 0
    evaluations: int = 0
    wall_time_s: float = 0.0
    error: Optional[str] = None


@dataclass
class ItemResult:
    """What a worker hands back for one work item: its units' outputs, who rendered them, with what."""

    item: WorkItem
    outputs: List[UnitOutput]
    worker: str
    versions: Dict[str, str]


def initial_state(variant: str, options: Mapping[str, Any], seed: int, input_size: int,
                  generator: Optional[nn.Module]) -> Any:
    """The ``init`` every item of a render starts from: the option as given, or for the random
    kinds what a one-image render with ``seed`` draws.

    Pixel variants, ``init="random"``: integers uniform in [0, 255], (1, H, W, 3), drawn from a
    generator seeded with ``seed`` (as :class:`~lucent_dgn.PixelImage` draws them). Generator
    variants, ``"cnnpref"``, ``"normal"``, ``"stats"``: one code from
    :func:`~lucent_dgn.parameterizations.codes.initial_code` with ``seed`` (as
    :class:`~lucent_dgn.DGNImage`).
    """
    from ..recipes import get_variant
    spec = get_variant(variant)
    init = options.get("init", spec.defaults.get("init"))
    if not isinstance(init, str):
        return np.asarray(init, dtype=np.float32)
    if spec.needs_generator and init in ("cnnpref", "normal", "stats"):
        from ..parameterizations.codes import initial_code
        try:
            stats = getattr(generator, "code_stats", None) or {}
        except LucentDGNError:  # a generator without stored statistics
            stats = {}
        mean, std = (torch.as_tensor(stats[k]).float() if stats.get(k) is not None else None for k in ("mean", "std"))
        return initial_code(init, 1, tuple(generator.code_shape), seed=seed, mean=mean, std=std)[0].numpy()
    if not spec.needs_generator and init == "random":
        size = options.get("image_size") or input_size
        h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
        draw = torch.randint(0, 256, (1, h, w, 3), generator=torch.Generator().manual_seed(int(seed)))
        return draw.float().numpy()
    return init


def build_recipe(generator: Optional[nn.Module], layer: str, masks: torch.Tensor, variant: str,
                 options: Mapping[str, Any], seed: int, input_size: int):
    """The :func:`lucent_dgn.recipe` of ``masks.shape[0]`` items of one variant, all from the same
    initial state.

    Args:
        generator: the generator (given to the variants that need one).
        masks: (B, *feature_shape) one-unit masks, one per item.
        options: the variant's recipe options (:func:`lucent_dgn.recipe_options`).
        seed: seed of the initial state (see :func:`initial_state`) and of the render.
        input_size: the model's input side (the size of a random initial image).
    """
    from ..recipes import get_variant, recipe
    spec = get_variant(variant)
    opts = dict(options)
    if "init" in spec.defaults:
        opts["init"] = initial_state(variant, opts, seed, input_size, generator)
    return recipe(variant, layer, masks, generator if spec.needs_generator else None, batch=masks.shape[0],
                  seed=seed, **opts)


def render_group(model: nn.Module, generator: Optional[nn.Module], layer: str, masks: torch.Tensor, variant: str,
                 options: Mapping[str, Any], seed: int, input_size: int) -> RenderResult:
    """Render :func:`build_recipe`'s recipe on ``model`` with ``seed``: the only place a sweep renders."""
    return build_recipe(generator, layer, masks, variant, options, seed, input_size).render(
        model, seed=seed, progress=False)


def _fatal(err: BaseException) -> bool:
    """Errors that say nothing about the unit (out of memory): they stop the sweep, a rerun resumes."""
    return isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"


class Worker:
    """Loads the model (and generator) once and renders work items.

    Args:
        config: the sweep's :class:`WorkerConfig`.
        preloaded: ``(model, generator)`` already loaded in this process (the in-process backend
            reuses the driver's), or None to load them from the config's sources.
    """

    def __init__(self, config: WorkerConfig, preloaded: Optional[Tuple[nn.Module, Optional[nn.Module]]] = None) -> None:
        from ..runs import versions
        self.config = config
        if preloaded is not None:
            self.model, self.generator = preloaded
        else:
            self.model = self._load(config.model)
            from ..recipes import get_variant
            needs_generator = any(get_variant(v).needs_generator for v in config.variants)
            self.generator = self._load(config.generator) if needs_generator and config.generator else None
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.versions = versions()

    def _load(self, source: Source) -> nn.Module:
        module = source.load()
        return module if source.module is not None else module.to(self.config.device)

    def run(self, item: WorkItem) -> ItemResult:
        """Render one work item; a failing render is retried unit by unit, each failure recorded."""
        return ItemResult(item, self._outputs(item), self.id, self.versions)

    def _outputs(self, item: WorkItem) -> List[UnitOutput]:
        try:
            return self._render(item, list(item.units))
        except Exception as err:  # noqa: BLE001 - recorded per unit below
            if _fatal(err):
                raise
            if len(item.units) == 1:
                return [UnitOutput(item.units[0], error=f"{type(err).__name__}: {err}")]
        outputs = []
        for unit in item.units:
            try:
                outputs += self._render(item, [unit])
            except Exception as err:  # noqa: BLE001 - one unit's failure is its record
                if _fatal(err):
                    raise
                outputs.append(UnitOutput(unit, error=f"{type(err).__name__}: {err}"))
        return outputs

    def _render(self, item: WorkItem, units: Sequence[int]) -> List[UnitOutput]:
        rows = list(units) + [units[0]] * (item.rows - len(units))
        masks = unit_masks(self.config.shapes[item.layer], rows)
        result = render_group(self.model, self.generator, item.layer, masks, item.variant,
                              self.config.variants[item.variant], item.seed, self.config.input_size)
        wall = result.wall_time / len(units)
        return [UnitOutput(unit, image=np.ascontiguousarray(result.images[i], dtype=np.float32),
                           history=np.ascontiguousarray(result.activation_history[:, i], dtype=np.float32),
                           final_activation=float(result.final_activation[i]), steps=int(result.steps),
                           evaluations=int(result.n_evals), wall_time_s=wall)
                for i, unit in enumerate(units)]
