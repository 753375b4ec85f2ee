"""The render loop: ``render(model, objective, param, optimizer, steps)`` -> RenderResult.

What happens, in order:

1. Set-up (nothing is changed yet): arguments checked, the model input space resolved for this
   call (see :func:`render`), the parameterization and model checked for device and dtype.
2. The render owns its global state: gradients on (also inside ``torch.no_grad()`` or
   ``torch.inference_mode()``), and with a ``seed`` the global RNGs seeded and restored after.
   The model and the generator are frozen (``requires_grad=False``, eval mode) and in-place ops
   are turned off (pre-ReLU units), counted per parameter/module so nested or concurrent renders
   on one model restore it exactly once.
3. A validation pass without gradients on the initial image: the objective is called once on a
   full forward pass, so bad masks or layer names fail before any work. It records which layers
   the objective reads (by module identity), how often each runs per forward, and whether the
   objective is made of per-item terms (:func:`lucent_dgn.objectives.item_objective`). From then
   on only those layers are hooked and the forward pass stops once they have run for the last
   time (cnnpref's ``forward(end=layer)``).
4. The optimizer runs its steps, calling back into :class:`_RenderProblem` for every evaluation.
5. Clean-up, always (also after an exception or KeyboardInterrupt): hooks removed, parameters'
   ``requires_grad``/``.grad`` and every module's train/eval flag restored, in-place flags restored,
   RNG states restored.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._validate import check_seed
from ..errors import ConfigError, NonFiniteLossError, ShapeError, describe
from ..spaces import ImageSpace
from ._setup import (as_objective, as_optimizer, as_param, check_dtypes, check_grad_mode, device_of, eager_model,
                     resolve_input_space, run_checked)
from .hooks import INPUT, ActivationAccessor, ActivationCapture, frozen, preserve_pre_activations
from .result import RenderResult, StepInfo
from .transforms import Compose

__all__ = ["render"]

log = logging.getLogger(__name__)

Callback = Callable[[StepInfo], Optional[bool]]


class _Record:
    """What a step records of one evaluation: the loss, the per-term (N,) activations and, in
    per-item mode, the (N,) per-item losses."""

    __slots__ = ("loss", "activations", "items")

    def __init__(self, loss: float, activations: Dict[str, np.ndarray], items: Optional[torch.Tensor]) -> None:
        self.loss, self.activations, self.items = loss, activations, items


class _RenderProblem:
    """Implements :class:`lucent_dgn.render.problem.Problem` for one render."""

    def __init__(self, model: Optional[nn.Module], objective, param, space: ImageSpace, transforms: Compose,
                 generator: torch.Generator, n_steps: int, callbacks, bar) -> None:
        self.model, self.objective, self.param, self.space = model, objective, param, space
        self.run_model = eager_model(model) if model is not None else None
        self.transforms, self.generator = transforms, generator
        self.n_steps, self.callbacks, self.bar = n_steps, callbacks, bar
        self.batch_size = param.batch_size  # read once: LucentParam computes it with a call of image_f()
        self.n_evals = 0
        self.step = -1
        self.per_item = False  # decided by validate(): every term of the objective declares per-item losses
        self.last_item_losses: Optional[torch.Tensor] = None
        self.loss_history: List[float] = []
        self.activation_histories: Dict[str, List[np.ndarray]] = {}
        self._records: List[_Record] = []  # this step's evaluations, in order (candidates one each)
        self._step_record: Optional[_Record] = None  # the one the step keeps (the last, or selected)
        self._kept: Optional[_Record] = None  # the record the previous step kept
        self.capture: Optional[ActivationCapture] = None
        self.modules: List[nn.Module] = []   # the modules the objective reads
        self.calls: Dict[int, int] = {}      # id(module) -> calls per forward (validation pass)
        self._names: Dict[Any, nn.Module] = {}  # layer reference -> module, resolved once per render

    @property
    def jitter_offsets(self) -> Optional[tuple]:
        return self.transforms.jitter_offsets

    # -- evaluation ------------------------------------------------------------------------
    def _accessor(self, capture: Optional[ActivationCapture], x: torch.Tensor, item_mode: bool) -> ActivationAccessor:
        return ActivationAccessor(self.model, capture, x, names=self._names, input_space=self.space,
                                  item_mode=item_mode, root=self.run_model)

    def _forward(self, grad: bool, capture: Optional[ActivationCapture], item_mode: bool, check: bool = False):
        with torch.set_grad_enabled(grad):
            x = self.transforms(self.param(self.space))
            if capture is not None:
                if check:
                    run_checked(capture, x, self.space)
                elif capture.modules:
                    capture.run(x)
            T = self._accessor(capture, x, item_mode)
            loss = self.objective(T)
        return loss, T

    def validate(self) -> None:
        """Full forward without gradients: check the objective, learn what it reads and declares."""
        if self.model is None:
            loss, T = self._forward(False, None, item_mode=False)
            calls: Dict[int, int] = {}
        else:
            everything = list(self.run_model.modules())
            with ActivationCapture(self.run_model, everything, stop_early=False) as cap:
                loss, T = self._forward(False, cap, item_mode=False, check=True)
                calls = dict(cap.calls_seen)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ConfigError(describe("objective", "a function returning a scalar tensor",
                                       getattr(loss, "shape", type(loss).__name__)))
        by_id = {id(m): m for m in (self.run_model.modules() if self.run_model is not None else [])}
        self.modules = [by_id[k] for k in sorted(k for k in T.accessed if k != INPUT)]
        self.calls = {k: calls.get(k, 1) for k in (id(m) for m in self.modules)}
        self.per_item = bool(T.item_terms) and not T.undeclared_reads
        if self.per_item:
            with torch.no_grad():
                items = self.objective(self._accessor(T.capture, T.model_input, item_mode=True))
            if not isinstance(items, torch.Tensor) or tuple(items.shape) != (self.batch_size,):
                log.info("The objective's per-item terms combine into shape %s, not (%d,): one joint loss.",
                         tuple(getattr(items, "shape", ())), self.batch_size)
                self.per_item = False
        elif self.batch_size > 1:
            log.info("The objective has terms without per-item losses (e.g. Lucent's own objectives): "
                     "optimizers see one joint loss for the batch.")

    def stop_early_possible(self) -> bool:
        """Early stop is exact only when every needed module runs once per forward (Lucent reads a
        module's last call; a module called several times may run again after any stop)."""
        return all(n <= 1 for n in self.calls.values())

    def evaluate(self) -> torch.Tensor:
        variable_list = self.param.tensors()
        out, T = self._forward(True, self.capture, item_mode=self.per_item)
        loss = out.sum() if self.per_item else out.reshape(())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The objective became {loss.item()} at step {self.step} (evaluation {self.n_evals + 1}). "
                "Check the model for overflowing activations, lower the learning rate, or bound the parameters.")
        grads = torch.autograd.grad(loss, variable_list, allow_unused=True)
        for t, g in zip(variable_list, grads):
            t.grad = torch.zeros_like(t) if g is None else g
        self.n_evals += 1
        value = loss.detach().double()
        self.last_item_losses = out.detach().double() if self.per_item else None
        # The step records its last evaluation unless the optimizer selects others (select_records).
        self._keep(_Record(float(value), _numpy(T.activations), self.last_item_losses))
        return value

    def evaluate_candidates(self, candidates: torch.Tensor, max_batch: Optional[int] = None) -> torch.Tensor:
        """Forward only (no gradient, ``param.variable`` unchanged) at P candidate variables.

        Args:
            candidates: (P, *variable.shape): P values of the whole (N, ...) variable.
            max_batch: at most this many images per forward pass (None: all P x N in one).

        Returns:
            (P, N) float64 per-item losses, or (P, 1) when the objective's loss is not split by item
            (each candidate is then scored as a whole). Counts P evaluations; each candidate is one
            entry of this step's records (see :meth:`select_records`).
        """
        var, n = self.param.variable, self.batch_size
        if not isinstance(candidates, torch.Tensor) or tuple(candidates.shape[1:]) != tuple(var.shape) \
                or candidates.shape[0] < 1:
            raise ShapeError(describe("candidates", f"a tensor (P, {', '.join(map(str, var.shape))})",
                                      getattr(candidates, "shape", type(candidates).__name__)))
        count = int(candidates.shape[0])
        flat = candidates.detach().to(var.device, var.dtype).reshape((count * n,) + tuple(var.shape[1:]))
        chunk = count if max_batch is None else max(1, int(max_batch) // n)
        rows = []
        with torch.no_grad():
            for first in range(0, count, chunk):
                block = flat[first * n:(first + chunk) * n]
                x = self.transforms(torch.func.functional_call(self.param, {"variable": block}, (self.space,)))
                if self.capture is not None and self.capture.modules:
                    self.capture.run(x)
                for p in range(block.shape[0] // n):
                    part = slice(p * n, (p + 1) * n)
                    features = {m: self.capture.by_module[id(m)][part] for m in self.modules
                                if id(m) in self.capture.by_module} if self.capture is not None else {}
                    T = ActivationAccessor(self.model, features, x[part], names=self._names, input_space=self.space,
                                           item_mode=self.per_item, root=self.run_model)
                    out = self.objective(T)
                    loss = out.sum() if self.per_item else out.reshape(())
                    if not torch.isfinite(loss):
                        raise NonFiniteLossError(f"The objective became {loss.item()} at step {self.step} "
                                                 f"(candidate {first + p}). Check the model for overflowing "
                                                 "activations or bound the parameters.")
                    items = out.double() if self.per_item else None
                    self._records.append(_Record(float(loss), _numpy(T.activations), items))
                    rows.append(items if items is not None else loss.double().reshape(1))
        self.n_evals += count
        self._step_record = self._records[-1]
        return torch.stack(rows)

    def _keep(self, record: _Record) -> None:
        self._records.append(record)
        self._step_record = record

    def select_records(self, index: Sequence[int]) -> None:
        """Make this step's record the accepted point instead of the last evaluation.

        ``index[i]`` picks, for item i, the ``index[i]``-th evaluation of this step (0-based; each
        candidate of :meth:`evaluate_candidates` counts as one), or -1: the record the previous
        step kept (the item did not move). One index applies to every item. Call it after the
        step's last evaluation.
        """
        index = [int(k) for k in index]
        index = index * self.batch_size if len(index) == 1 else index
        if len(index) != self.batch_size or any(k < -1 or k >= len(self._records) for k in index) or \
                (self._kept is None and -1 in index):
            raise ConfigError(describe("index", f"{self.batch_size} integers in [-1, {len(self._records) - 1}]",
                                       index, "-1 needs a record kept by an earlier step."))
        chosen = [self._kept if k == -1 else self._records[k] for k in index]
        if all(c is chosen[0] for c in chosen):
            self._step_record = chosen[0]
            return
        if any(c.items is None for c in chosen):
            raise ConfigError(describe("index", "one evaluation for every item when the loss is not split by item",
                                       index))
        items = torch.stack([c.items[i] for i, c in enumerate(chosen)])
        keys = list(dict.fromkeys(k for c in chosen for k in c.activations))
        activations = {k: np.array([c.activations[k][i] if k in c.activations else np.nan
                                    for i, c in enumerate(chosen)], dtype=np.float32) for k in keys}
        self._step_record = _Record(float(items.sum()), activations, items)

    # -- step bookkeeping --------------------------------------------------------------------
    def begin_step(self, t: int) -> None:
        self.step = t
        self._step_record = None
        self._records = []
        self.transforms.resample(self.generator)

    def end_step(self, t: int) -> bool:
        record = self._step_record
        if record is None:  # an optimizer that did not evaluate in this step
            return False
        self.loss_history.append(record.loss)
        self._kept = record
        n_before = len(self.loss_history) - 1
        for key, values in record.activations.items():
            history = self.activation_histories.setdefault(key, [])
            if len(history) < n_before:  # a term that did not report in earlier steps
                history.extend([np.full(self.batch_size, np.nan, np.float32)] * (n_before - len(history)))
            history.append(values)
        info = StepInfo(step=t, loss=record.loss, activation=_primary(record.activations, self.batch_size),
                        n_evals=self.n_evals, param=self.param, activations=dict(record.activations))
        if self.bar is not None and not self.bar.disable:
            self.bar.update(1)
            shown = f"{float(np.mean(info.activation)):.4g}" if info.activation.size else f"{-record.loss:.4g}"
            self.bar.set_postfix(act=shown, evals=self.n_evals, refresh=False)
        stop = False
        for cb in self.callbacks:
            stop = bool(cb(info)) or stop
        return stop or t + 1 >= self.n_steps


def _numpy(activations: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {k: v.float().cpu().numpy() for k, v in activations.items()}


def _primary(activations: Dict[str, np.ndarray], n: int) -> np.ndarray:
    """The first reporting term's (N,) values; an empty array when no term reports."""
    for values in activations.values():
        return values
    return np.zeros(0, np.float32)


@contextlib.contextmanager
def _global_state(seed: Optional[int], device: Optional[torch.device]) -> Iterator[torch.Generator]:
    """Grad mode owned by the render; with a seed, global RNGs seeded and restored afterwards."""
    gen = torch.Generator()
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        if seed is not None:
            devices = [device] if device is not None and device.type == "cuda" else []
            stack.enter_context(torch.random.fork_rng(devices=devices))
            np_state = np.random.get_state()
            stack.callback(np.random.set_state, np_state)
            gen.manual_seed(seed)
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # Lucent's transforms draw from numpy's global RNG
        yield gen


def render(model: Optional[nn.Module], objective: Any, param: Any = None, optimizer: Any = None, steps: int = 200, *,
           transforms: Optional[Sequence[Callable]] = None, seed: Optional[int] = None,
           device: Union[str, torch.device, None] = None, progress: bool = True,
           callbacks: Sequence[Callback] = (), stop_early: bool = True,
           preserve_pre_relu: bool = True, input_space: Optional[ImageSpace] = None,
           preprocess: bool = True) -> RenderResult:
    """Optimise ``param`` so that ``objective`` (a loss) decreases, i.e. the target units fire.

    Args:
        model: the network (left as it was: mode, ``requires_grad``, ``.grad``, hooks). A
            ``torch.compile``'d model renders through its original module (hooks and the early
            stop need eager mode). None for objectives that read only ``"input"`` (black-box
            targets such as a recorded neuron).
        objective: a Lucent ``Objective`` (ours from :func:`lucent_dgn.masked_units` or Lucent's
            own, composed with ``+ - *``), any callable ``T -> scalar loss``, or a Lucent string
            ``"layer:channel"``. Layers are read by module identity; ``""`` is the model output and
            ``"labels"`` Lucent's pseudo-layer. A module called several times per forward is read
            at its last call (as Lucent does).
        param: a :class:`~lucent_dgn.parameterizations.PixelImage`, :class:`~lucent_dgn.DGNImage`,
            another Parameterization, or a Lucent ``param_f``. Default: ``PixelImage(227)``.
            It must live on the model's device. It is not modified except for its variable.
        optimizer: an optimizer object with ``run(problem)`` (``MomentumGD``, ``LBFGSB``,
            ``ScipyLBFGSB``, ``TorchOptimizer``, the gradient-free ``CMAES``, ``GeneticSearch``,
            ``RandomSearch``), a name (``"gd"``, ``"adam"``, ``"lbfgs"``, ``"lbfgsb"``,
            ``"scipy-lbfgsb"``, ``"cmaes"``, ``"ga"``, ``"random-search"``), or a ``torch.optim``
            factory ``params -> Optimizer``.
            Default ``"adam"``.
        steps: number of outer steps (L-BFGS: iterations; each may evaluate several times). > 0.
        transforms: callables applied to the model input each evaluation; objects with a
            ``resample(generator)`` method (e.g. :class:`~lucent_dgn.render.transforms.Jitter`) draw
            new random values once per outer step only, so L-BFGS closures are deterministic.
        seed: an integer in [0, 2**64 - 1] seeding the transform generator and, for the duration of
            the render, torch's and numpy's global RNGs (Lucent's transforms draw from numpy's);
            their states are restored afterwards. Same seed -> bit-identical results on CPU.
        device: where to render; the model and ``param`` are expected there (None = model's device).
        progress: show a tqdm bar with the current target activation.
        callbacks: callables ``cb(StepInfo) -> Optional[bool]``; True stops the render. They may
            call the model (the render's hooks act only on its own forward passes).
        stop_early: stop the forward pass once the objective's layers have run for the last time.
            It changes speed only: with a needed module that runs several times per forward the
            whole forward pass runs.
        preserve_pre_relu: turn off in-place ops during the render so hooked conv/linear outputs
            keep their pre-ReLU values (torchvision's ``ReLU(inplace=True)``).
        input_space: the model's input :class:`~lucent_dgn.spaces.ImageSpace`, declared for this
            call. Resolved per call, in this order: this argument, ``param.model_space`` (declared on
            the parameterization), ``model.input_space`` (declared by the model), then, for a model
            that declares none, Lucent's convention when ``preprocess`` is True: RGB in [0, 1]
            normalised with torchvision's ImageNet mean and std (:class:`~lucent_dgn.spaces.TorchvisionSpace`,
            as ``render_vis(preprocess=True)`` does; logged once per model), else the
            parameterization's own space unchanged. ``param`` itself is never modified.
        preprocess: see ``input_space``. Default True.

    Returns:
        :class:`RenderResult`. A KeyboardInterrupt stops the loop and returns the result so far
        (``interrupted=True``). Activations are recorded per objective term that reports one
        (e.g. each :func:`~lucent_dgn.masked_units`), keyed by the term's name.

    Raises:
        ConfigError: bad arguments (raised before any optimisation step), e.g. a model and a
            parameterization (or its generator) on different devices or of different dtypes, a
            transform that is not callable, a bad seed, or a parameterization made under
            ``torch.inference_mode()``.
        ShapeError: images the model cannot take (wrong channel count or size), found by the
            validation pass before any step.
        NonFiniteLossError: the loss became NaN/inf (names the step).
    """
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps <= 0:
        raise ConfigError(describe("steps", "a positive integer", steps))
    if model is not None and not isinstance(model, nn.Module):
        raise ConfigError(describe("model", "a torch.nn.Module (or None for objectives reading only 'input')",
                                   type(model).__name__))
    seed = check_seed(seed)
    objective = as_objective(objective)
    if param is None:
        from ..parameterizations.pixel import PixelImage
        param = PixelImage(227, seed=seed)
    param = as_param(param)
    optimizer = as_optimizer(optimizer)
    device = torch.device(device) if device is not None else (device_of(model) if model is not None else None)
    if device is not None:
        for name, module in (("model", model), ("param", param)):
            d = device_of(module) if module is not None else None
            if d is not None and d != device:
                raise ConfigError(describe(name, f"on device {device}", str(d),
                                           "Move the model and the parameterization (and its generator) with .to(device)."))
    if model is not None:
        check_dtypes(model, param)
    check_grad_mode(model, param)
    space = resolve_input_space(model, param, input_space, preprocess)
    frozen_modules = ([model] if model is not None else []) + list(getattr(param, "frozen_modules", lambda: [])())
    inplace_ctx = preserve_pre_activations(model) if preserve_pre_relu and model is not None else contextlib.nullcontext()
    pipeline = Compose(transforms or [])
    bar = tqdm(total=int(steps), disable=not progress, desc="render", leave=False)
    interrupted = False
    try:
        with _global_state(seed, device) as gen, frozen(*frozen_modules), inplace_ctx:
            problem = _RenderProblem(model, objective, param, space, pipeline, gen, int(steps), list(callbacks), bar)
            problem.transforms.resample(gen)
            problem.validate()
            capture_ctx = (ActivationCapture(problem.run_model, problem.modules,
                                             stop_early=stop_early and problem.stop_early_possible(),
                                             calls=problem.calls)
                           if model is not None else contextlib.nullcontext())
            with capture_ctx as cap:
                problem.capture = cap
                start = time.perf_counter()
                try:
                    optimizer.run(problem)
                except KeyboardInterrupt:
                    interrupted = True
                    log.warning("render interrupted at step %d; returning the result so far", problem.step)
                wall = time.perf_counter() - start
                result = _collect(problem, wall, interrupted)
    finally:
        bar.close()
        for t in param.tensors():
            t.grad = None
    for cb in callbacks:
        if hasattr(cb, "images") and isinstance(cb.images, dict):
            result.snapshots.update(cb.images)
    result.settings.update({"steps": int(steps), "seed": seed, "optimizer": repr(optimizer),
                            "param": repr(param), "input_space": repr(space),
                            "layers": [_name_of(model, m) for m in problem.modules],
                            "per_item_losses": problem.per_item})
    return result


def _name_of(model: Optional[nn.Module], module: nn.Module) -> str:
    if model is None:
        return ""
    model = eager_model(model)
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)


def _collect(problem: _RenderProblem, wall: float, interrupted: bool) -> RenderResult:
    param = problem.param
    with torch.no_grad():
        x = param(problem.space)  # the final pass sees the image without transforms
        capture = problem.capture
        if capture is not None and capture.modules:
            capture.run(x)
        T = problem._accessor(capture, x, item_mode=False)
        problem.objective(T)
        finals = {k: v.float().cpu().numpy() for k, v in T.activations.items()}
        images = param.to_rgb(x, problem.space).detach().float().cpu().numpy()
    variable = param.tensors()[0].detach()
    n_hist = len(problem.loss_history)
    histories = {k: np.stack(v + [np.full(problem.batch_size, np.nan, np.float32)] * (n_hist - len(v)))
                 for k, v in problem.activation_histories.items()}
    primary = next(iter(histories.values()), np.zeros((n_hist, 0), np.float32))
    model_input = x.detach().float().cpu().numpy().copy()  # x may be the variable itself (equal spaces)
    return RenderResult(images=images, raw=variable.float().cpu().numpy(), model_input=model_input,
                        loss_history=np.asarray(problem.loss_history, dtype=np.float64), activation_history=primary,
                        final_activation=_primary(finals, problem.batch_size), final_params=variable.clone(),
                        n_evals=problem.n_evals, steps=n_hist, wall_time=wall, interrupted=interrupted,
                        activations=finals, activation_histories=histories)
