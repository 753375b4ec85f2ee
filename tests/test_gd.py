"""MomentumGD against hand-written loops, on a fake Problem with an analytic loss."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import pytest
import torch
from torch import nn

from lucent_dgn.errors import ConfigError
from lucent_dgn.parameterizations.base import Parameterization
from lucent_dgn.render import image_ops
from lucent_dgn.render.gd import MomentumGD, normalize_per_item


class FakeParam(Parameterization):
    """Holds one variable (N, ...) with optional box bounds."""

    def __init__(self, x0: torch.Tensor, lower: Optional[float] = None, upper: Optional[float] = None):
        super().__init__()
        self.variable = nn.Parameter(x0.clone())
        self.lower, self.upper = lower, upper

    def forward(self) -> torch.Tensor:
        return self.variable

    def bounds(self):
        if self.lower is None:
            return None
        return torch.tensor(self.lower, dtype=self.variable.dtype), torch.tensor(self.upper, dtype=self.variable.dtype)


class FakeProblem:
    """Loss = sum_i loss_fn(model_input)[i]; model input = variable rolled by the step's jitter."""

    def __init__(self, param: FakeParam, n_steps: int, loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
                 offsets: Optional[Sequence[Tuple[int, int]]] = None, stop_at: Optional[int] = None):
        self.param, self.n_steps, self.loss_fn = param, n_steps, loss_fn
        self.offsets, self.stop_at = offsets, stop_at
        self.n_evals, self.jitter_offsets, self.last_item_losses = 0, None, None
        self.t = -1
        self.grads: List[torch.Tensor] = []
        self.calls: List[str] = []

    def begin_step(self, t: int) -> None:
        self.t = t
        self.calls.append(f"begin{t}")
        self.jitter_offsets = tuple(self.offsets[t]) if self.offsets is not None else None

    def evaluate(self) -> torch.Tensor:
        var = self.param.variable
        x = var if self.jitter_offsets is None else torch.roll(var, self.jitter_offsets, dims=(-2, -1))
        losses = self.loss_fn(x, self.t)
        (grad,) = torch.autograd.grad(losses.sum(), var)
        var.grad = grad
        self.grads.append(grad.clone())
        self.last_item_losses = losses.detach()
        self.n_evals += 1
        return losses.sum().detach().double()

    def end_step(self, t: int) -> bool:
        self.calls.append(f"end{t}")
        return self.stop_at is not None and t >= self.stop_at


def quadratic(target: torch.Tensor, weight: torch.Tensor):
    """Per-item 0.5 * sum w (x - target)^2 (non-uniform, so shifts matter)."""
    def loss(x, t):
        return (0.5 * weight * (x - target) ** 2).reshape(x.shape[0], -1).sum(1)
    return loss


def lin_sched(a, b, n):
    return [a + t * (b - a) / n for t in range(n)]


gen = torch.Generator().manual_seed(0)


def randn(*shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


# ----------------------------------------------------------------------------------------- tests
def test_decay_only_with_zero_gradient():
    x0 = randn(2, 3, 6, 5, dtype=torch.float32)
    problem = FakeProblem(FakeParam(x0), 7, lambda x, t: (0 * x).reshape(2, -1).sum(1))
    opt = MomentumGD(lr=1.0, momentum=0.9, decay=0.1)
    opt.run(problem)
    expected = x0.clone()
    for _ in range(7):
        expected.mul_(1 - 0.1)
    assert torch.equal(problem.param.variable.detach(), expected)
    torch.testing.assert_close(problem.param.variable.detach(), 0.9 ** 7 * x0)
    assert torch.equal(opt.velocity, torch.zeros_like(x0))  # zero gradient stays zero (no 0/0)


def test_normalised_gradient_mean_abs_is_one_per_item():
    scale = torch.tensor([1e-3, 1e3]).view(2, 1, 1, 1)
    c = randn(2, 3, 8, 7) * scale
    x0 = randn(2, 3, 8, 7)
    problem = FakeProblem(FakeParam(x0), 1, lambda x, t: (c * x).reshape(2, -1).sum(1))
    opt = MomentumGD(lr=1.0, momentum=0.0, decay=0.0, project=False)
    opt.run(problem)
    change = (x0 - problem.param.variable.detach()).abs().reshape(2, -1).mean(1)
    torch.testing.assert_close(change, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(opt.velocity, c / c.abs().reshape(2, -1).mean(1).view(2, 1, 1, 1))
    g = torch.zeros(2, 5)
    g[1] = 2.0
    assert torch.equal(normalize_per_item(g), torch.tensor([[0.0] * 5, [1.0] * 5]))  # zero item skipped


def test_momentum_recursion_with_schedules():
    n = 6
    cs = [randn(3, 10) for _ in range(n)]
    x0 = randn(3, 10)
    problem = FakeProblem(FakeParam(x0), n, lambda x, t: (cs[t] * x).sum(1))
    opt = MomentumGD(lr=(1.0, 0.5), momentum=(0.9, 0.5), decay=0.0, grad_normalize=False)
    opt.run(problem)
    lrs, mus = lin_sched(1.0, 0.5, n), lin_sched(0.9, 0.5, n)
    x, v = x0.clone(), torch.zeros_like(x0)
    for t in range(n):
        v = mus[t] * v + cs[t]
        x = x - lrs[t] * v
    torch.testing.assert_close(opt.velocity, v, rtol=0, atol=1e-12)
    torch.testing.assert_close(problem.param.variable.detach(), x, rtol=0, atol=1e-12)


def _reference_loop(x0, loss_fn, n, lower, upper, every=(1, 2, 3), blur=(2.0, 0.5)):
    """step -> clip extreme -> clip small norm -> clip small contribution -> decay -> blur -> project."""
    lr, mu, d = lin_sched(1.5, 0.5, n), lin_sched(0.8, 0.8, n), lin_sched(0.05, 0.01, n)
    sig, e, nn_, c = lin_sched(*blur, n), lin_sched(2.0, 1.0, n), lin_sched(5.0, 5.0, n), lin_sched(10.0, 4.0, n)
    x, v = x0.clone(), torch.zeros_like(x0)
    for t in range(n):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(xr, t).sum(), xr)
        g = g / g.abs().reshape(g.shape[0], -1).mean(1).view(-1, 1, 1, 1)
        v = mu[t] * v + g
        x = x - lr[t] * v
        if (t + 1) % every[0] == 0:
            image_ops.clip_extreme_(x, e[t])
        if (t + 1) % every[1] == 0:
            image_ops.clip_small_norm_(x, nn_[t])
        if (t + 1) % every[2] == 0:
            image_ops.clip_small_contribution_(x, g, c[t])
        x = (1 - d[t]) * x
        x = image_ops.gaussian_blur(x, sig[t])
        x = x.clamp(lower, upper)
    return x, v


def _full_optimizer(every=(1, 2, 3), blur=(2.0, 0.5)):
    return MomentumGD(lr=(1.5, 0.5), momentum=0.8, decay=(0.05, 0.01), blur_sigma=blur,
                      clip_extreme=(2.0, 1.0), clip_extreme_every=every[0], clip_small_norm=5.0,
                      clip_small_norm_every=every[1], clip_small_contribution=(10.0, 4.0),
                      clip_small_contribution_every=every[2])


def test_order_of_operations_matches_hand_written_loop():
    x0 = randn(2, 3, 12, 10) * 3
    loss = quadratic(randn(2, 3, 12, 10) * 3, randn(2, 3, 12, 10).abs() + 0.1)
    problem = FakeProblem(FakeParam(x0, -2.5, 2.5), 7, loss)
    opt = _full_optimizer()
    opt.run(problem)
    x_ref, v_ref = _reference_loop(x0, loss, 7, -2.5, 2.5)
    torch.testing.assert_close(problem.param.variable.detach(), x_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.velocity, v_ref, rtol=0, atol=1e-12)
    assert problem.calls == [f"{k}{t}" for t in range(7) for k in ("begin", "end")]
    # blur before projection: swapping the order would leave values inside the box after blur
    assert problem.param.variable.abs().max() <= 2.5


def test_batch_of_two_equals_items_alone():
    x0 = randn(2, 3, 11, 9, dtype=torch.float32) * 5
    target, weight = randn(2, 3, 11, 9, dtype=torch.float32), randn(2, 3, 11, 9, dtype=torch.float32).abs()
    weight[1] *= 1e3  # very different gradient scales per item
    both = FakeProblem(FakeParam(x0, -4.0, 4.0), 6, quadratic(target, weight))
    _full_optimizer(every=(2, 1, 3)).run(both)
    for i in range(2):
        sl = slice(i, i + 1)
        alone = FakeProblem(FakeParam(x0[sl], -4.0, 4.0), 6, quadratic(target[sl], weight[sl]))
        _full_optimizer(every=(2, 1, 3)).run(alone)
        torch.testing.assert_close(both.param.variable.detach()[sl], alone.param.variable.detach(),
                                   rtol=1e-5, atol=1e-5)


def _cnnpref_jitter_loop(x0, f, offsets, lr, mu):
    """cnnpref's prefer_img_gd loop (spec 3.3) in the jittered frame, jitter + momentum only."""
    x, v = x0.clone(), torch.zeros_like(x0)
    for oy, ox in offsets:
        x = torch.roll(x, (oy, ox), (-2, -1))
        v = torch.roll(v, (oy, ox), (-2, -1))
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xr, 0).sum(), xr)
        g = g / g.abs().mean()
        v = mu * v + g
        x = x - lr * v
        x = torch.roll(x, (-oy, -ox), (-2, -1))
        v = torch.roll(v - g, (-oy, -ox), (-2, -1)) + g  # Q3: newest g stays in the jittered frame
    return x, v


def test_faithful_jitter_momentum_reproduces_q3():
    x0 = randn(1, 3, 9, 8)
    f = quadratic(randn(1, 3, 9, 8), randn(1, 3, 9, 8).abs() + 0.1)
    offsets = [(1, -2), (-3, 2), (2, 3), (0, -1), (-1, 1)]
    x_ref, v_ref = _cnnpref_jitter_loop(x0, f, offsets, 0.7, 0.9)
    faithful = FakeProblem(FakeParam(x0), len(offsets), f, offsets=offsets)
    opt = MomentumGD(lr=0.7, momentum=0.9, decay=0.0, faithful_jitter_momentum=True)
    opt.run(faithful)
    torch.testing.assert_close(faithful.param.variable.detach(), x_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.velocity, v_ref, rtol=0, atol=1e-12)
    normal = FakeProblem(FakeParam(x0), len(offsets), f, offsets=offsets)
    opt_n = MomentumGD(lr=0.7, momentum=0.9, decay=0.0)
    opt_n.run(normal)
    assert (normal.param.variable - faithful.param.variable).abs().max() > 1e-3
    # normal mode: buffer is the aligned sum of the (un-shifted) normalised gradients
    v = torch.zeros_like(x0)
    for g in normal.grads:
        v = 0.9 * v + normalize_per_item(g)
    torch.testing.assert_close(opt_n.velocity, v, rtol=0, atol=1e-12)


def test_faithful_mode_without_jitter_equals_normal():
    x0 = randn(2, 3, 5, 5)
    f = quadratic(randn(2, 3, 5, 5), randn(2, 3, 5, 5).abs())
    runs = []
    for faithful in (False, True):
        p = FakeProblem(FakeParam(x0), 4, f)
        MomentumGD(lr=0.5, faithful_jitter_momentum=faithful).run(p)
        runs.append(p.param.variable.detach())
    assert torch.equal(runs[0], runs[1])


def test_code_variable_decay_then_project_and_early_stop():
    x0 = randn(2, 16).abs() * 10
    c = randn(2, 16)
    problem = FakeProblem(FakeParam(x0, 0.0, 12.0), 10, lambda x, t: (c * x).sum(1), stop_at=3)
    opt = MomentumGD(lr=(2.0, 1e-10), momentum=0.9, decay=0.01)
    opt.run(problem)
    assert problem.n_evals == 4
    x, v = x0.clone(), torch.zeros_like(x0)
    g = normalize_per_item(c.clone())
    for t, lr in enumerate(lin_sched(2.0, 1e-10, 10)[:4]):
        v = 0.9 * v + g
        x = ((x - lr * v) * (1 - 0.01)).clamp(0.0, 12.0)
    torch.testing.assert_close(problem.param.variable.detach(), x, rtol=0, atol=1e-12)
    unprojected = FakeProblem(FakeParam(x0, 0.0, 12.0), 3, lambda x, t: (c * x).sum(1))
    MomentumGD(lr=50.0, project=False).run(unprojected)
    assert unprojected.param.variable.min() < 0


@pytest.mark.parametrize("option", ["blur_sigma", "clip_extreme", "clip_small_norm", "clip_small_contribution"])
def test_image_ops_need_an_image_variable(option):
    problem = FakeProblem(FakeParam(randn(2, 16)), 2, lambda x, t: x.sum(1))
    with pytest.raises(ConfigError, match=f"`{option}`"):
        MomentumGD(**{option: 1.0}).run(problem)


def test_faithful_mode_needs_an_image_variable_when_jittered():
    problem = FakeProblem(FakeParam(randn(2, 4, 4)), 1, lambda x, t: x.sum((1, 2)), offsets=[(1, 1)])
    with pytest.raises(ConfigError, match="`faithful_jitter_momentum`"):
        MomentumGD(faithful_jitter_momentum=True).run(problem)


@pytest.mark.parametrize("kwargs, name", [({"lr": "fast"}, "lr"), ({"momentum": (1, 2, 3)}, "momentum"),
                                          ({"blur_sigma": float("nan")}, "blur_sigma"),
                                          ({"clip_extreme_every": 0}, "clip_extreme_every"),
                                          ({"blur_every": 1.5}, "blur_every")])
def test_constructor_validation(kwargs, name):
    with pytest.raises(ConfigError, match=f"`{name}`"):
        MomentumGD(**kwargs)


def test_blur_every_and_repr():
    x0 = randn(1, 3, 8, 8)
    problem = FakeProblem(FakeParam(x0), 3, lambda x, t: (0 * x).sum((1, 2, 3)))
    MomentumGD(decay=0.0, blur_sigma=1.0, blur_every=2).run(problem)
    expected = image_ops.gaussian_blur(x0, 1.0)  # only at t = 1
    torch.testing.assert_close(problem.param.variable.detach(), expected, rtol=0, atol=1e-12)
    assert "blur_sigma=1.0" in repr(MomentumGD(blur_sigma=1.0))
