"""The render loop inside ordinary programs: models used during a render, grad contexts, threads,
wrapped and aliased models, modules called twice, extreme values. Each test checks that the
render completes (or raises one clear package error) and that the model and global state are
left as they were."""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn.errors import BoundsError, ConfigError, LayerNotFoundError
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.lbfgs import LBFGSB, ScipyLBFGSB

from _tiny import TinyCaffeNet, TinyGenerator


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(inplace=True),
                                     pool=nn.AdaptiveAvgPool2d(2), flat=nn.Flatten(), fc=nn.Linear(16, 5))).train()


def state(model: nn.Module):
    return ([(p.requires_grad, p.grad) for p in model.parameters()], [m.training for m in model.modules()],
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
            [getattr(m, "inplace", None) for m in model.modules()])


def fc_unit(channel: int = 1, layer="fc"):
    return ld.masked_units(layer, ld.unit_mask((5,), channel))


def pixel(seed: int = 0, batch: int = 1):
    return ld.PixelImage(12, batch=batch, space="unit", seed=seed)


def run(model, objective=None, param=None, optimizer=None, steps=3, **kw):
    return ld.render(model, objective or fc_unit(), param or pixel(), optimizer or MomentumGD(lr=0.5, decay=0.0),
                     steps, progress=False, **kw)


# -- 1. the model works normally while a render runs ----------------------------------------------
def test_callback_may_call_the_model():
    model = net()
    before = state(model)
    probabilities = []

    def log_probability(info):
        with torch.no_grad():
            x = info.param(ld.TorchvisionSpace())
            probabilities.append(float(torch.softmax(model(x), 1)[0, 1]))

    # conv is the objective's only layer: without care, the early stop would fire inside the callback
    result = run(model, ld.masked_units("conv", ld.channel_mask((4, 10, 10), 1)), callbacks=[log_probability])
    assert result.steps == 3 and len(probabilities) == 3 and all(0 < p < 1 for p in probabilities)
    assert state(model) == before


def test_render_nested_inside_a_callback():
    model = net()
    before = state(model)
    inner = []

    def nested(info):
        if info.step == 0:
            inner.append(run(model, ld.masked_units("conv", ld.channel_mask((4, 10, 10), 2)), steps=2))

    outer = run(model, ld.masked_units("conv", ld.channel_mask((4, 10, 10), 1)), callbacks=[nested])
    assert outer.steps == 3 and inner[0].steps == 2
    assert state(model) == before
    alone = run(model, ld.masked_units("conv", ld.channel_mask((4, 10, 10), 2)), steps=2)
    np.testing.assert_array_equal(inner[0].raw, alone.raw)


def test_objective_may_run_the_model_itself():
    """A Lucent-style objective that calls the model (functional logits) sees a full output."""
    model = net()

    def logits_objective(T):
        return -model(T("input"))[:, 2].sum()

    result = run(model, logits_objective)
    assert result.steps == 3 and state(model)[2] == 0


# -- 2. grad contexts -------------------------------------------------------------------------------
@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("optimizer", [lambda: MomentumGD(lr=0.5, decay=0.0), lambda: LBFGSB(max_iter=2),
                                       lambda: ScipyLBFGSB(maxiter=2), lambda: "adam"],
                         ids=["gd", "lbfgsb", "scipy-lbfgsb", "adam"])
def test_render_inside_grad_contexts(context, optimizer):
    model, param = net(), pixel()
    before = state(model)
    with context():
        result = run(model, param=param, optimizer=optimizer(), steps=2)
        assert not torch.is_grad_enabled()  # the context is as the user set it
    assert result.steps >= 1 and np.isfinite(result.final_activation).all()
    assert state(model) == before


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_presets_inside_grad_contexts(context):
    model, generator = TinyCaffeNet(), TinyGenerator()
    mask = ld.unit_mask((10,), 3)
    with context():
        gd = ld.prefer_img_gd(model, "fc8", mask, iter_n=2, seed=0, progress=False)
        dgn = ld.prefer_img_dgn_lbfgs(model, generator, "fc8", mask, maxiter=2, seed=0, progress=False)
    assert gd.steps == 2 and dgn.steps >= 1


def test_parameterization_made_in_inference_mode_is_one_clear_error():
    model = net()
    with torch.inference_mode():
        param = pixel()
    with pytest.raises(ConfigError, match=r"`param` must be built outside torch.inference_mode\(\)"):
        run(model, param=param)
    assert state(model)[2] == 0


# -- 3. concurrency ---------------------------------------------------------------------------------
def test_concurrent_renders_on_one_model_are_correct_and_restore_it():
    model = net()
    before = state(model)
    channels = [0, 1, 2, 3]
    alone = {c: run(model, ld.masked_units("conv", ld.channel_mask((4, 10, 10), c)), steps=6) for c in channels}
    results, errors = {}, []
    barrier = threading.Barrier(len(channels))

    def work(c):
        try:
            barrier.wait()
            results[c] = run(model, ld.masked_units("conv", ld.channel_mask((4, 10, 10), c)), steps=6)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(c,)) for c in channels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for c in channels:
        np.testing.assert_array_equal(results[c].raw, alone[c].raw)
    assert state(model) == before
    assert all(p.requires_grad for p in model.parameters())


# -- 4. wrapped and aliased models ------------------------------------------------------------------
def test_compiled_model_accepts_the_names_layer_shape_accepts():
    model = net()
    compiled = torch.compile(model, backend="eager")
    for name in ("conv", "_orig_mod.conv"):
        shape = ld.layer_shape(compiled, name, (3, 12, 12))
        result = run(compiled, ld.masked_units(name, ld.channel_mask(shape, 1)))
        assert result.steps == 3
    assert state(model)[2] == 0


class Aliased(nn.Module):
    """``body.conv`` is also registered as ``features`` (named_modules() lists it once)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = net()
        self.features = self.body.conv

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("name", ["features", "features_0"])
def test_module_reachable_under_two_names(name):
    model = Aliased()
    first = run(model, ld.masked_units("body.conv", ld.channel_mask((4, 10, 10), 1)))
    second = run(model, ld.masked_units("features" if name == "features" else model.features,
                                        ld.channel_mask((4, 10, 10), 1)))
    np.testing.assert_array_equal(first.raw, second.raw)


def test_data_parallel_error_suggests_the_module_prefix():
    wrapped = nn.DataParallel(net())
    with pytest.raises(LayerNotFoundError, match=r"use 'module.fc'"):
        run(wrapped, fc_unit())
    assert run(wrapped, fc_unit(layer="module.fc")).steps == 3


class Functional(nn.Module):
    """Logits computed functionally after the last module (no module outputs them)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = net()

    def forward(self, x):
        return 2.0 * self.body(x) - 1.0


@pytest.mark.parametrize("target", ["", "model"])
def test_the_model_itself_can_be_targeted(target):
    model = Functional()
    layer = model if target == "model" else ""
    result = run(model, ld.masked_units(layer, ld.unit_mask((5,), 2)))
    with torch.no_grad():
        logits = model(torch.from_numpy(result.model_input))
    assert result.final_activation[0] == pytest.approx(float(logits[0, 2]), rel=1e-5)
    assert state(model)[2] == 0


# -- 5. a module called more than once per forward --------------------------------------------------
class Twice(nn.Module):
    """``block`` runs twice; the second call is what Lucent's hooks keep."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.calls = 0

    def forward(self, x):
        h = self.block(torch.relu(self.stem(x)))
        return self.head(self.block(torch.relu(h)))


@pytest.mark.parametrize("stop_early", [True, False])
def test_module_called_twice_is_read_at_its_last_call(stop_early):
    model = Twice()
    mask = ld.channel_mask((4, 12, 12), 1)
    result = run(model, ld.masked_units("block", mask), stop_early=stop_early)
    with torch.no_grad():
        x = torch.from_numpy(result.model_input)
        second = model.block(torch.relu(model.block(torch.relu(model.stem(x)))))
    assert result.final_activation[0] == pytest.approx(float(second[0, 1].mean()), rel=1e-5)


def test_stop_early_changes_speed_only():
    model = Twice()
    mask = ld.channel_mask((4, 12, 12), 1)
    a = run(model, ld.masked_units("block", mask), stop_early=True, steps=4)
    b = run(model, ld.masked_units("block", mask), stop_early=False, steps=4)
    np.testing.assert_array_equal(a.raw, b.raw)


# -- 8. extreme values in the API -------------------------------------------------------------------
@pytest.mark.parametrize("bound", ["lower", "upper"])
def test_nan_scalar_code_bound_is_rejected(bound):
    with pytest.raises(BoundsError, match=rf"`{bound}` must be numbers \(use inf for no bound\); got 'NaN'"):
        ld.DGNImage(TinyGenerator(), **{bound: float("nan")})


@pytest.mark.parametrize("seed", [2**64, 2**70, -1, 1.5, True])
def test_seed_out_of_range_is_one_clear_error(seed):
    rule = r"`seed` must be None or an integer in \[0, 2\*\*64 - 1\]"
    with pytest.raises(ConfigError, match=rule):
        run(net(), seed=seed)
    with pytest.raises(ConfigError, match=rule):
        ld.PixelImage(8, seed=seed)
    with pytest.raises(ConfigError, match=rule):
        ld.DGNImage(TinyGenerator(), seed=seed)


def test_largest_seed_works():
    a = run(net(), param=ld.PixelImage(12, space="unit", seed=2**64 - 1), seed=2**64 - 1)
    b = run(net(), param=ld.PixelImage(12, space="unit", seed=2**64 - 1), seed=2**64 - 1)
    np.testing.assert_array_equal(a.raw, b.raw)
