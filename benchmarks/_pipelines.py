"""Networks (random weights) and the bare forward+backward baselines the benchmarks compare with.

A *bare* baseline is the least work one optimisation step can do: forward to the target layer,
backward to the input with ``torch.autograd.grad`` (weights frozen), an SGD update. Variants:
``truncated`` (the forward stops at the target layer), ``full`` (the whole network runs, the loss
reads an early layer), ``unfrozen`` (weights keep ``requires_grad``; ``loss.backward()`` accumulates
their ``.grad``, as Lucent's ``render_vis`` and bdpy's ``icnn.reconstruct`` do with a model as users
pass it).
"""
from __future__ import annotations

import copy
import time
from collections import OrderedDict
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from _timing import StepClock

__all__ = ["seeded", "bvlc_alexnet", "tv_alexnet", "generator", "prefix", "BareLoop", "bare_pixel", "bare_dgn",
           "our_render", "paired_render", "centre_mask", "CROP"]

CROP = (14, 241)  # 256 -> 227 centre crop of the DeePSiM output (cnnpref)


def seeded(fn: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return fn().eval()


def bvlc_alexnet() -> nn.Module:
    from lucent_dgn.models.alexnet import BVLCAlexNet
    return seeded(BVLCAlexNet)


def tv_alexnet() -> nn.Module:
    from torchvision.models import alexnet
    return seeded(lambda: alexnet(weights=None))


def generator() -> nn.Module:
    """The DeePSiM fc6 generator, random weights rescaled layer by layer (LSUV-style) so that its
    output has a standard deviation of about 40 (Caffe 0-255 scale) for cnnpref's initial codes.
    PyTorch's default init leaves it at about 0.05, an almost constant image whose gradients stop
    L-BFGS at its first tolerance test. The scaling changes values only, not the work per step."""
    from lucent_dgn.generators.deepsim import deepsim_generator
    gen = seeded(lambda: deepsim_generator("fc6", weights=None), seed=1)
    g = torch.Generator().manual_seed(2)
    x = torch.relu(torch.randn(8, 4096, generator=g)) * 10
    children = [m for m in gen.children()]
    last = max(i for i, m in enumerate(children) if hasattr(m, "weight"))
    with torch.no_grad():
        for i, module in enumerate(children):
            y = module(x)
            if hasattr(module, "weight"):
                scale = (40.0 if i == last else 1.0) / float(y.std())
                module.weight.mul_(scale)
                module.bias.mul_(scale)
                y = module(x)
            x = y
    return gen


def prefix(model: nn.Sequential, layer: str) -> nn.Module:
    """The modules of a Sequential up to and including ``layer`` (a truncated forward)."""
    children = list(model.named_children())
    names = [n for n, _ in children]
    return nn.Sequential(OrderedDict(children[: names.index(layer) + 1]))


def centre_mask(shape) -> torch.Tensor:
    """(1, *shape) float mask of unit 0 (fc) or the centre unit of channel 0 (conv)."""
    mask = torch.zeros((1,) + tuple(shape))
    if len(shape) == 1:
        mask[0, 0] = 1.0
    else:
        mask[0, 0, shape[1] // 2, shape[2] // 2] = 1.0
    return mask


def _frozen_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).requires_grad_(False)


class BareLoop:
    """A bare optimisation loop that can run whole (``loop()``) or one step at a time (``step()``).

    ``loop()`` is a variant for :func:`_timing.interleave` (fresh start, ``steps`` steps, a clock);
    ``step()`` advances a persistent state by one step, for pairing with another loop's steps
    (:func:`paired_render`).
    """

    def __init__(self, one_step: Callable[[torch.Tensor], None], start: torch.Tensor, steps: int) -> None:
        self.one_step, self.start, self.steps = one_step, start, steps
        self.state = start.clone().requires_grad_(True)

    def step(self) -> None:
        self.one_step(self.state)

    def loop(self) -> StepClock:
        self.state = self.start.clone().requires_grad_(True)
        clock = StepClock()
        for _ in range(self.steps):
            self.one_step(self.state)
            clock.tick()
        return clock

    __call__ = loop


def bare_pixel(net: nn.Module, mask: torch.Tensor, batch: int, size: int = 227, steps: int = 6,
               unfrozen: bool = False, lr: float = 1.0) -> BareLoop:
    """Bare steps of ``(net(x) * mask).sum()`` on a (batch, 3, size, size) image."""
    net = copy.deepcopy(net).requires_grad_(unfrozen)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, 3, size, size, generator=gen) * 255 - 120

    def one_step(x: torch.Tensor) -> None:
        loss = (net(x) * mask).sum()
        if unfrozen:
            loss.backward()  # weights' .grad accumulate, as in Lucent / bdpy
            g = x.grad
        else:
            (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x.sub_(g / g.abs().mean().clamp_min(1e-12), alpha=lr)
        x.grad = None

    return BareLoop(one_step, x0, steps)


def bare_dgn(gen_net: nn.Module, net: nn.Module, mask: torch.Tensor, batch: int, steps: int = 6,
             upper: float = 100.0) -> BareLoop:
    """Bare DGN steps: code -> generator -> crop -> net, grad w.r.t. the code, decay, clamp."""
    gen_net, net = _frozen_copy(gen_net), _frozen_copy(net)
    g0 = torch.Generator().manual_seed(0)
    z0 = torch.relu(torch.randn(batch, 4096, generator=g0)) * 10
    a, b = CROP

    def one_step(z: torch.Tensor) -> None:
        img = gen_net(z)[:, :, a:b, a:b]
        loss = (net(img) * mask).sum()
        (g,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            z.sub_(g / g.abs().mean().clamp_min(1e-12)).mul_(0.99).clamp_(0.0, upper)

    return BareLoop(one_step, z0, steps)


def our_render(model: nn.Module, objective, make_param: Callable[[], object], make_optimizer: Callable[[], object],
               steps: int = 6, transforms: Optional[Callable[[], list]] = None) -> Callable[[], StepClock]:
    """``run()`` of one ``lucent_dgn.render`` call, returning its step times (callback clock)."""
    import lucent_dgn

    def run() -> StepClock:
        clock = StepClock()
        lucent_dgn.render(model, objective, make_param(), make_optimizer(), steps,
                          transforms=transforms() if transforms else None, progress=False,
                          callbacks=[clock], seed=0)
        return clock

    return run


class _PairClock:
    """Render callback: stamps the end of our step, runs one step of the companion loop (timed on
    its own clock), then stamps again; our step time excludes the companion's."""

    def __init__(self, companion: BareLoop, per_eval: bool = False) -> None:
        self.companion, self.per_eval = companion, per_eval
        self.ours, self.bare = StepClock(), StepClock()
        self._resume: Optional[tuple] = None
        self._evals = 0

    def __call__(self, info=None) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        evals = getattr(info, "n_evals", 0)
        n = max(1, evals - self._evals) if self.per_eval else 1  # per evaluation (L-BFGS line searches)
        self._evals = evals
        if self._resume is not None:
            self.ours.add_interval((wall - self._resume[0]) / n, (cpu - self._resume[1]) / n)
        self.bare.tick()
        self.companion.step()
        self.bare.tick()
        self.bare.break_chain()
        self._resume = (time.perf_counter(), time.process_time())


def paired_render(model: nn.Module, objective, make_param: Callable[[], object],
                  make_optimizer: Callable[[], object], companion: BareLoop, steps: int = 6,
                  transforms: Optional[Callable[[], list]] = None, names: Tuple[str, str] = ("ours", "bare"),
                  per_eval: bool = False) -> Callable[[], Dict[str, StepClock]]:
    """``run()`` of one render whose steps alternate with the companion's: O B O B ...

    Both sides then see the same machine load at nearly the same moments (steps ~0.01-1 s apart),
    which matters on a shared machine. Returns ``{names[0]: our clock, names[1]: companion clock}``;
    with ``per_eval`` our times are per evaluation (a step's time over its evaluations).
    """
    import lucent_dgn

    def run() -> Dict[str, StepClock]:
        pair = _PairClock(companion, per_eval)
        lucent_dgn.render(model, objective, make_param(), make_optimizer(), steps,
                          transforms=transforms() if transforms else None, progress=False,
                          callbacks=[pair], seed=0)
        return {names[0]: pair.ours, names[1]: pair.bare}

    return run
