"""Long runs: 200 renders in a row on the same model and generator leave nothing behind.

Sweeps over thousands of units call ``render`` again and again on one model. After every render
the model and the generator must carry no hook, and neither live tensors nor resident memory may
grow. The loop mixes optimizers, parameterizations and the fault paths (callback exception,
interrupt), since a leak on an error path is the likeliest kind.
"""
from __future__ import annotations

import gc
import os
import resource
import time
from typing import Any, List

import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn.parameterizations import DGNImage
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.lbfgs import LBFGSB

from _tiny import TinyCaffeNet, TinyGenerator

N_RENDERS = 200
WARM_UP = 20


def hook_count(*modules: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for module in modules for m in module.modules())


def global_hook_count() -> int:
    from torch.nn.modules import module as M
    return sum(len(getattr(M, name, {})) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                      "_global_backward_hooks", "_global_backward_pre_hooks"))


def rss_bytes() -> int:
    """Resident memory now: /proc/self/statm where it exists, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))  # no proxy lookups


class Boom(Exception):
    pass


def one_render(i: int, model: nn.Module, generator: nn.Module, objective: Any) -> None:
    """Render number ``i``: pixel or DGN, GD or L-BFGS-B; every 10th fails, every 10th + 5 is interrupted."""
    if i % 2:
        param = DGNImage(generator, batch=2, input_size=32, seed=i)
    else:
        param = ld.PixelImage(32, batch=2, seed=i)
    optimizer = LBFGSB(max_iter=3) if i % 4 >= 2 else MomentumGD(lr=1.0)

    def fault(info):
        if i % 10 == 0 and info.step == 1:
            raise Boom("callback failed")
        if i % 10 == 5 and info.step == 1:
            raise KeyboardInterrupt

    try:
        result = ld.render(model, objective, param, optimizer, steps=3, progress=False, callbacks=[fault])
    except Boom:
        return
    assert 1 <= result.steps <= 3  # L-BFGS-B may stop early on its own
    if isinstance(optimizer, MomentumGD):
        assert result.steps == (2 if i % 10 == 5 else 3) and result.interrupted == (i % 10 == 5)


@pytest.mark.slow
def test_200_renders_leave_no_hooks_and_flat_memory():
    start = time.perf_counter()
    model, generator = TinyCaffeNet().train(), TinyGenerator()
    objective = ld.masked_units("fc8", ld.unit_masks((10,), [3, 7]))
    base_hooks = global_hook_count()
    rss: List[int] = []
    tensors: List[int] = []
    for i in range(N_RENDERS):
        one_render(i, model, generator, objective)
        assert hook_count(model, generator) == 0
        assert global_hook_count() == base_hooks
        assert all(p.grad is None and p.requires_grad for p in model.parameters())
        assert model.training and all(p.grad is None for p in generator.parameters())
        if i + 1 in (WARM_UP, N_RENDERS // 2, N_RENDERS):
            tensors.append(live_tensors())
            rss.append(rss_bytes())
    # Live tensors: nothing accumulates (a few may be alive transiently).
    assert max(tensors) - tensors[0] <= 10, tensors
    # Resident memory: flat within a generous bound (allocator noise is a few MiB).
    growth_mib = (max(rss) - rss[0]) / 2 ** 20
    assert growth_mib < 40, [r / 2 ** 20 for r in rss]
    assert time.perf_counter() - start < 60


def test_objective_cache_does_not_grow_across_shapes():
    """One objective reused with several batch sizes keeps a single prepared mask."""
    model = TinyCaffeNet()
    objective = ld.masked_units("fc8", ld.unit_mask((10,), 3))
    for batch in (1, 2, 3, 1, 2, 3):
        ld.render(model, objective, ld.PixelImage(32, batch=batch, seed=0), MomentumGD(), steps=1, progress=False)
    assert len(objective.term_func._cache) == 1
