"""TorchOptimizer: torch.optim optimizers (Adam, LBFGS) driven through the Problem protocol."""
from __future__ import annotations

import logging

import pytest
import torch

from lucent_dgn.errors import ConfigError
from lucent_dgn.render.torch_optim import TorchOptimizer, adam, lbfgs

from _fake_problem import BoxParam, FakeProblem, spd_quadratic


def test_adam_decreases_a_quadratic_one_evaluation_per_step():
    loss_fn, x_star = spd_quadratic(dim=10, seed=0)
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
    loss_fn, x_star = spd_quadratic(dim=10, seed=0)
    prob = FakeProblem(BoxParam(torch.zeros_like(x_star)), loss_fn, n_steps=5)
    opt = lbfgs(max_iter=20, history_size=10, tolerance_change=0.0, tolerance_grad=1e-10)  # kwargs pass through
    opt.run(prob)
    assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-7, rtol=0)
    assert isinstance(opt.optimizer, torch.optim.LBFGS)
    # one outer step = one .step(closure) call with several evaluations
    assert prob.n_evals > len(prob.steps()) and prob.steps() == list(range(len(prob.steps())))


def test_end_step_true_stops():
    loss_fn, x_star = spd_quadratic(dim=10, seed=0)
    prob = FakeProblem(BoxParam(torch.zeros_like(x_star)), loss_fn, n_steps=50, stop_at=3)
    opt = TorchOptimizer(lambda p: torch.optim.SGD(p, lr=0.01), name="sgd")
    opt.run(prob)
    assert prob.steps() == [0, 1, 2] and prob.n_evals == 3 and opt.n_iter == 3
    assert repr(opt) == "TorchOptimizer('sgd', project=True)"


def test_projection_after_each_step_keeps_the_box():
    def loss_fn(x):
        return -(x * torch.arange(1.0, 5.0)).sum(1)  # pushes every coordinate up

    bounds = (torch.full((1, 4), -1.0), torch.full((1, 4), 0.5))
    projected = FakeProblem(BoxParam(torch.zeros(2, 4), *bounds), loss_fn, n_steps=20)
    adam(lr=0.2).run(projected)
    assert torch.equal(projected.param.variable.detach(), torch.full((2, 4), 0.5))
    free = FakeProblem(BoxParam(torch.zeros(2, 4), *bounds), loss_fn, n_steps=20)
    adam(lr=0.2, project=False).run(free)
    assert bool((free.param.variable.detach() > 0.5).all())


def test_torch_lbfgs_on_bounded_problem_warns(caplog):
    bounds = (torch.full((1, 3), -1.0), torch.full((1, 3), 1.0))
    prob = FakeProblem(BoxParam(torch.zeros(1, 3), *bounds), lambda x: (x * x).sum(1), n_steps=1)
    with caplog.at_level(logging.WARNING, logger="lucent_dgn.render.torch_optim"):
        lbfgs().run(prob)
    assert "LBFGSB" in caplog.text


def test_bad_factories_raise_config_error():
    with pytest.raises(ConfigError, match="factory"):
        TorchOptimizer("adam")
    prob = FakeProblem(BoxParam(torch.zeros(1, 3)), lambda x: (x * x).sum(1), n_steps=1)
    with pytest.raises(ConfigError, match="torch.optim.Optimizer"):
        TorchOptimizer(lambda p: object()).run(prob)
