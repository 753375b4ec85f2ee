"""Behaviour on the shipped, trained Fashion-MNIST classifier: the target units really fire."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lucent_dgn as ld
from lucent_dgn.generators.small import fashion_generator
from lucent_dgn.models.fashion import fashion_classifier
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.lbfgs import LBFGSB

CONV2 = (64, 14, 14)


@pytest.fixture(scope="module")
def model():
    return fashion_classifier()


def gray(batch=1, seed=0):
    return ld.PixelImage(28, batch=batch, space="gray", init="random", seed=seed)


@pytest.mark.parametrize("optimizer", [MomentumGD(lr=(0.05, 0.0), momentum=0.9, decay=0.0, blur_sigma=0.5),
                                       LBFGSB(max_iter=40)], ids=["gd", "lbfgs"])
def test_conv_unit_rises_and_becomes_top_of_its_channel(model, optimizer):
    channel, y, x = 5, 7, 7
    mask = ld.unit_mask(CONV2, channel, y, x)
    result = ld.render(model, ld.masked_units("conv2", mask), gray(), optimizer, 40, progress=False)
    start, end = result.activation_history[0, 0], result.final_activation[0]
    assert end > 0 and end - start > 5.0  # from about -2 on noise to well above the noise range
    with torch.no_grad(), ld.preserve_pre_activations(model):
        acts = {}
        h = model.conv2.register_forward_hook(lambda m, i, o: acts.setdefault("conv2", o))
        model(torch.from_numpy(result.model_input))
        h.remove()
    fmap = acts["conv2"][0, channel]
    assert torch.argmax(fmap).item() == y * 14 + x
    assert fmap[y, x].item() == pytest.approx(end, rel=1e-4)


@pytest.mark.parametrize("variant", ["gd", "lbfgs", "dgn_gd", "dgn_lbfgs"])
def test_each_variant_makes_the_classifier_choose_the_class(model, variant):
    from lucent_dgn.models import fashion_settings
    from lucent_dgn.runs import render_units
    settings = fashion_settings(fashion_generator(), steps=40)[variant]
    result = render_units(model, "fc2", [1, 5, 8], variant, generator=fashion_generator(), settings=settings,
                          channels=1, progress=False)
    logits_start = result.activation_history[0]
    assert np.all(result.final_activation > logits_start + 2.0)
    with torch.no_grad():
        pred = model(torch.from_numpy(result.model_input)).argmax(1).numpy()
    np.testing.assert_array_equal(pred, [1, 5, 8])
