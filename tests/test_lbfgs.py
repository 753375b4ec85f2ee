"""L-BFGS-B optimizers: SciPy bridge and torch LBFGSB on toy problems with known optima."""
from __future__ import annotations

import time
from typing import Callable, List, Optional

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.errors import BoundsError, ConfigError
from lucent_dgn.parameterizations.base import Parameterization
from lucent_dgn.render.lbfgs import LBFGSB, ScipyLBFGSB, box_bounds

LossFn = Callable[[torch.Tensor], torch.Tensor]  # variable (N, ...) -> per-item losses (N,)


class BoxParam(Parameterization):
    """Holds the variable; optional box bounds broadcastable to it."""

    def __init__(self, x0: torch.Tensor, lower=None, upper=None) -> None:
        super().__init__()
        self.variable = nn.Parameter(x0.clone())
        self._bounds = None if lower is None else (torch.as_tensor(lower, dtype=x0.dtype),
                                                   torch.as_tensor(upper, dtype=x0.dtype))

    def bounds(self):
        return self._bounds

    def forward(self) -> torch.Tensor:
        return self.variable


class FakeProblem:
    """The Problem protocol around a per-item loss; records steps and checks the box."""

    def __init__(self, param: BoxParam, loss_fn: LossFn, n_steps: int = 1000,
                 stop_at: Optional[int] = None, item_losses: bool = True) -> None:
        self.param, self.loss_fn, self.n_steps, self.stop_at = param, loss_fn, n_steps, stop_at
        self.item_losses = item_losses
        self.n_evals, self.jitter_offsets, self.last_item_losses = 0, None, None
        self.events: List[tuple] = []
        self.outside = 0  # evaluations at points outside the box

    def evaluate(self) -> torch.Tensor:
        var = self.param.variable
        b = self.param.bounds()
        if b is not None and bool(((var < b[0]) | (var > b[1])).any()):
            self.outside += 1
        with torch.enable_grad():
            items = self.loss_fn(var)
            (grad,) = torch.autograd.grad(items.sum(), var)
        var.grad = grad
        self.n_evals += 1
        self.events.append(("eval",))
        self.last_item_losses = items.detach() if self.item_losses else None
        return items.detach().sum().double()

    def begin_step(self, t: int) -> None:
        self.events.append(("begin", t))

    def end_step(self, t: int) -> bool:
        self.events.append(("end", t))
        return self.stop_at is not None and t + 1 >= self.stop_at

    def check_pairing(self) -> None:
        """begin(t)/end(t) alternate with t = 0, 1, ...; evaluations only inside a step."""
        open_t, expected = None, 0
        for ev in self.events:
            if ev[0] == "begin":
                assert open_t is None and ev[1] == expected
                open_t = ev[1]
            elif ev[0] == "end":
                assert open_t == ev[1]
                open_t, expected = None, expected + 1
            else:
                assert open_t is not None
        assert open_t is None


def diag_quadratic(n_items: int = 2, dim: int = 40, seed: int = 0, dtype=torch.float64):
    """0.5 x'Ax - b'x per item with diagonal A; returns loss_fn, bounds, closed-form optimum."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.logspace(0, 2, dim, dtype=dtype)[torch.randperm(dim, generator=gen)]
    b = torch.randn(n_items, dim, generator=gen, dtype=dtype) * 10
    lower, upper = torch.full((1, dim), -3.0, dtype=dtype), torch.full((1, dim), 2.0, dtype=dtype)
    lower[0, :5] = -float("inf")  # some coordinates unbounded below
    x_star = torch.maximum(torch.minimum(b / a, upper), lower)

    def loss_fn(x):
        return (0.5 * a * x * x - b * x).sum(1)

    return loss_fn, (lower, upper), x_star


def make(x0, bounds, loss_fn, **kw) -> FakeProblem:
    lower, upper = (None, None) if bounds is None else bounds
    return FakeProblem(BoxParam(x0, lower, upper), loss_fn, **kw)


@pytest.mark.parametrize("per_item", [True, False])
def test_torch_lbfgsb_reaches_box_optimum_of_diagonal_quadratic(per_item):
    loss_fn, bounds, x_star = diag_quadratic()
    assert ((x_star == bounds[0]) | (x_star == bounds[1])).sum() >= 10  # active constraints
    prob = make(torch.zeros_like(x_star) + 5.0, bounds, loss_fn)  # starts outside: projected
    opt = LBFGSB(gtol=1e-10, ftol=0.0, per_item=per_item)
    opt.run(prob)
    assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-7, rtol=0)
    assert prob.outside == 0
    prob.check_pairing()
    assert opt.n_evals == prob.n_evals and opt.n_iter == sum(e[0] == "end" for e in prob.events)
    assert opt.n_iter < 200 and bool(opt.finished.all())


def test_scipy_reaches_box_optimum_of_diagonal_quadratic():
    loss_fn, bounds, x_star = diag_quadratic()
    prob = make(torch.zeros_like(x_star) + 5.0, bounds, loss_fn)
    opt = ScipyLBFGSB(gtol=1e-10, ftol=0.0)
    opt.run(prob)
    assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-6, rtol=0)
    assert prob.outside == 0
    prob.check_pairing()
    assert opt.n_evals == prob.n_evals == opt.result.nfev
    assert opt.n_iter == opt.result.nit == sum(e[0] == "end" for e in prob.events)
