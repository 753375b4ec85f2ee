"""Each preset equals the explicit composition it stands for."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lucent_dgn as ld
from lucent_dgn.cnnpref import EXAMPLE_SETTINGS, VARIANTS, receptive_field_mask
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.lbfgs import LBFGSB, ScipyLBFGSB

from _tiny import TinyCaffeNet, TinyGenerator

FC8 = ld.unit_mask((10,), 3)


def same(a, b):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)


def test_gd_preset_is_the_composition():
    net = TinyCaffeNet()
    preset = ld.prefer_img_gd(net, "fc8", FC8, 1.0, iter_n=6, seed=0, progress=False, clip_small_norm=5.0,
                              clip_small_norm_every=2)
    explicit = ld.render(
        net, ld.masked_units("fc8", FC8), ld.PixelImage(32, seed=0, bounded=False),
        MomentumGD(lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.1, 0.1), blur_sigma=(2.0, 0.5),
                   clip_small_norm=5.0, clip_small_norm_every=2, project=False),
        6, transforms=[ld.Jitter(32)], seed=0, progress=False)
    same(preset, explicit)


@pytest.mark.parametrize("solver", ["torch", "scipy"])
def test_lbfgs_preset_is_the_composition(solver):
    net = TinyCaffeNet()
    preset = ld.prefer_img_lbfgs(net, "fc8", FC8, 10.0, maxiter=5, init="black", seed=0, solver=solver,
                                 progress=False)
    opt = LBFGSB(max_iter=5) if solver == "torch" else ScipyLBFGSB(maxiter=5)
    explicit = ld.render(net, ld.masked_units("fc8", FC8, weight=10.0), ld.PixelImage(32, init="black"), opt, 5,
                         seed=0, progress=False)
    same(preset, explicit)
    assert preset.images.min() >= -1e-6 and preset.images.max() <= 1 + 1e-6


def test_dgn_gd_preset_is_the_composition():
    net, gen = TinyCaffeNet(), TinyGenerator()
    preset = ld.prefer_img_dgn_gd(net, gen, "fc8", FC8, 10.0, iter_n=5, seed=0, upper=5.0, progress=False)
    explicit = ld.render(net, ld.masked_units("fc8", FC8, weight=10.0),
                         ld.DGNImage(gen, input_size=32, init="cnnpref", upper=5.0, seed=0),
                         MomentumGD(lr=(2.0, 1e-10), momentum=0.9, decay=0.01, grad_normalize=True, project=True),
                         5, seed=0, progress=False)
    same(preset, explicit)
    assert preset.raw.max() <= 5.0 and preset.raw.min() >= 0.0


def test_dgn_lbfgs_preset_is_the_composition():
    net, gen = TinyCaffeNet(), TinyGenerator()
    preset = ld.prefer_img_dgn_lbfgs(net, gen, "fc8", FC8, maxiter=4, seed=0, progress=False)
    explicit = ld.render(net, ld.masked_units("fc8", FC8),
                         ld.DGNImage(gen, input_size=32, init="cnnpref", clip_initial=True, seed=0),
                         LBFGSB(max_iter=4), 4, seed=0, progress=False)
    same(preset, explicit)
    assert preset.raw.min() >= 0 and preset.raw.max() <= 100


def test_every_variant_raises_the_target():
    net, gen = TinyCaffeNet(), TinyGenerator()
    for name in VARIANTS:
        options = ld.recipe_options(name)
        steps = {"maxiter": 15} if "maxiter" in options else {"iter_n": 15}
        if name == "gd":  # a 32-pixel image: cnnpref's 32-pixel jitter and 10 % decay are too strong
            steps.update(jitter_size=4, decay=0.01)
        generator = gen if "lower" in options else None  # the code-bound options mark the generator variants
        r = ld.recipe(name, "fc8", FC8, generator, seed=0, **steps).render(net, progress=False)
        assert r.final_activation[0] > r.activation_history[0, 0], name


def test_example_settings_cover_the_eight_scripts():
    assert len(EXAMPLE_SETTINGS) == 8
    assert EXAMPLE_SETTINGS[("gd", "lower")]["jitter_size"] == 4
    assert EXAMPLE_SETTINGS[("dgn_lbfgs", "lower")]["weight"] == 0.05


def test_receptive_field_of_a_conv_unit_is_its_box():
    net = TinyCaffeNet()
    m = receptive_field_mask(net, "conv1", ld.unit_mask((4, 14, 14), 0), 32)
    rows, cols = np.nonzero(m[..., 0])
    # unit (7, 7) of a 5x5 stride-2 conv sees rows/cols 14..18
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (14, 18, 14, 18)
    assert receptive_field_mask(net, "fc8", FC8, 32).all()
