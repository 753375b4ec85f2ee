"""p_norm and total_variation: values, gradients against cnnpref's analytic formulas (spec §8)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lucent.optvis import objectives as lucent_objectives
from lucent.optvis import param
from lucent.optvis.render import render_vis

from lucent_dgn.errors import ConfigError
from lucent_dgn.objectives import p_norm, total_variation, tv_map
from lucent_dgn.render.hooks import ActivationAccessor


def _input_accessor(x):
    return lambda name: {"input": x}[name]


def _spec_p_norm_grad(x: np.ndarray, p: float) -> np.ndarray:
    return p * np.abs(x) ** (p - 1) * np.sign(x)


def _spec_tv_grad(x: np.ndarray, beta: float) -> np.ndarray:
    """cnnpref TV_norm gradient for one CHW image, as written in spec §8."""
    d1 = np.zeros_like(x)
    d2 = np.zeros_like(x)
    d1[:, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    d2[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    v = np.sqrt(d1 ** 2 + d2 ** 2) ** beta
    v = np.maximum(v, 1e-5)
    d1p = v ** ((beta - 2) / beta) * d1
    d2p = v ** ((beta - 2) / beta) * d2
    d11 = np.zeros_like(x)
    d22 = np.zeros_like(x)
    d11[:, 1:, :] = d1p[:, :-1, :] - d1p[:, 1:, :]
    d11[:, 0, :] = -d1p[:, 0, :]
    d22[:, :, 1:] = d2p[:, :, :-1] - d2p[:, :, 1:]
    d22[:, :, 0] = -d2p[:, :, 0]
    return beta * (d11 + d22)


def test_p_norm_value_and_accessors():
    x = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]])
    objective = p_norm(p=3, weight=0.5)
    assert isinstance(objective, lucent_objectives.Objective)
    assert objective(_input_accessor(x)).item() == pytest.approx(0.5 * (1 + 8 + 0 + 27))
    own = ActivationAccessor(torch.nn.Identity(), {}, model_input=x)
    assert p_norm(p=2)(own).item() == pytest.approx(14.0)
    assert p_norm()(own).item() == pytest.approx(36.0)  # default p = 3


@pytest.mark.parametrize("p", [1.5, 2, 3, 6])
def test_p_norm_gradient_matches_spec(p):
    rng = np.random.default_rng(1)
    x_np = rng.normal(size=(2, 3, 5, 4)) * 10
    x = torch.tensor(x_np, requires_grad=True)
    p_norm(p=p, weight=0.25)(_input_accessor(x)).backward()
    np.testing.assert_allclose(x.grad.numpy(), 0.25 * _spec_p_norm_grad(x_np, p), rtol=1e-10)


def test_total_variation_value():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])  # d1 = [[3, 4], [0, 0]], d2 = [[1, 0], [2, 0]]
    assert total_variation(beta=2)(_input_accessor(x)).item() == pytest.approx(10 + 16 + 4)
    assert total_variation(beta=1, weight=2)(_input_accessor(x)).item() == pytest.approx(2 * (math.sqrt(10) + 4 + 2))
    assert torch.equal(tv_map(x[0], 2), torch.tensor([[[10.0, 16.0], [4.0, 0.0]]]))


def test_total_variation_is_per_channel():
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0] = 1.0  # constant channels have no variation, whatever their difference
    assert total_variation()(_input_accessor(x)).item() == 0.0


@pytest.mark.parametrize("beta", [1.0, 1.5, 2.0, 3.0])
def test_total_variation_gradient_matches_spec(beta):
    rng = np.random.default_rng(2)
    x_np = rng.normal(size=(2, 3, 6, 5)) * 5
    x = torch.tensor(x_np, requires_grad=True)
    total_variation(beta=beta, weight=0.3)(_input_accessor(x)).backward()
    expected = np.stack([_spec_tv_grad(item, beta) for item in x_np]) * 0.3
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_total_variation_flat_image_has_zero_gradient():
    for beta in (1.0, 2.0):
        x = torch.ones(1, 3, 4, 4, requires_grad=True)
        total_variation(beta=beta)(_input_accessor(x)).backward()
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_total_variation_under_render_vis_smooths(tiny_cnn):
    torch.manual_seed(0)
    params, image_f = param.image(16, fft=False, decorrelate=False, sd=0.5)
    start = image_f().detach().clone()
    objective = total_variation() + 0.0 * lucent_objectives.channel("features_2", 0)
    images = render_vis(tiny_cnn, objective, param_f=lambda: (params, image_f), thresholds=(10,),
                        transforms=[], preprocess=False, fixed_image_size=16, show_image=False, progress=False)
    end = torch.from_numpy(images[-1]).permute(0, 3, 1, 2)
    assert tv_map(end).sum() < 0.5 * tv_map(start).sum()


@pytest.mark.parametrize("factory, kwargs, message", [
    (p_norm, dict(p=0), "`p` must be a finite number > 0"),
    (p_norm, dict(p=float("nan")), "`p` must be a finite number > 0"),
    (p_norm, dict(weight=float("inf")), "`weight` must be a finite number"),
    (total_variation, dict(beta=-1), "`beta` must be a finite number > 0"),
    (total_variation, dict(beta="2"), "`beta` must be a finite number > 0"),
    (total_variation, dict(weight=True), "`weight` must be a finite number"),
])
def test_bad_arguments(factory, kwargs, message):
    with pytest.raises(ConfigError) as info:
        factory(**kwargs)
    assert message in str(info.value)
