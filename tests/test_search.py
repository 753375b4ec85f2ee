"""Gradient-free search: bounds, determinism, batches, closed ask/tell loops with checkpoints,
black-box objectives and their errors, and a simulated noisy neuron."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lucent_dgn as ld
from lucent_dgn.errors import BoundsError, ConfigError, NonFiniteLossError, ShapeError
from lucent_dgn.render.closed_loop import load_state

from _fake_problem import BoxParam, SearchProblem

SEARCHES = {
    "cmaes": lambda **kw: ld.CMAES(popsize=8, **kw),
    "cmaes-full": lambda **kw: ld.CMAES(popsize=8, diagonal=False, **kw),
    "ga": lambda **kw: ld.GeneticSearch(popsize=8, n_elite=2, **kw),
    "random": lambda **kw: ld.RandomSearch(popsize=8, **kw),
}


def sphere(target: torch.Tensor):
    """Per-item squared distance to ``target`` (N, D): the optimum is known."""
    return lambda x: ((x - target) ** 2).sum(1)


def boxed_problem(n_items: int = 2, dim: int = 6, steps: int = 30) -> SearchProblem:
    """A box with two-sided, one-sided, free and fixed coordinates; the target lies partly outside."""
    lower = torch.tensor([[-1.0, -1.0, 0.0, -np.inf, -np.inf, 0.5]]).repeat(1, dim // 6)
    upper = torch.tensor([[1.0, 2.0, np.inf, 3.0, np.inf, 0.5]]).repeat(1, dim // 6)
    target = torch.linspace(-2.0, 4.0, dim, dtype=torch.float32).repeat(n_items, 1)
    target[1:] *= 0.5
    x0 = torch.zeros(n_items, dim)
    return SearchProblem(BoxParam(x0, lower, upper), sphere(target), n_steps=steps)


@pytest.mark.parametrize("bounds", ["clip", "reflect"])
@pytest.mark.parametrize("name", list(SEARCHES))
def test_candidates_never_leave_the_box_and_the_variable_is_the_best_seen(name, bounds):
    prob = boxed_problem()
    opt = SEARCHES[name](seed=3, bounds=bounds)
    opt.run(prob)
    lower, upper = prob.param.bounds()
    seen = torch.cat(prob.seen)
    assert seen.shape == (30 * 8, 2, 6)
    assert bool(((seen >= lower) & (seen <= upper)).all())
    assert bool((seen[..., 5] == 0.5).all())  # a fixed coordinate keeps its value
    best = torch.stack([prob.loss_fn(c) for c in seen]).min(0).values
    assert torch.equal(prob.loss_fn(prob.param.variable.detach()), best)
    prob.check_pairing()
    assert prob.n_evals == opt.n_evals == 30 * 8 and len(prob.selected) == 30


def test_cmaes_converges_to_the_box_optimum():
    prob = boxed_problem(steps=150)
    ld.CMAES(popsize=12, seed=0, sigma0=0.3).run(prob)
    lower, upper = prob.param.bounds()
    target = torch.linspace(-2.0, 4.0, 6).repeat(2, 1)
    target[1:] *= 0.5
    optimum = torch.maximum(torch.minimum(target, upper), lower)
    assert torch.allclose(prob.param.variable.detach(), optimum, atol=1e-3)


@pytest.mark.parametrize("name", list(SEARCHES))
def test_same_seed_is_bit_identical_and_another_seed_differs(name):
    runs = []
    for seed in (5, 5, 6):
        prob = boxed_problem(steps=6)
        SEARCHES[name](seed=seed).run(prob)
        runs.append(torch.cat(prob.seen))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_items_of_a_batch_are_independent_searches():
    batch = boxed_problem(n_items=2, steps=10)
    ld.CMAES(popsize=8, seed=1).run(batch)
    alone = boxed_problem(n_items=1, steps=10)
    ld.CMAES(popsize=8, seed=1).run(alone)
    assert torch.equal(torch.cat(batch.seen)[:, :1], torch.cat(alone.seen))


def test_joint_loss_searches_the_batch_as_one_vector():
    prob = boxed_problem(steps=12)
    prob.item_losses = False
    opt = ld.CMAES(popsize=8, seed=0)
    opt.run(prob)
    assert opt.rows == 1 and opt.generation == 11  # the first generation found the loss not split by item
    assert all(len(s) == 1 for s in prob.selected)


def test_bad_options_and_bounds_raise_package_errors():
    for make in (lambda: ld.CMAES(sigma0=0), lambda: ld.CMAES(popsize=1), lambda: ld.CMAES(seed=-1),
                 lambda: ld.CMAES(diagonal="yes"), lambda: ld.GeneticSearch(n_elite=40),
                 lambda: ld.GeneticSearch(mutation_rate=2), lambda: ld.RandomSearch(sigma=float("inf")),
                 lambda: ld.CMAES(bounds="wrap")):
        with pytest.raises(ConfigError):
            make()
    opt = ld.CMAES()
    with pytest.raises(BoundsError, match="NaN"):
        opt.start(np.zeros((1, 4)), lower=np.array([0, 0, float("nan"), 0]), upper=1.0)
    with pytest.raises(BoundsError, match="lower <= upper"):
        opt.start(np.zeros((1, 4)), lower=1.0, upper=0.0)
    with pytest.raises(BoundsError, match="at least 2"):
        opt.start(np.zeros((1, 4)), lower=0.0, upper=0.0)
    with pytest.raises(ConfigError, match="finite"):
        opt.start(np.full((1, 4), np.nan))
    with pytest.raises(ConfigError, match="start"):
        ld.CMAES().ask()
    prob = SearchProblem(BoxParam(torch.zeros(1, 4), torch.tensor(float("nan")), torch.tensor(1.0)), lambda x: x.sum(1))
    with pytest.raises(BoundsError):
        ld.CMAES().run(prob)
    assert prob.n_evals == 0
    opt.start(np.zeros((2, 4)))
    opt.ask()
    with pytest.raises(ShapeError):
        opt.tell(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="finite"):
        opt.tell(np.full((opt.popsize, 2), np.nan))


# ---------------------------------------------------------------------------------- shipped models
@pytest.fixture(scope="module")
def fashion():
    from lucent_dgn.generators.small import fashion_generator
    from lucent_dgn.models.fashion import fashion_classifier
    return fashion_classifier(), fashion_generator()


def dgn(G, batch=2, seed=0):
    lower, upper = G.code_bounds(1.0)
    return ld.DGNImage(G, batch=batch, init="stats", lower=lower, upper=upper, seed=seed, clip_initial=True)


def test_render_with_cmaes_climbs_without_gradients_and_leaves_global_state(fashion):
    model, G = fashion
    mask = torch.zeros(2, 10)
    mask[0, 1] = mask[1, 7] = 1
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    grads = []
    hook = model.fc2.register_full_backward_hook(lambda *a: grads.append(1))
    try:
        runs = [ld.render(model, ld.masked_units("fc2", mask), dgn(G), ld.CMAES(popsize=10, seed=4), 12,
                          progress=False) for _ in range(2)]
    finally:
        hook.remove()
    assert not grads  # forward only
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.get_rng_state(), torch_state)
    r = runs[0]
    assert torch.equal(runs[0].final_params, runs[1].final_params)
    assert np.array_equal(runs[0].activation_history, runs[1].activation_history)
    assert r.n_evals == 12 * 10 and r.steps == 12
    hist = r.activation_history
    assert bool((np.diff(hist, axis=0) >= 0).all())  # the record is the best so far
    assert np.allclose(r.final_activation, hist[-1], atol=1e-4)  # ... and it is the final variable
    assert bool((hist[-1] > hist[0] + 1.0).all())
    lower, upper = G.code_bounds(1.0)
    assert bool(((r.final_params >= lower) & (r.final_params <= upper)).all())


def test_evaluate_candidates_matches_evaluate_and_changes_nothing(fashion):
    model, G = fashion
    mask = torch.zeros(3, 10)
    mask[range(3), [0, 4, 8]] = 1
    seen = {}

    class Probe:
        """An optimizer that scores three candidates, then evaluates the second one with gradients."""

        def run(self, problem):
            var = problem.param.variable
            start = var.detach().clone()
            cands = torch.stack([start * s for s in (1.0, 0.5, 0.0)])
            problem.begin_step(0)
            seen["losses"] = problem.evaluate_candidates(cands, max_batch=4)
            seen["evals"], seen["grad"] = problem.n_evals, var.grad
            seen["unchanged"] = torch.equal(var.detach(), start)
            with torch.no_grad():
                var.copy_(cands[1])
            problem.evaluate()
            seen["items"] = problem.last_item_losses.clone()
            with pytest.raises(ShapeError):
                problem.evaluate_candidates(cands[:, :2])
            problem.select_records([1])  # the step records candidate 1 for every item
            problem.end_step(0)

    result = ld.render(model, ld.masked_units("fc2", mask), dgn(G, batch=3), Probe(), 1, progress=False)
    assert seen["losses"].shape == (3, 3) and seen["losses"].dtype == torch.float64
    assert seen["evals"] == 3 and seen["grad"] is None and seen["unchanged"]
    assert torch.allclose(seen["items"], seen["losses"][1], rtol=1e-5, atol=1e-5)
    assert np.allclose(result.activation_history[0], -seen["losses"][1].numpy(), atol=1e-4)


# ---------------------------------------------------------------------------------- black boxes
def neuron_fn(model, unit):
    """A deterministic black box: the classifier's logit ``unit`` of RGB images (N, H, W, 3)."""
    def score(images):
        x = torch.as_tensor(images).mean(-1, keepdim=True).permute(0, 3, 1, 2)
        with torch.no_grad():
            return model(x)[:, unit].numpy()
    return score


def test_black_box_render_needs_no_model_pass_and_climbs(fashion):
    model, G = fashion
    calls = []

    def score(images):
        calls.append(images.shape)
        assert isinstance(images, np.ndarray) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1
        return neuron_fn(model, 2)(images)

    r = ld.render(None, ld.black_box(score), dgn(G, batch=1), ld.CMAES(popsize=6, seed=0), 8,
                  progress=False)
    assert calls[1] == (1, 28, 28, 3) and len(calls) == 1 + 8 * 6 + 1  # validation, candidates, final
    assert r.final_activation[0] > r.activation_history[0, 0] - 1e-6
    assert r.final_activation[0] == pytest.approx(float(score(r.images.clip(0, 1))[0]), abs=1e-4)


def test_black_box_bad_scores_raise_one_clear_error(fashion):
    _, G = fashion
    cases = [(lambda im: np.zeros(len(im) + 1), ShapeError, r"wrong\(images\)` must be an array of shape \(1,\)"),
             (lambda im: np.full(len(im), np.nan), NonFiniteLossError, "finite"),
             (lambda im: "high", ShapeError, "one score per image")]
    for fn, err, pattern in cases:
        fn.__name__ = "wrong"
        with pytest.raises(err, match=pattern):
            ld.render(None, ld.black_box(fn), dgn(G, batch=1), ld.CMAES(popsize=4, seed=0), 2,
                      progress=False)
    with pytest.raises(ConfigError, match="gradient-free"):
        ld.render(None, ld.black_box(lambda im: np.zeros(len(im))), dgn(G, batch=1), "gd", 2,
                  progress=False)
    for bad in (dict(score_fn=3), dict(score_fn=len, images="pil")):
        with pytest.raises(ConfigError):
            ld.black_box(**bad)


def run_loop(G, score, path, generations, make, crash_after=None):
    """A lab loop: ask, score, tell; ``crash_after``: stop after that many tells and an extra ask."""
    loop = ld.ClosedLoop(dgn(G, batch=2, seed=1), make(), checkpoint=path)
    while loop.generation < generations:
        images = loop.ask()
        if crash_after is not None and loop.generation == crash_after:
            return loop  # crashed: asked, never told
        loop.tell(np.stack([score(images[:, i]) for i in range(images.shape[1])], 1))
    return loop


@pytest.mark.parametrize("name", ["cmaes", "ga", "random"])
def test_closed_loop_resumed_after_a_crash_equals_an_uninterrupted_run(fashion, tmp_path, name):
    model, G = fashion
    score = neuron_fn(model, 3)
    make = lambda: SEARCHES[name](seed=11)  # noqa: E731
    whole = run_loop(G, score, tmp_path / "whole.npz", 6, make)
    run_loop(G, score, tmp_path / "crash.npz", 6, make, crash_after=3)
    assert load_state(tmp_path / "crash.npz")["generation"] == 3
    assert not list(tmp_path.glob(".*part"))  # nothing half-written
    resumed = run_loop(G, score, tmp_path / "crash.npz", 6, make)
    assert resumed.generation == whole.generation == 6
    assert np.array_equal(resumed.scores, whole.scores) and resumed.scores.shape == (6, 8, 2)
    assert torch.equal(resumed.param.variable, whole.param.variable)
    assert np.array_equal(resumed.best_images, whole.best_images)
    assert np.array_equal(resumed.best_scores, whole.scores.max((0, 1)))
    with pytest.raises(ConfigError):  # a checkpoint of another search
        ld.ClosedLoop(dgn(G, batch=2, seed=1), ld.CMAES(sigma0=0.3), checkpoint=tmp_path / "crash.npz")


def test_closed_loop_scores_are_checked(fashion, tmp_path):
    _, G = fashion
    loop = ld.ClosedLoop(dgn(G, batch=2), ld.CMAES(popsize=4, seed=0), checkpoint=tmp_path / "s.npz")
    images = loop.ask()
    assert images.shape == (4, 2, 28, 28, 3) and images.dtype == np.float32
    assert np.array_equal(loop.ask(), images)  # asking again gives the same images
    for bad, err in ((np.zeros((4, 3)), ShapeError), (np.zeros(4), ShapeError), ("x", ShapeError),
                     (np.full((4, 2), np.nan), NonFiniteLossError)):
        with pytest.raises(err, match="scores"):
            loop.tell(bad)
    assert loop.generation == 0 and not (tmp_path / "s.npz").exists()
    loop.tell(torch.ones(4, 2))
    assert loop.generation == 1 and (tmp_path / "s.npz").exists()
    with pytest.raises(ConfigError):
        ld.ClosedLoop(dgn(G), "cmaes")


def test_cmaes_still_climbs_on_a_noisy_neuron_at_snr_1(fashion):
    """A classifier unit plus Gaussian noise whose std equals the spread of its responses to generator
    samples (SNR 1): the noise-free response of CMA-ES's mean image rises over 25 generations."""
    model, G = fashion
    with torch.no_grad():
        reference = dgn(G, batch=64, seed=9).to_rgb(dgn(G, batch=64, seed=9)()).clamp(0, 1).numpy()
    units = [1, 5, 9]
    neurons = [ld.SimulatedNeuron(model, "fc2", u, snr=1.0, reference=reference, seed=u) for u in units]
    assert all(n.noise_std > 0.5 for n in neurons)
    param = dgn(G, batch=3, seed=2)
    opt = ld.CMAES(popsize=16, seed=0)
    loop = ld.ClosedLoop(param, opt)

    def mean_images():
        with torch.no_grad():
            code = torch.from_numpy(opt.mean).float()
            return param.to_rgb(torch.func.functional_call(param, {"variable": code}, ())).clamp(0, 1).numpy()
    start = mean_images()
    for _ in range(25):
        images = loop.ask()
        loop.tell(np.stack([n(images[:, i]) for i, n in enumerate(neurons)], 1))
    end = mean_images()
    gain = np.array([n.clean(end[i:i + 1])[0] - n.clean(start[i:i + 1])[0] for i, n in enumerate(neurons)])
    noise = np.array([n.noise_std for n in neurons])
    assert bool((gain > 2.0 * noise).all()), (gain, noise)
