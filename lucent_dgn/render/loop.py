"""The render loop: ``render(model, objective, param, optimizer, steps)`` -> RenderResult.

What happens, in order:

1. Set-up: resolve the parameterization (ours or a Lucent ``param_f``), decide the model's input
   space, move nothing (the parameterization must be on the model's device), freeze the model and
   the generator (``requires_grad=False``, eval mode), turn off in-place ops (pre-ReLU units).
2. A validation pass without gradients on the initial image: the objective is called once on a
   full forward pass, so bad masks or layer names fail before any work, and the layers it reads
   are recorded. From then on only those layers are hooked and the forward pass stops as soon as
   they have run (cnnpref's ``forward(end=layer)``).
3. The optimizer runs its steps, calling back into :class:`_RenderProblem` for every evaluation.
4. Clean-up, always (also after an exception or KeyboardInterrupt): hooks removed, parameters'
   ``requires_grad``/``.grad`` and every module's train/eval flag restored, in-place flags restored.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, NonFiniteLossError, ShapeError, describe
from ._setup import as_objective, as_optimizer, as_param, check_dtypes, device_of, run_checked
from ..layers import list_layers
from .hooks import INPUT, ActivationAccessor, ActivationCapture, frozen, preserve_pre_activations
from .result import RenderResult, StepInfo
from .transforms import Compose

__all__ = ["render"]

log = logging.getLogger(__name__)

Callback = Callable[[StepInfo], Optional[bool]]


class _Record:
    """What a step records of one evaluation: the loss, the (N,) activation and, lazily, the (N,)
    per-item losses (``source`` is ``(reports, loss)`` to split on demand, or the losses themselves)."""

    __slots__ = ("loss", "activation", "_items")

    def __init__(self, loss: float, activation: np.ndarray, source: Any) -> None:
        self.loss, self.activation, self._items = loss, activation, source

    def item_losses(self, problem: "_RenderProblem") -> Optional[torch.Tensor]:
        if isinstance(self._items, tuple):
            self._items = problem._item_losses(*self._items)
        return self._items


class _RenderProblem:
    """Implements :class:`lucent_dgn.render.problem.Problem` for one render."""

    def __init__(self, model, objective, param, transforms: Compose, generator: torch.Generator, n_steps,
                 callbacks, bar) -> None:
        self.model, self.objective, self.param = model, objective, param
        self.transforms, self.generator = transforms, generator
        self.n_steps, self.callbacks, self.bar = n_steps, callbacks, bar
        self.batch_size = param.batch_size  # read once: LucentParam computes it with a call of image_f()
        self.n_evals = 0
        self.step = -1
        self._last_eval: Optional[_Record] = None  # the record of the last evaluate()
        self.loss_history: List[float] = []
        self.activation_history: List[np.ndarray] = []
        self._step_loss: Optional[float] = None
        self._step_activation: Optional[np.ndarray] = None
        self._step_record: Optional[_Record] = None
        self._records: List[_Record] = []  # this step's evaluations, in order (candidates one each)
        self._kept: Optional[_Record] = None  # the record the previous step kept
        self.capture: Optional[ActivationCapture] = None
        self.layers: List[str] = []
        self._names: Dict[Any, str] = {}  # layer reference -> dotted name, resolved once per render

    @property
    def jitter_offsets(self) -> Optional[tuple]:
        return self.transforms.jitter_offsets

    # -- evaluation ------------------------------------------------------------------------
    def _forward(self, grad: bool, capture: ActivationCapture, check: bool = False):
        with torch.set_grad_enabled(grad):
            x = self.transforms(self.param())
            if check:
                run_checked(capture, x)
            elif capture.names:
                capture.run(x)
            T = ActivationAccessor(self.model, capture.features, x, names=self._names)
            loss = self.objective(T)
        return loss, T

    def validate(self) -> None:
        """Full forward without gradients: check the objective, learn which layers it reads."""
        with ActivationCapture(self.model, list_layers(self.model), stop_early=False) as cap:
            loss, T = self._forward(False, cap, check=True)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ConfigError(describe("objective", "a function returning a scalar tensor",
                                       getattr(loss, "shape", type(loss).__name__)))
        self.layers = sorted(T.accessed - {INPUT})

    def evaluate(self) -> torch.Tensor:
        variable_list = self.param.tensors()
        loss, T = self._forward(True, self.capture)
        loss = loss.reshape(())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The objective became {loss.item()} at step {self.step} (evaluation {self.n_evals + 1}). "
                "Check the model for overflowing activations, lower the learning rate, or bound the parameters.")
        grads = torch.autograd.grad(loss, variable_list, allow_unused=True)
        for t, g in zip(variable_list, grads):
            t.grad = torch.zeros_like(t) if g is None else g
        self.n_evals += 1
        value = loss.detach().double()
        # Per-item losses are split only when an optimizer asks. The step records its last evaluation
        # unless the optimizer selects others (select_records).
        self._last_eval = _Record(float(value), _activation(T, float(value), self.batch_size), (T.reports, value))
        self._keep(self._last_eval)
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
                x = self.transforms(torch.func.functional_call(self.param, {"variable": block}, ()))
                if self.capture.names:
                    self.capture.run(x)
                for p in range(block.shape[0] // n):
                    part = slice(p * n, (p + 1) * n)
                    T = ActivationAccessor(self.model, {k: v[part] for k, v in self.capture.features.items()},
                                           x[part], names=self._names)
                    value = self._checked(self.objective(T).reshape(()), f"candidate {first + p}").double()
                    record = _Record(float(value), _activation(T, float(value), n), (T.reports, value))
                    self._records.append(record)
                    items = record.item_losses(self)
                    rows.append(value.reshape(1) if items is None else items)
        self.n_evals += count
        if any(r.numel() != rows[0].numel() for r in rows):
            rows = [r.sum().reshape(1) for r in rows]
        self._use(self._records[-1])
        return torch.stack(rows).to(torch.float64)

    def _checked(self, loss: torch.Tensor, where: str) -> torch.Tensor:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The objective became {loss.item()} at step {self.step} ({where}). Check the model for "
                "overflowing activations or bound the parameters.")
        return loss

    def _keep(self, record: "_Record") -> None:
        self._records.append(record)
        self._use(record)

    def _use(self, record: "_Record") -> None:
        self._step_record = record
        self._step_loss, self._step_activation = record.loss, record.activation

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
            self._use(chosen[0])
            return
        items = [c.item_losses(self) for c in chosen]
        if any(v is None for v in items):
            raise ConfigError(describe("index", "one evaluation for every item when the loss is not split by item",
                                       index))
        mixed = torch.stack([v[i] for i, v in enumerate(items)])
        activation = np.array([c.activation[i] for i, c in enumerate(chosen)], dtype=np.float32)
        self._use(_Record(float(mixed.sum()), activation, mixed))

    @property
    def last_item_losses(self) -> Optional[torch.Tensor]:
        """(N,) per-item losses of the last evaluation, or None (computed on first access)."""
        return None if self._last_eval is None else self._last_eval.item_losses(self)

    def _item_losses(self, reports: Dict[str, torch.Tensor], value: torch.Tensor) -> Optional[torch.Tensor]:
        """Per-item losses reported by the objective, if they add up to the total loss."""
        items = reports.get("loss")
        if items is None or items.shape != (self.batch_size,):
            return None
        items = items.double()
        if not torch.allclose(items.sum(), value, rtol=1e-5, atol=1e-6 * (1.0 + float(value.abs()))):
            return None  # other terms (weights, regularisers) are not split per item
        return items

    # -- step bookkeeping --------------------------------------------------------------------
    def begin_step(self, t: int) -> None:
        self.step = t
        self._step_loss = None
        self._step_activation = None
        self._records = []
        self.transforms.resample(self.generator)

    def end_step(self, t: int) -> bool:
        if self._step_loss is None:  # an optimizer that did not evaluate in this step
            return False
        self.loss_history.append(self._step_loss)
        self.activation_history.append(self._step_activation)
        self._kept = self._step_record
        info = StepInfo(step=t, loss=self._step_loss, activation=self._step_activation, n_evals=self.n_evals,
                        param=self.param)
        if self.bar is not None and not self.bar.disable:
            self.bar.update(1)
            self.bar.set_postfix(act=f"{float(np.mean(self._step_activation)):.4g}", evals=self.n_evals, refresh=False)
        stop = False
        for cb in self.callbacks:
            stop = bool(cb(info)) or stop
        return stop or t + 1 >= self.n_steps


def render(model: nn.Module, objective: Any, param: Any = None, optimizer: Any = None, steps: int = 200, *,
           transforms: Optional[Sequence[Callable]] = None, seed: Optional[int] = None,
           device: Union[str, torch.device, None] = None, progress: bool = True,
           callbacks: Sequence[Callback] = (), stop_early: bool = True,
           preserve_pre_relu: bool = True) -> RenderResult:
    """Optimise ``param`` so that ``objective`` (a loss) decreases, i.e. the target units fire.

    Args:
        model: the network (left as it was: mode, ``requires_grad``, ``.grad``, hooks).
        objective: a Lucent ``Objective`` (ours from :func:`lucent_dgn.masked_units` or Lucent's
            own, composed with ``+ - *``), any callable ``T -> scalar loss``, or a Lucent string
            ``"layer:channel"``.
        param: a :class:`~lucent_dgn.parameterizations.PixelImage`, :class:`~lucent_dgn.DGNImage`,
            another Parameterization, or a Lucent ``param_f``. Default: ``PixelImage(227)``.
            It must live on the model's device.
        optimizer: an optimizer object with ``run(problem)`` (``MomentumGD``, ``LBFGSB``,
            ``ScipyLBFGSB``, ``TorchOptimizer``), a name (``"gd"``, ``"adam"``, ``"lbfgs"``,
            ``"lbfgsb"``, ``"scipy-lbfgsb"``), or a ``torch.optim`` factory ``params -> Optimizer``.
            Default ``"adam"``.
        steps: number of outer steps (L-BFGS: iterations; each may evaluate several times). > 0.
        transforms: callables applied to the model input each evaluation; objects with a
            ``resample(generator)`` method (e.g. :class:`~lucent_dgn.render.transforms.Jitter`) draw
            new random values once per outer step only, so L-BFGS closures are deterministic.
        seed: seeds the transform generator, torch's and numpy's global RNGs (for Lucent
            transforms); same seed -> bit-identical results on CPU.
        device: where to render; the model and ``param`` are expected there (None = model's device).
        progress: show a tqdm bar with the current target activation.
        callbacks: callables ``cb(StepInfo) -> Optional[bool]``; True stops the render.
        stop_early: stop the forward pass once the objective's layers have run.
        preserve_pre_relu: turn off in-place ops during the render so hooked conv/linear outputs
            keep their pre-ReLU values (torchvision's ``ReLU(inplace=True)``).

    Returns:
        :class:`RenderResult`. A KeyboardInterrupt stops the loop and returns the result so far
        (``interrupted=True``).

    Raises:
        ConfigError: bad arguments (raised before any optimisation step), e.g. a model and a
            parameterization (or its generator) on different devices or of different dtypes, or a
            transform that is not callable.
        ShapeError: images the model cannot take (wrong channel count or size), found by the
            validation pass before any step.
        NonFiniteLossError: the loss became NaN/inf (names the step).
    """
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps <= 0:
        raise ConfigError(describe("steps", "a positive integer", steps))
    if not isinstance(model, nn.Module):
        raise ConfigError(describe("model", "a torch.nn.Module", type(model).__name__))
    objective = as_objective(objective)
    if param is None:
        from ..parameterizations.pixel import PixelImage
        param = PixelImage(227, seed=seed)
    param = as_param(param)
    optimizer = as_optimizer(optimizer)
    device = torch.device(device) if device is not None else device_of(model)
    if device is not None:
        for name, module in (("model", model), ("param", param)):
            d = device_of(module)
            if d is not None and d != device:
                raise ConfigError(describe(name, f"on device {device}", str(d),
                                           "Move the model and the parameterization (and its generator) with .to(device)."))
    check_dtypes(model, param)
    if getattr(param, "model_space", None) is None and hasattr(model, "input_space"):
        param.model_space = model.input_space
    gen = torch.Generator()
    if seed is not None:
        gen.manual_seed(int(seed))
        torch.manual_seed(int(seed))
        np.random.seed(int(seed) % 2**32)
    frozen_modules = [model] + list(getattr(param, "frozen_modules", lambda: [])())
    inplace_ctx = preserve_pre_activations(model) if preserve_pre_relu else contextlib.nullcontext()
    pipeline = Compose(transforms or [])
    bar = tqdm(total=int(steps), disable=not progress, desc="render", leave=False)
    problem = _RenderProblem(model, objective, param, pipeline, gen, int(steps), list(callbacks), bar)
    interrupted = False
    try:
        with frozen(*frozen_modules), inplace_ctx:
            problem.transforms.resample(gen)
            problem.validate()
            with ActivationCapture(model, problem.layers, stop_early=stop_early) as cap:
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
                            "param": repr(param), "layers": problem.layers})
    return result


def _activation(T: ActivationAccessor, loss: float, n: int) -> np.ndarray:
    """(N,) float32: the objective's reported activation, else ``-loss`` split evenly over the items."""
    act = T.reports.get("activation")
    return act.float().cpu().numpy() if act is not None else np.full(n, -loss / n, dtype=np.float32)


def _collect(problem: _RenderProblem, wall: float, interrupted: bool) -> RenderResult:
    param = problem.param
    with torch.no_grad():
        x = param()  # the final pass sees the image without transforms
        capture = problem.capture
        if capture is not None and capture.names:
            capture.run(x)
        T = ActivationAccessor(problem.model, capture.features if capture else {}, x, names=problem._names)
        final_act = _activation(T, float(problem.objective(T)), problem.batch_size)
        images = param.to_rgb(x).detach().float().cpu().numpy()
    variable = param.tensors()[0].detach()
    n_hist = len(problem.activation_history)
    acts = np.stack(problem.activation_history) if n_hist else np.zeros((0, problem.batch_size), np.float32)
    model_input = x.detach().float().cpu().numpy().copy()  # x may be the variable itself (equal spaces)
    return RenderResult(images=images, raw=variable.float().cpu().numpy(), model_input=model_input,
                        loss_history=np.asarray(problem.loss_history, dtype=np.float64), activation_history=acts,
                        final_activation=final_act, final_params=variable.clone(), n_evals=problem.n_evals,
                        steps=n_hist, wall_time=wall, interrupted=interrupted)
