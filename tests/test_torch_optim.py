"""TorchOptimizer: torch.optim optimizers (Adam, LBFGS) driven through the Problem protocol."""
from __future__ import annotations

import logging
from typing import List, Optional

import pytest
import torch
from torch import nn

from lucent_dgn.errors import ConfigError
from lucent_dgn.parameterizations.base import Parameterization
from lucent_dgn.render.torch_optim import TorchOptimizer, adam, lbfgs


class BoxParam(Parameterization):
    """Holds the variable; optional box bounds."""

    def __init__(self, x0: torch.Tensor, bounds=None) -> None:
        super().__init__()
        self.variable = nn.Parameter(x0.clone())
        self._bounds = bounds

    def bounds(self):
        return self._bounds

    def forward(self) -> torch.Tensor:
        return self.variable


class FakeProblem:
    """The Problem protocol around a per-item loss function; records the step events."""

    def __init__(self, param: BoxParam, loss_fn, n_steps: int, stop_at: Optional[int] = None) -> None:
        self.param, self.loss_fn, self.n_steps, self.stop_at = param, loss_fn, n_steps, stop_at
        self.n_evals, self.jitter_offsets, self.last_item_losses = 0, None, None
        self.events: List[tuple] = []

    def evaluate(self) -> torch.Tensor:
        var = self.param.variable
        with torch.enable_grad():
            items = self.loss_fn(var)
            (grad,) = torch.autograd.grad(items.sum(), var)
        var.grad = grad
        self.n_evals += 1
        self.events.append(("eval",))
        self.last_item_losses = items.detach()
        return items.detach().sum().double()

    def begin_step(self, t: int) -> None:
        self.events.append(("begin", t))

    def end_step(self, t: int) -> bool:
        self.events.append(("end", t))
        return self.stop_at is not None and t + 1 >= self.stop_at

    def steps(self) -> List[int]:
        return [e[1] for e in self.events if e[0] == "end"]


def spd_quadratic(dim: int = 10, seed: int = 0):
    """0.5 x'Ax - b'x with a dense SPD A (condition 30); returns loss_fn and the optimum (1, dim)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 1.5, dim, dtype=torch.float64)) @ q.T
    b = torch.randn(1, dim, generator=gen, dtype=torch.float64)
    return (lambda x: 0.5 * ((x @ a) * x).sum(1) - (b * x).sum(1)), torch.linalg.solve(a, b[0])[None]


def test_adam_decreases_a_quadratic_one_evaluation_per_step():
    loss_fn, x_star = spd_quadratic()
    prob = FakeProblem(BoxParam(torch.zeros_like(x_star)), loss_fn, n_steps=40)
    start = float(loss_fn(prob.param.variable.detach()).sum())
    opt = adam(lr=0.05)
    opt.run(prob)
    end = float(loss_fn(prob.param.variable.detach()).sum())
    optimum = float(loss_fn(x_star).sum())
    assert end < start - 0.5 * (start - optimum)
    assert prob.steps() == list(range(40)) and prob.n_evals == 40 and opt.n_iter == 40
    assert prob.events[:4] == [("begin", 0), ("eval",), ("end", 0), ("begin", 1)]
    assert isinstance(opt.optimizer, torch.optim.Adam)


def test_torch_lbfgs_reaches_unconstrained_optimum():
    loss_fn, x_star = spd_quadratic()
    prob = FakeProblem(BoxParam(torch.zeros_like(x_star)), loss_fn, n_steps=5)
    opt = lbfgs(max_iter=20, history_size=10, tolerance_change=0.0, tolerance_grad=1e-10)  # kwargs pass through
    opt.run(prob)
    assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-7, rtol=0)
    assert isinstance(opt.optimizer, torch.optim.LBFGS)
    # one outer step = one .step(closure) call with several evaluations
    assert prob.n_evals > len(prob.steps()) and prob.steps() == list(range(len(prob.steps())))


def test_end_step_true_stops():
    loss_fn, x_star = spd_quadratic()
    prob = FakeProblem(BoxParam(torch.zeros_like(x_star)), loss_fn, n_steps=50, stop_at=3)
    opt = TorchOptimizer(lambda p: torch.optim.SGD(p, lr=0.01), name="sgd")
    opt.run(prob)
    assert prob.steps() == [0, 1, 2] and prob.n_evals == 3 and opt.n_iter == 3
    assert repr(opt) == "TorchOptimizer('sgd', project=True)"


def test_projection_after_each_step_keeps_the_box():
    def loss_fn(x):
        return -(x * torch.arange(1.0, 5.0)).sum(1)  # pushes every coordinate up

    bounds = (torch.full((1, 4), -1.0), torch.full((1, 4), 0.5))
    projected = FakeProblem(BoxParam(torch.zeros(2, 4), bounds), loss_fn, n_steps=20)
    adam(lr=0.2).run(projected)
    assert torch.equal(projected.param.variable.detach(), torch.full((2, 4), 0.5))
    free = FakeProblem(BoxParam(torch.zeros(2, 4), bounds), loss_fn, n_steps=20)
    adam(lr=0.2, project=False).run(free)
    assert bool((free.param.variable.detach() > 0.5).all())


def test_torch_lbfgs_on_bounded_problem_warns(caplog):
    bounds = (torch.full((1, 3), -1.0), torch.full((1, 3), 1.0))
    prob = FakeProblem(BoxParam(torch.zeros(1, 3), bounds), lambda x: (x * x).sum(1), n_steps=1)
    with caplog.at_level(logging.WARNING, logger="lucent_dgn.render.torch_optim"):
        lbfgs().run(prob)
    assert "LBFGSB" in caplog.text


def test_bad_factories_raise_config_error():
    with pytest.raises(ConfigError, match="factory"):
        TorchOptimizer("adam")
    prob = FakeProblem(BoxParam(torch.zeros(1, 3)), lambda x: (x * x).sum(1), n_steps=1)
    with pytest.raises(ConfigError, match="torch.optim.Optimizer"):
        TorchOptimizer(lambda p: object()).run(prob)
