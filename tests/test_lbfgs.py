"""L-BFGS-B optimizers: SciPy bridge and torch LBFGSB on toy problems with known optima."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from lucent_dgn.errors import BoundsError, ConfigError
from lucent_dgn.render.lbfgs import LBFGSB, ScipyLBFGSB, box_bounds

from _fake_problem import BoxParam, FakeProblem, spd_quadratic

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


def box_ok(prob: FakeProblem) -> bool:
    b = prob.param.bounds()
    v = prob.param.variable
    return b is None or bool(((v >= b[0]) & (v <= b[1])).all())


@pytest.mark.parametrize("per_item", [True, False])
def test_torch_lbfgsb_reaches_box_optimum_of_diagonal_quadratic(per_item):
    loss_fn, bounds, x_star = diag_quadratic()
    assert ((x_star == bounds[0]) | (x_star == bounds[1])).sum() >= 10  # active constraints
    prob = make(torch.zeros_like(x_star) + 5.0, bounds, loss_fn)  # starts outside: projected
    opt = LBFGSB(gtol=1e-10, ftol=0.0, per_item=per_item)
    opt.run(prob)
    x = prob.param.variable.detach()
    assert torch.allclose(x, x_star, atol=1e-6, rtol=0)
    assert bool((loss_fn(x) - loss_fn(x_star) <= 1e-10).all())
    assert prob.outside == 0 and box_ok(prob)
    prob.check_pairing()
    assert opt.n_evals == prob.n_evals and opt.n_iter == sum(e[0] == "end" for e in prob.events)
    assert opt.n_iter < 200 and bool(opt.finished.all())


def test_scipy_reaches_box_optimum_of_diagonal_quadratic():
    loss_fn, bounds, x_star = diag_quadratic()
    prob = make(torch.zeros_like(x_star) + 5.0, bounds, loss_fn)
    opt = ScipyLBFGSB(gtol=1e-10, ftol=0.0)
    opt.run(prob)
    x = prob.param.variable.detach()
    assert torch.allclose(x, x_star, atol=1e-6, rtol=0)
    assert bool((loss_fn(x) - loss_fn(x_star) <= 1e-10).all())
    assert prob.outside == 0 and box_ok(prob)
    prob.check_pairing()
    assert opt.n_evals == prob.n_evals == opt.result.nfev
    assert opt.n_iter == opt.result.nit == sum(e[0] == "end" for e in prob.events)
    assert opt.result.success


def test_float32_variable_with_float64_work_dtype():
    loss_fn, bounds, x_star = diag_quadratic(dtype=torch.float32)
    prob = make(torch.zeros_like(x_star), bounds, loss_fn)
    opt = LBFGSB(dtype=torch.float64)
    opt.run(prob)
    assert prob.param.variable.dtype == torch.float32 and prob.outside == 0 and bool(opt.finished.all())
    # float32 loss values (resolution ~1e-5 at |f| ~ 200) limit the accuracy to ~sqrt(2e-5 / a_min)
    assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-2, rtol=0)


def test_unbounded_lbfgsb_is_plain_lbfgs_on_spd_quadratic():
    loss_fn, x_star = spd_quadratic()
    prob = make(torch.zeros_like(x_star), None, loss_fn)
    opt = LBFGSB(gtol=1e-9, ftol=0.0)
    opt.run(prob)
    assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-7, rtol=0)
    assert opt.n_iter < 60


def two_loop(g: torch.Tensor, pairs) -> torch.Tensor:
    """Reference L-BFGS two-loop recursion (Nocedal & Wright, Alg. 7.4) for one vector."""
    q, alphas = g.clone(), []
    for s, y in reversed(pairs):
        alphas.append((s @ q) / (y @ s))
        q -= alphas[-1] * y
    s, y = pairs[-1]
    r = (s @ y) / (y @ y) * q
    for (s, y), a in zip(pairs, reversed(alphas)):
        r += s * (a - (y @ r) / (y @ s))
    return r


def test_compact_history_matches_two_loop_recursion():
    from lucent_dgn.render.lbfgs import _History
    gen = torch.Generator().manual_seed(5)
    dim, m = 7, 3
    c = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = c @ c.T + dim * torch.eye(dim, dtype=torch.float64)
    hist = _History(2, dim, m, torch.zeros(2, dim, dtype=torch.float64))
    kept = ([], [])
    for k in range(5):  # item 0: 5 good pairs (ring wraps); item 1: good in rounds 0 and 2 only
        s = torch.randn(2, dim, generator=gen, dtype=torch.float64)
        y = s @ a
        if k not in (0, 2):
            y[1] = -s[1]  # negative curvature: skipped
        for i in range(2):
            if i == 0 or k in (0, 2):
                kept[i].append((s[i], y[i]))
        hist.push(s, y, 1e-10)
        g = torch.randn(2, dim, generator=gen, dtype=torch.float64)
        hg = hist.hg(g)
        for i in range(2):
            assert torch.allclose(hg[i], two_loop(g[i], kept[i][-m:]), atol=1e-10, rtol=1e-10)
    hist.reset(torch.tensor([True, False]))
    g = torch.randn(2, dim, generator=gen, dtype=torch.float64)
    hg = hist.hg(g)
    assert torch.equal(hg[0], g[0]) and bool(hist.empty()[0]) and not bool(hist.empty()[1])
    assert torch.allclose(hg[1], two_loop(g[1], kept[1][-m:]), atol=1e-10, rtol=1e-10)


def tiny_net_problem(seed: int = 0, n_steps: int = 300) -> FakeProblem:
    """Maximise one unit per item of a tiny random tanh conv net; raw pixels in [0, 255]."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Tanh(), nn.Conv2d(6, 4, 3), nn.Tanh(), nn.Conv2d(4, 3, 3))
    for p in net.parameters():
        p.requires_grad_(False)
    mean = torch.tensor([104.0, 116.7, 122.7]).view(1, 3, 1, 1)
    units = torch.tensor([0, 2])

    def loss_fn(x):
        return -net(x / 64.0)[torch.arange(x.shape[0]), units, 2, 2]

    x0 = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1)) * 255 - mean
    return FakeProblem(BoxParam(x0, -mean, 255 - mean), loss_fn, n_steps=n_steps)


def test_nonconvex_toy_torch_and_scipy_agree():
    finals = []
    for opt in (LBFGSB(), ScipyLBFGSB()):
        prob = tiny_net_problem()
        start = prob.loss_fn(prob.param.variable).detach()
        opt.run(prob)
        final = prob.loss_fn(prob.param.variable).detach()
        assert bool((final < start - 1.0).all()) and prob.outside == 0 and box_ok(prob)
        prob.check_pairing()
        assert opt.n_evals == prob.n_evals
        finals.append(final)
    assert torch.allclose(finals[0], finals[1], rtol=0.03, atol=0)


def test_per_item_batch_equals_items_run_alone():
    loss_fn, bounds, _ = diag_quadratic(n_items=2)
    x0 = torch.randn(2, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    batch = make(x0, bounds, loss_fn)
    LBFGSB().run(batch)
    for i in range(2):
        alone = make(x0[i:i + 1], bounds, lambda x, i=i: loss_fn(torch.cat([x, x]))[i:i + 1])
        LBFGSB().run(alone)
        assert torch.allclose(alone.param.variable.detach()[0], batch.param.variable.detach()[i],
                              atol=1e-12, rtol=0)


@pytest.mark.parametrize("make_opt", [LBFGSB, ScipyLBFGSB], ids=["torch", "scipy"])
def test_deterministic(make_opt):
    results = []
    for _ in range(2):
        prob = tiny_net_problem(n_steps=15)
        opt = make_opt()
        opt.run(prob)
        results.append((prob.param.variable.detach().clone(), opt.n_evals, opt.n_iter))
    assert torch.equal(results[0][0], results[1][0]) and results[0][1:] == results[1][1:]


@pytest.mark.parametrize("make_opt", [LBFGSB, ScipyLBFGSB], ids=["torch", "scipy"])
def test_end_step_true_stops_and_n_steps_caps(make_opt):
    prob = tiny_net_problem()
    prob.stop_at = 3
    opt = make_opt()
    opt.run(prob)
    assert opt.n_iter == 3 and [e for e in prob.events if e[0] == "end"] == [("end", 0), ("end", 1), ("end", 2)]
    prob.check_pairing()
    assert box_ok(prob) and opt.n_evals == prob.n_evals
    capped = tiny_net_problem(n_steps=4)
    make_opt(500).run(capped)
    assert sum(e[0] == "end" for e in capped.events) == 4


def test_without_item_losses_falls_back_to_one_joint_vector(caplog):
    loss_fn, bounds, x_star = diag_quadratic()
    runs = []
    for per_item, item_losses in ((True, False), (False, False), (False, True)):
        prob = make(torch.zeros_like(x_star), bounds, loss_fn, item_losses=item_losses)
        with caplog.at_level("INFO", logger="lucent_dgn.render.lbfgs"):
            LBFGSB(per_item=per_item, ftol=0.0, gtol=1e-10).run(prob)
        assert torch.allclose(prob.param.variable.detach(), x_star, atol=1e-6, rtol=0)
        runs.append((prob.param.variable.detach().clone(), prob.n_evals))
    assert "joint" in caplog.text
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[1][0], runs[2][0])
    assert runs[0][1] == runs[1][1] == runs[2][1]


def test_bad_bounds_and_options_raise_package_errors():
    with pytest.raises(BoundsError, match="bounds"):
        LBFGSB().run(make(torch.zeros(1, 3), (torch.ones(1, 3), torch.zeros(1, 3)), lambda x: x.sum(1)))
    with pytest.raises(BoundsError):
        box_bounds(make(torch.zeros(1, 3), (torch.zeros(1, 2), torch.ones(1, 2)), lambda x: x.sum(1)))
    inf = float("inf")
    assert box_bounds(make(torch.zeros(1, 3), (torch.tensor(-inf), torch.tensor(inf)), lambda x: x.sum(1))) is None
    for bad in (dict(history_size=0), dict(c1=0.9, c2=0.5), dict(max_iter=1.5), dict(dtype=torch.int64),
                dict(gtol=-1.0)):
        with pytest.raises(ConfigError):
            LBFGSB(**bad)
    assert repr(LBFGSB(history_size=5)).startswith("LBFGSB(max_iter=500, history_size=5,")
    assert repr(ScipyLBFGSB(maxiter=50)).startswith("ScipyLBFGSB(maxiter=50, m=10,")
    for bad in (dict(m=0), dict(maxiter=True), dict(ftol="x")):
        with pytest.raises(ConfigError):
            ScipyLBFGSB(**bad)


class TimedQuadratic(FakeProblem):
    """0.5 a x^2 - b x with an analytic gradient; accumulates the time spent in evaluate()."""

    def __init__(self, param: BoxParam, a: torch.Tensor, b: torch.Tensor, n_steps: int) -> None:
        super().__init__(param, lambda x: x, n_steps=n_steps)
        self.a, self.b, self.eval_time = a, b, 0.0

    def evaluate(self) -> torch.Tensor:
        t0 = time.perf_counter()
        var = self.param.variable
        with torch.no_grad():
            self.last_item_losses = (0.5 * self.a * var * var - self.b * var).sum((1, 2, 3))
            var.grad = self.a * var - self.b
        self.n_evals += 1
        out = self.last_item_losses.sum().double()
        self.eval_time += time.perf_counter() - t0
        return out


@pytest.mark.slow
def test_print_overhead_per_evaluation_at_alexnet_input_size():
    """Prints (asserts nothing about) optimizer overhead per evaluation at 3x227x227, 1 thread."""
    shape = (1, 3, 227, 227)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(shape, generator=gen) * 10 + 0.1, torch.randn(shape, generator=gen) * 100
    mean = torch.tensor([104.0, 116.7, 122.7]).view(1, 3, 1, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, make_opt, steps in (("LBFGSB float32", LBFGSB, 20),
                                      ("LBFGSB float64", lambda: LBFGSB(dtype=torch.float64), 20),
                                      ("ScipyLBFGSB", ScipyLBFGSB, 4)):
            best = float("inf")
            for _ in range(2):  # the first run includes warm-up; report the better one
                param = BoxParam(torch.zeros(shape), -mean, 255 - mean)
                prob, opt = TimedQuadratic(param, a, b, steps), make_opt()
                t0 = time.perf_counter()
                opt.run(prob)
                best = min(best, (time.perf_counter() - t0 - prob.eval_time) / opt.n_evals * 1e3)
            print(f"\n{name}: {opt.n_iter} iterations, {opt.n_evals} evaluations, "
                  f"overhead {best:.2f} ms per evaluation (closure excluded, setup included)")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("boxed", [True, False])
def test_torch_lbfgsb_path_does_not_depend_on_the_loss_scale(boxed):
    """Multiplying the loss by 1e10 (or 1e-6) changes no iterate: first step, line search, history."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Tanh(), nn.Conv2d(6, 4, 3), nn.Tanh(), nn.Conv2d(4, 3, 3)).double()
    for p in net.parameters():
        p.requires_grad_(False)
    x0 = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 255
    runs = []
    for w in (1.0, 1e10, 1e-6):
        loss_fn = lambda x, w=w: -w * net(x / 64.0)[torch.arange(2), torch.tensor([0, 2]), 2, 2]  # noqa: E731
        prob = make(x0, (torch.tensor(0.0), torch.tensor(255.0)) if boxed else None, loss_fn, n_steps=25)
        opt = LBFGSB(gtol=0.0, ftol=0.0)  # both stopping tests are SciPy's, with absolute parts
        opt.run(prob)
        runs.append((prob.param.variable.detach().clone(), opt.n_evals, opt.n_iter))
    for x, n_evals, n_iter in runs[1:]:
        assert (n_evals, n_iter) == runs[0][1:] and n_iter == 25
        assert torch.allclose(x, runs[0][0], rtol=1e-7, atol=1e-7)


def test_first_step_moves_a_fraction_of_the_box_whatever_the_gradient():
    dim = 50
    for w in (1e-3, 1.0, 1e9):
        prob = make(torch.zeros(1, dim, dtype=torch.float64), (torch.full((1, dim), -2.0, dtype=torch.float64),
                                                               torch.full((1, dim), 2.0, dtype=torch.float64)),
                    lambda x, w=w: w * (x - 10.0).pow(2).sum(1) / dim, n_steps=1)
        trials = []
        evaluate = prob.evaluate

        def record(evaluate=evaluate, prob=prob):
            trials.append(prob.param.variable.detach().clone())
            return evaluate()
        prob.evaluate = record
        LBFGSB(first_step=0.1).run(prob)
        # the first trial moves every coordinate by 0.1 x the box width (4), towards the optimum
        assert torch.allclose(trials[1], torch.full((1, dim), 0.4, dtype=torch.float64), atol=1e-12)


def test_history_records_the_accepted_point_after_a_failed_line_search():
    """SciPy's boxed first step P(x - g) with a 1e10 loss fails its line search: the record stays at the
    start point (the variable), not at the last rejected trial."""
    import lucent_dgn as ld
    from lucent_dgn.models.fashion import fashion_classifier
    model, judge = fashion_classifier(), fashion_classifier()  # the same weights, not hooked by the render
    seen = []

    def check(info):
        with torch.no_grad():
            logit = judge(info.param())[0, 3].item()
        seen.append((info.activation[0], logit))
    objective = ld.masked_units("fc2", ld.unit_mask((10,), 3), weight=1e10)
    result = ld.render(model, objective, ld.PixelImage(28, space="gray", seed=0), LBFGSB(max_iter=3, first_step=None),
                       3, progress=False, seed=0, callbacks=[check])
    assert result.n_evals == 21 and seen  # the failed search of the old first step
    for recorded, actual in seen:
        assert recorded == pytest.approx(actual, abs=1e-4)
    assert result.activation_history[-1, 0] == pytest.approx(result.final_activation[0], abs=1e-4)
    scaled = ld.render(model, objective, ld.PixelImage(28, space="gray", seed=0), LBFGSB(max_iter=3), 3,
                       progress=False, seed=0)
    assert scaled.steps == 3 and scaled.final_activation[0] > result.final_activation[0] + 5.0
