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
from collections import OrderedDict
from typing import Callable, List, Optional

import torch
from torch import nn

from _timing import StepClock

__all__ = ["seeded", "bvlc_alexnet", "tv_alexnet", "generator", "prefix", "bare_pixel", "bare_dgn",
           "our_render", "centre_mask", "CROP"]

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
    from lucent_dgn.generators.deepsim import deepsim_generator
    return seeded(lambda: deepsim_generator("fc6", weights=None), seed=1)


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


def bare_pixel(net: nn.Module, mask: torch.Tensor, batch: int, size: int = 227, steps: int = 6,
               unfrozen: bool = False, lr: float = 1.0) -> Callable[[], StepClock]:
    """``run()`` of ``steps`` bare steps of ``(net(x) * mask).sum()``, returning step times."""
    net = copy.deepcopy(net).requires_grad_(unfrozen)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, 3, size, size, generator=gen) * 255 - 120

    def run() -> StepClock:
        x = x0.clone().requires_grad_(True)
        clock = StepClock()
        for _ in range(steps):
            loss = (net(x) * mask).sum()
            if unfrozen:
                loss.backward()  # weights' .grad accumulate, as in Lucent / bdpy
                g = x.grad
            else:
                (g,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x.sub_(g / g.abs().mean().clamp_min(1e-12), alpha=lr)
            x.grad = None
            clock.tick()
        return clock

    return run


def bare_dgn(gen_net: nn.Module, net: nn.Module, mask: torch.Tensor, batch: int, steps: int = 6,
             upper: float = 100.0) -> Callable[[], StepClock]:
    """Bare DGN step: code -> generator -> crop -> net, grad w.r.t. the code, clamp, decay."""
    gen_net, net = _frozen_copy(gen_net), _frozen_copy(net)
    g0 = torch.Generator().manual_seed(0)
    z0 = torch.relu(torch.randn(batch, 4096, generator=g0)) * 10
    a, b = CROP

    def run() -> StepClock:
        z = z0.clone().requires_grad_(True)
        clock = StepClock()
        for _ in range(steps):
            img = gen_net(z)[:, :, a:b, a:b]
            loss = (net(img) * mask).sum()
            (g,) = torch.autograd.grad(loss, z)
            with torch.no_grad():
                z.sub_(g / g.abs().mean().clamp_min(1e-12)).mul_(0.99).clamp_(0.0, upper)
            clock.tick()
        return clock

    return run


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
