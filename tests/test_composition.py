"""Composition with Lucent and state between renders: input spaces, per-item losses declared by
terms, per-term activation records, global RNG states, Lucent's ``labels`` pseudo-layer."""
from __future__ import annotations

import logging
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from lucent.optvis import objectives as lobj
from lucent.optvis import transform as ltransform
from torch import nn

import lucent_dgn as ld
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.lbfgs import LBFGSB
from lucent_dgn.spaces import CaffeSpace, TorchvisionSpace, UnitSpace

from _tiny import TinyCaffeNet


def rgb_net() -> nn.Sequential:
    """A model that declares no input space (as torchvision's): conv (4, 14, 14) -> fc (5,)."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(inplace=True),
                                     pool=nn.AdaptiveAvgPool2d(2), flat=nn.Flatten(), fc=nn.Linear(16, 5))).eval()


class Recorder(nn.Module):
    """Identity that remembers the last input (to see what the model was fed)."""

    def forward(self, x):
        self.seen = x.detach().clone()
        return x


def recording_net(space=None) -> nn.Sequential:
    net = nn.Sequential(OrderedDict(rec=Recorder(), body=rgb_net()))
    if space is not None:
        net.input_space = space
    return net


def unit_obj(channel=1):
    return ld.masked_units("body.fc", ld.unit_mask((5,), channel))


# -- input space, resolved per call -------------------------------------------------------------
def test_input_space_is_resolved_per_call_and_param_untouched():
    param = ld.PixelImage(16, space="unit", init="gray")
    caffe, tv = recording_net(CaffeSpace()), recording_net(TorchvisionSpace())
    ld.render(caffe, unit_obj(), param, MomentumGD(lr=0.0, decay=0.0), steps=1, progress=False)
    assert param.model_space is None
    assert torch.allclose(caffe.rec.seen, CaffeSpace().from_rgb01(torch.full((1, 3, 16, 16), 0.5)))
    ld.render(tv, unit_obj(), param, MomentumGD(lr=0.0, decay=0.0), steps=1, progress=False)
    assert torch.allclose(tv.rec.seen, TorchvisionSpace().from_rgb01(torch.full((1, 3, 16, 16), 0.5)))
    assert param.model_space is None


def test_undeclared_model_gets_lucents_convention(caplog):
    """PixelImage() (Caffe storage) on a plain torchvision-style model: ImageNet-normalised RGB."""
    net = recording_net()
    with caplog.at_level(logging.INFO, logger="lucent_dgn"):
        result = ld.render(net, unit_obj(), ld.PixelImage(16, seed=0), MomentumGD(lr=0.0, decay=0.0), steps=1,
                           progress=False)
        ld.render(net, unit_obj(), ld.PixelImage(16, seed=0), MomentumGD(lr=0.0, decay=0.0), steps=1,
                  progress=False)
    lo, hi = (0 - 0.485) / 0.229, (1 - 0.406) / 0.225
    assert net.rec.seen.min() >= lo - 1e-5 and net.rec.seen.max() <= hi + 1e-5
    assert result.settings["input_space"].startswith("TorchvisionSpace")
    told = [r for r in caplog.records if "declares no input_space" in r.getMessage()]
    assert len(told) == 1  # logged once per model


def test_preprocess_false_feeds_the_parameterizations_own_space():
    net = recording_net()
    ld.render(net, unit_obj(), ld.PixelImage(16, space="unit", init="gray"), MomentumGD(lr=0.0, decay=0.0),
              steps=1, progress=False, preprocess=False)
    assert torch.allclose(net.rec.seen, torch.full((1, 3, 16, 16), 0.5))


def test_explicit_input_space_wins():
    net = recording_net(TorchvisionSpace())
    ld.render(net, unit_obj(), ld.PixelImage(16, space="unit", init="gray"), MomentumGD(lr=0.0, decay=0.0),
              steps=1, progress=False, input_space=UnitSpace())
    assert torch.allclose(net.rec.seen, torch.full((1, 3, 16, 16), 0.5))


def test_lucent_param_f_on_undeclared_model_is_normalised():
    from lucent.optvis import param as lparam
    net = recording_net()
    param = ld.LucentParam(lambda: lparam.image(16, fft=False, decorrelate=False))
    ld.render(net, unit_obj(), param, MomentumGD(lr=0.0, decay=0.0), steps=1, progress=False, seed=0)
    with torch.no_grad():
        expected = TorchvisionSpace().from_rgb01(param.image_f())
    assert torch.allclose(net.rec.seen, expected)


# -- per-item losses declared by the terms --------------------------------------------------------
def test_masked_units_plus_tv_runs_per_item_under_lbfgsb():
    """TV is 0 on a flat image: guessing from values at the first evaluation used to fail."""
    model = TinyCaffeNet()
    masks = torch.stack([ld.unit_mask((4, 14, 14), 1), ld.unit_mask((4, 14, 14), 2)])
    obj = ld.masked_units("conv1", masks, weight=100.0) + ld.total_variation(weight=1e-3)
    result = ld.render(model, obj, ld.PixelImage(32, batch=2, init="gray"), LBFGSB(max_iter=5), steps=5, progress=False)
    assert result.settings["per_item_losses"] is True
    assert np.all(result.final_activation > result.activation_history[0])


def test_per_item_losses_equal_items_run_alone():
    """A weighted composition of three per-item terms: each item follows its own L-BFGS path."""
    model = TinyCaffeNet()
    img = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))

    def objective(masks):
        return 500 * ld.masked_units("fc8", masks) - ld.p_norm(weight=1e-7) + ld.total_variation(weight=1e-4)

    batch = ld.render(model, objective(ld.unit_masks((10,), [1, 2])), ld.PixelImage(32, batch=2, init=img),
                      LBFGSB(max_iter=4), steps=4, progress=False)
    assert batch.settings["per_item_losses"] is True
    for i, channel in enumerate((1, 2)):
        single = ld.render(model, objective(ld.unit_mask((10,), channel)), ld.PixelImage(32, init=img[i]),
                           LBFGSB(max_iter=4), steps=4, progress=False)
        np.testing.assert_array_equal(batch.raw[i], single.raw[0])


def test_lucent_terms_make_one_joint_loss():
    model = rgb_net()
    obj = lobj.channel("conv", 1) + ld.masked_units("fc", ld.unit_mask((5,), 2))
    result = ld.render(model, obj, ld.PixelImage(16, batch=2, seed=0), LBFGSB(max_iter=2), steps=2, progress=False)
    assert result.settings["per_item_losses"] is False


# -- activation records per term ----------------------------------------------------------------
def test_activation_recorded_per_term():
    model = TinyCaffeNet()
    obj = ld.masked_units("fc8", ld.unit_mask((10,), 1)) + ld.masked_units("conv1", ld.channel_mask((4, 14, 14), 2))
    result = ld.render(model, obj, ld.PixelImage(32, seed=0), MomentumGD(), steps=3, progress=False)
    assert list(result.activation_histories) == ["masked_units", "masked_units#2"]
    assert result.activation_histories["masked_units#2"].shape == (3, 1)
    np.testing.assert_array_equal(result.activation_history, result.activation_histories["masked_units"])
    with torch.no_grad():
        x = torch.from_numpy(result.model_input)
        conv = model.conv1(x)[0, 2].mean()
    assert result.activations["masked_units#2"][0] == pytest.approx(float(conv), rel=1e-5)


def test_no_reporting_term_records_nothing():
    model = rgb_net()
    result = ld.render(model, lobj.channel("conv", 1), ld.PixelImage(16, seed=0), MomentumGD(), steps=3,
                       progress=False)
    assert result.activation_history.shape == (3, 0)
    assert result.final_activation.shape == (0,)
    assert result.activations == {}


# -- global state ---------------------------------------------------------------------------------
def test_seeded_render_leaves_global_state_as_it_was():
    model = rgb_net()
    torch.manual_seed(123)
    np.random.seed(7)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    filters = list(warnings.filters)
    transforms = [ltransform.jitter(2), ltransform.random_scale([1.0, 1.1])]  # Lucent's: numpy's global RNG
    first = ld.render(model, unit_obj_rgb(), ld.PixelImage(16, seed=0), MomentumGD(), steps=3, transforms=transforms,
                      seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.get_num_threads() == threads and torch.is_grad_enabled() == grad
    assert warnings.filters == filters
    second = ld.render(model, unit_obj_rgb(), ld.PixelImage(16, seed=0), MomentumGD(), steps=3,
                       transforms=transforms, seed=5, progress=False)
    np.testing.assert_array_equal(first.raw, second.raw)


def unit_obj_rgb(channel=1):
    return ld.masked_units("fc", ld.unit_mask((5,), channel))


# -- Lucent's "labels" pseudo-layer ---------------------------------------------------------------
def test_labels_pseudo_layer_in_render():
    model = rgb_net()
    result = ld.render(model, ld.masked_units("labels", ld.unit_mask((5,), 3)), ld.PixelImage(16, seed=0),
                       MomentumGD(), steps=2, progress=False)
    with torch.no_grad():
        logits = model(torch.from_numpy(result.model_input))
    assert result.final_activation[0] == pytest.approx(float(logits[0, 3]), rel=1e-5)
    assert result.settings["layers"] == ["fc"]
