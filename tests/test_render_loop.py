"""The render loop: hygiene, early stop, determinism, batches, faults, Lucent interop."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn.errors import ConfigError, LayerNotFoundError, MaskError, NonFiniteLossError
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.torch_optim import TorchOptimizer


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3), relu1=nn.ReLU(inplace=True), conv2=nn.Conv2d(4, 6, 3), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(2), flat=nn.Flatten(), fc=nn.Linear(24, 5))).train()


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def pixel(batch=1, seed=0):
    return ld.PixelImage(16, batch=batch, space="unit", model_space=ld.UnitSpace(), init="gray" if seed is None else "random",
                         seed=seed)


def conv1_unit(channel=1):
    return ld.masked_units("conv1", ld.unit_mask((4, 14, 14), channel))


def test_model_left_clean_after_render():
    model = make_net()
    flags = [p.requires_grad for p in model.parameters()]
    result = ld.render(model, conv1_unit(), pixel(), MomentumGD(lr=1.0, decay=0.0), steps=5, progress=False)
    assert result.steps == 5 and result.n_evals == 5
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training and all(m.training for m in model.modules())
    assert model.relu1.inplace is True


def test_layers_after_target_never_run():
    model = make_net()
    ran = []
    for name in ("conv2", "fc"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: ran.append(n))
    ld.render(model, conv1_unit(), pixel(), MomentumGD(lr=1.0, decay=0.0), steps=3, progress=False)
    # Only the validation pass (a full forward before the loop) runs the later layers.
    assert ran.count("conv2") == 1 and ran.count("fc") == 1


def test_pre_relu_values_with_inplace_relu():
    model = make_net()
    seen = {}

    def objective(T):
        seen["min"] = float(T("conv1").detach().min())
        return -T("conv1")[:, 0].sum()

    ld.render(model, objective, pixel(), MomentumGD(lr=1.0, decay=0.0), steps=1, progress=False)
    assert seen["min"] < 0  # an in-place ReLU would have made every value >= 0


def test_activation_rises_and_history_shapes():
    model = make_net().eval()
    result = ld.render(model, conv1_unit(), pixel(batch=2), MomentumGD(lr=0.05, momentum=0.9, decay=0.0),
                       steps=20, progress=False)
    assert result.activation_history.shape == (20, 2)
    assert result.loss_history.shape == (20,)
    assert np.all(result.final_activation > result.activation_history[0] + 1.0)
    assert result.images.shape == (2, 16, 16, 3) and result.images.dtype == np.float32
    assert result.raw.shape == (2, 3, 16, 16)


def test_same_seed_is_bit_identical():
    def run():
        model = make_net().eval()
        return ld.render(model, conv1_unit(), pixel(seed=3), MomentumGD(lr=0.5, decay=0.01, blur_sigma=0.5),
                         steps=6, transforms=[ld.Jitter(2)], seed=7, progress=False)
    a, b = run(), run()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.loss_history, b.loss_history)


def test_gd_batch_equals_items_one_by_one():
    model = make_net().eval()
    masks = ld.unit_masks((4, 14, 14), [0, 3])
    init = np.random.RandomState(0).randint(0, 256, (2, 16, 16, 3)).astype(np.float32)
    opt = dict(lr=(0.5, 0.1), momentum=0.9, decay=0.01, blur_sigma=(1.0, 0.5))

    def run(mask, img):
        p = ld.PixelImage(16, batch=len(img), space="unit", model_space=ld.UnitSpace(), init=img)
        return ld.render(model, ld.masked_units("conv1", mask), p, MomentumGD(**opt), steps=8, progress=False)

    together = run(masks, init)
    for i in range(2):
        alone = run(masks[i], init[i:i + 1])
        np.testing.assert_allclose(together.images[i], alone.images[0], rtol=1e-5, atol=1e-5)


def test_lucent_objective_and_param_f_are_accepted():
    from lucent.optvis import objectives, param
    model = make_net().eval()
    obj = objectives.channel("conv1", 2) + 0.5 * conv1_unit(2)
    result = ld.render(model, obj, lambda: param.image(16, fft=False, decorrelate=False), "adam", steps=5,
                       progress=False)
    assert result.images.shape == (1, 16, 16, 3)
    assert result.loss_history[-1] < result.loss_history[0]


def test_interrupt_returns_result_so_far_and_leaves_model_clean():
    model = make_net()

    def interrupt(info):
        if info.step == 2:
            raise KeyboardInterrupt

    result = ld.render(model, conv1_unit(), pixel(), MomentumGD(lr=1.0), steps=10, callbacks=[interrupt],
                       progress=False)
    assert result.interrupted and result.steps == 3
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters()) and model.training


def test_callback_exception_leaves_model_clean():
    model = make_net()

    def boom(info):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        ld.render(model, conv1_unit(), pixel(), MomentumGD(lr=1.0), steps=3, callbacks=[boom], progress=False)
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_nan_loss_names_the_step():
    model = make_net()

    def objective(T):
        a = T("conv1")[:, 0].sum()
        return a * float("nan") if objective.calls > 3 else (objective.__setattr__("calls", objective.calls + 1) or -a)

    objective.calls = 0
    with pytest.raises(NonFiniteLossError, match="step"):
        ld.render(model, objective, pixel(), MomentumGD(lr=1.0), steps=10, progress=False)
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters())


def test_bad_mask_fails_before_any_step():
    model = make_net()
    calls = []
    with pytest.raises(MaskError, match="conv1"):
        ld.render(model, ld.masked_units("conv1", torch.ones(4, 13, 13)), pixel(), MomentumGD(lr=1.0), steps=3,
                  callbacks=[calls.append], progress=False)
    assert calls == [] and hook_count(model) == 0


def test_unknown_layer_suggests_names():
    model = make_net()
    with pytest.raises(LayerNotFoundError, match="conv1"):
        ld.render(model, ld.masked_units("conv", ld.unit_mask((4,), 0)), pixel(), MomentumGD(), steps=2,
                  progress=False)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ConfigError, match="steps"):
        ld.render(make_net(), conv1_unit(), pixel(), MomentumGD(), steps=steps, progress=False)


def test_unknown_optimizer_name():
    with pytest.raises(ConfigError, match="optimizer"):
        ld.render(make_net(), conv1_unit(), pixel(), "lbgfs", steps=2, progress=False)


def test_snapshot_callback_keeps_images():
    snap = ld.Snapshot(every=2)
    result = ld.render(make_net().eval(), conv1_unit(), pixel(), MomentumGD(lr=1.0), steps=5, callbacks=[snap],
                       progress=False)
    assert sorted(result.snapshots) == [2, 4] and result.snapshots[2].shape == (1, 16, 16, 3)


def test_torch_optimizer_factory_is_accepted():
    result = ld.render(make_net().eval(), conv1_unit(), pixel(), lambda p: torch.optim.SGD(p, lr=0.01), steps=4,
                       progress=False)
    assert result.n_evals == 4
