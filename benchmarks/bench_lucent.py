"""Item 3: lucent_dgn's render against Lucent's ``render_vis`` with the same objective, param and optimizer.

Both get torchvision's AlexNet (random weights), Lucent's own objective (``channel('classifier_6', 0)``
for fc8, ``channel('features_0', 0)`` for conv1), the same Lucent ``param_f`` at 227 px, Adam with
lr 0.05 (Lucent's default) and the same transform list: ``[normalize()]`` (what ``preprocess=True``
appends) or Lucent's ``standard_transforms + [normalize()]``. "As users pass it" means the model
only in eval mode, weights trainable: that is what Lucent computes with; lucent_dgn freezes the
model during the render by itself. Lucent's per-step times come from a wrapper around its
optimizer's ``step``; Lucent's forward hooks (23 per call, never removed) are cleared after every
call so calls do not pile them up.

The ``3.dgn_param_f`` rows time our DGN parameterization as a Lucent ``param_f``
(``DGNImage.lucent_param_f()``) inside ``render_vis`` against ``lucent_dgn.render`` with the same
``DGNImage``: the shipped Fashion-MNIST generator and classifier (grey 28 px, the README's
``render_vis`` call), ``masked_units("fc2", unit 3)``, Adam lr 0.05, code bounds ``k=1``. The
generator is passed as users have it (weights trainable) on both sides; each side gets its own
copy of both networks, so neither sees the other's freezing.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from typing import Callable, Dict, List, Tuple

import torch

import lucent_dgn as ld
from _pipelines import tv_alexnet
from _report import Row, row
from _timing import Lockstep, StepClock, details, interleave, ratio

__all__ = ["run"]


def _param_f(fft: bool) -> Callable:
    from lucent.optvis import param

    def param_f():
        return param.image(227, fft=fft, decorrelate=fft)
    return param_f


def _transforms(standard: bool) -> list:
    from lucent.optvis import transform
    return (list(transform.standard_transforms) if standard else []) + [transform.normalize()]


def _objective(layer: str):
    from lucent.optvis import objectives
    return objectives.channel(layer, 0)


def _spend_one_draw() -> None:
    """Draw one set of random transforms, as lucent_dgn's validation pass does before its first
    step, so that step k of both loops gets the same draws."""
    x = torch.zeros(1, 3, 227, 227)
    for t in _transforms(True):
        x = t(x)


def lucent_loop(model: torch.nn.Module, layer: str, fft: bool, standard: bool, steps: int,
                on_step: Callable[[], None]) -> Callable[[], None]:
    """One ``render_vis`` call; ``on_step`` runs after each optimizer step (a wrapper of ``step``)."""
    from lucent.optvis.render import render_vis

    def factory(params):
        opt = torch.optim.Adam(params, lr=5e-2)
        step = opt.step

        def timed_step(closure=None):
            out = step(closure)
            on_step()
            return out
        opt.step = timed_step
        return opt

    def loop() -> None:
        if standard:
            _spend_one_draw()
        try:
            render_vis(model, _objective(layer), _param_f(fft), optimizer=factory, transforms=_transforms(standard),
                       thresholds=(steps,), progress=False, show_image=False, preprocess=False)
        finally:
            for m in model.modules():  # Lucent never removes its hooks
                m._forward_hooks.clear()
    return loop


def ours_loop(model: torch.nn.Module, layer: str, fft: bool, standard: bool, steps: int,
              on_step: Callable[[], None]) -> Callable[[], None]:
    """One ``lucent_dgn.render`` call with the same pieces; ``on_step`` is its callback. No seed:
    Lucent's transforms draw from numpy's global generator, as under ``render_vis``."""
    def loop() -> None:
        optimizer = ld.TorchOptimizer(lambda p: torch.optim.Adam(p, lr=5e-2))
        ld.render(model, _objective(layer), _param_f(fft), optimizer, steps, transforms=_transforms(standard),
                  progress=False, callbacks=[lambda info: on_step()], seed=None)
    return loop


def pair(ours_model, lucent_model, layer: str, fft: bool, standard: bool, steps: int,
         names: Tuple[str, str]) -> Callable[[], Dict[str, StepClock]]:
    """``run()`` of ours and Lucent in lockstep (:class:`_timing.Lockstep`), same random draws."""
    calls = [0]

    def run() -> Dict[str, StepClock]:
        calls[0] += 1
        order = names if calls[0] % 2 else names[::-1]
        lock = Lockstep(*order, numpy_seed=1000 + calls[0])
        loops = {names[0]: ours_loop(ours_model, layer, fft, standard, steps, lock.hook(names[0])),
                 names[1]: lucent_loop(lucent_model, layer, fft, standard, steps, lock.hook(names[1]))}
        with contextlib.redirect_stdout(io.StringIO()):
            return lock.run(loops)
    return run


def _piece(model, fft: bool, standard: bool, size: int, steps: int) -> Callable[[], StepClock]:
    """One part of a Lucent-defaults step, fwd + bwd w.r.t. the param: ``model`` None = param and
    transforms only (loss = image sum); fft/standard False = the bare network at ``size`` px."""
    net = None if model is None else copy.deepcopy(model).requires_grad_(False)

    def run() -> StepClock:
        clock = StepClock()
        if fft or standard:
            params, image_f = _param_f(fft)()
        else:
            params = [torch.rand(1, 3, size, size, requires_grad=True)]
            image_f = lambda: params[0]  # noqa: E731
        tf = _transforms(standard)
        for _ in range(steps):
            x = image_f()
            for t in tf:
                x = t(x)
            out = net(x) if net is not None else x
            torch.autograd.grad(out[:, 0].sum() if net is not None else out.sum(), params)
            clock.tick()
        return clock
    return run


def breakdown(model, quick: bool, threads: int) -> List[Row]:
    """Where a frozen Lucent-defaults step goes: network at 227 and at 251 px, fft param + transforms."""
    clock = "cpu" if threads == 1 else "wall"
    res = interleave({"net 227": _piece(model, False, False, 227, 4), "net 251": _piece(model, False, False, 251, 4),
                      "fft param + standard transforms": _piece(None, True, True, 227, 4),
                      "pixel param + normalize": _piece(None, False, False, 227, 4)}, 3 if quick else 7)
    kw = dict(clock=clock, threads=threads)
    return [row(3, f"3.breakdown.{k.replace(' ', '_')}", f"Lucent defaults step breakdown: {k} (ms)",
                res[k].get(clock).median_ms, "", **kw) for k in res]


def _to_grey(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1, keepdim=True)


def _dgn_param(generator: torch.nn.Module) -> "ld.DGNImage":
    lower, upper = generator.code_bounds(k=1.0)
    return ld.DGNImage(generator, init="stats", lower=lower, upper=upper, seed=0)


def _dgn_objective():
    return ld.masked_units("fc2", ld.unit_mask((10,), 3))


def _timed_adam(on_step: Callable[[], None]) -> Callable:
    def factory(params):
        opt = torch.optim.Adam(params, lr=5e-2)
        step = opt.step

        def timed_step(closure=None):
            out = step(closure)
            on_step()
            return out
        opt.step = timed_step
        return opt
    return factory


def dgn_pair(model_frozen_by_user: bool, steps: int, names: Tuple[str, str]) -> Callable[[], Dict[str, StepClock]]:
    """Lockstep ``run()`` of ``render(model, obj, DGNImage)`` and ``render_vis(model, obj,
    DGNImage.lucent_param_f())``; Lucent's model is frozen by the user or as users pass it."""
    from lucent.optvis.render import render_vis
    from lucent_dgn.generators.small import fashion_generator
    from lucent_dgn.models.fashion import fashion_classifier

    ours_model, ours_gen = fashion_classifier(), fashion_generator()
    lucent_model, lucent_gen = fashion_classifier(), fashion_generator()
    if model_frozen_by_user:
        lucent_model.requires_grad_(False)
    calls = [0]

    def ours(on_step):
        def loop() -> None:
            ld.render(ours_model, _dgn_objective(), _dgn_param(ours_gen), ld.TorchOptimizer(lambda p: torch.optim.Adam(p, lr=5e-2)), steps, progress=False,
                      callbacks=[lambda info: on_step()])
        return loop

    def lucent(on_step):
        def loop() -> None:
            try:
                with ld.preserve_pre_activations(lucent_model):
                    render_vis(lucent_model, _dgn_objective(), _dgn_param(lucent_gen).lucent_param_f(),
                               optimizer=_timed_adam(on_step), transforms=[_to_grey], preprocess=False,
                               fixed_image_size=28, thresholds=(steps,), progress=False, show_image=False)
            finally:
                for m in lucent_model.modules():  # Lucent never removes its hooks
                    m._forward_hooks.clear()
                lucent_model.zero_grad(set_to_none=True)  # nor the model's .grad (unfrozen row)
        return loop

    def run() -> Dict[str, StepClock]:
        calls[0] += 1
        order = names if calls[0] % 2 else names[::-1]
        lock = Lockstep(*order)
        return lock.run({names[0]: ours(lock.hook(names[0])), names[1]: lucent(lock.hook(names[1]))})
    return run


def dgn_rows(quick: bool, threads: int) -> List[Row]:
    """``DGNImage.lucent_param_f()`` under ``render_vis`` vs ``render`` with the same DGNImage."""
    clock = "cpu" if threads == 1 else "wall"
    specs = [  # key, what, Lucent's model frozen by the user, target
        ("3.dgn_param_f.frozen", "DGN lucent_param_f in render_vis / render, shipped Fashion generator "
         "(classifier frozen by the user)", True, "<= 1.10"),
        ("3.dgn_param_f.users", "DGN lucent_param_f in render_vis / render, shipped Fashion generator "
         "(classifier as users pass it)", False, ""),
    ]
    variants = {key: dgn_pair(frozen, 20, (f"{key} ours", f"{key} lucent")) for key, _, frozen, _ in specs}
    res = interleave(variants, 6 if quick else 12)
    kw = dict(clock=clock, threads=threads)
    return [row(3, key, what, ratio(res[f"{key} lucent"], res[f"{key} ours"], clock), target,
                **kw, **details(res, f"{key} lucent", f"{key} ours"))
            for key, what, _, target in specs]


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    """Rows of item 3 (batch 1). ``preprocess=False`` plus an explicit ``normalize()`` equals
    Lucent's ``preprocess=True`` for a torchvision model and lets both loops get the same list.
    Every comparison runs the two loops in lockstep (one step each in turn)."""
    warnings.filterwarnings("ignore")
    clock = "cpu" if threads == 1 else "wall"
    users = tv_alexnet()                                   # as users pass it: eval(), trainable
    froze = copy.deepcopy(users).requires_grad_(False)     # a user who froze it
    ours_model = copy.deepcopy(users)
    steps = 5
    specs = [  # key, what, layer, fft, standard transforms, Lucent's model, target
        ("3.pixel.fc8", "vs Lucent, pixel fc8 (model as users pass it)", "classifier_6", False, False, users, "<= 0.35"),
        ("3.defaults.fc8", "vs Lucent, fft + standard transforms, fc8", "classifier_6", True, True, users, "<= 0.30"),
        ("3.pixel.conv1", "vs Lucent, pixel conv1", "features_0", False, False, users, "<= 0.30"),
        ("3.frozen.pixel.fc8", "vs Lucent frozen by the user, pixel fc8", "classifier_6", False, False, froze,
         "<= 1.00"),
        ("3.frozen.defaults.fc8", "vs Lucent frozen by the user, fft + standard transforms, fc8", "classifier_6",
         True, True, froze, "<= 1.00"),
    ]
    variants = {key: pair(ours_model, model, layer, fft, std, steps, (f"{key} ours", f"{key} lucent"))
                for key, _, layer, fft, std, model, _ in specs}
    log("  render_vis vs render, batch 1 (lockstep pairs)")
    res = interleave(variants, 6 if quick else 9)
    kw = dict(clock=clock, threads=threads)
    rows = [row(3, key, what, ratio(res[f"{key} ours"], res[f"{key} lucent"], clock), target,
                **kw, **details(res, f"{key} ours", f"{key} lucent"))
            for key, what, *_, target in specs]
    log("  Lucent-defaults step breakdown")
    rows += breakdown(users, quick, threads)
    log("  DGN lucent_param_f under render_vis vs render (shipped Fashion-MNIST models)")
    return rows + dgn_rows(quick, threads)
