"""One entry point for the presets: ``ld.recipe(variant, ...)``, its options and its guarantees."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lucent_dgn as ld
from lucent_dgn.errors import ConfigError
from lucent_dgn.recipes import get_variant

from _tiny import TinyCaffeNet, TinyGenerator

FC8 = ld.unit_mask((10,), 3)


def test_transforms_option_reaches_every_variant():
    """Preset keywords used to leak to the solver (LBFGSB got `transforms`)."""
    net, gen = TinyCaffeNet(), TinyGenerator()
    seen = []

    def spy(x):
        seen.append(x.shape)
        return x

    r = ld.prefer_img_lbfgs(net, "fc8", FC8, maxiter=2, transforms=[spy], seed=0, progress=False)
    assert r.steps >= 1 and seen
    for variant in ld.variant_names():
        seen.clear()
        options = {"maxiter": 2} if "maxiter" in ld.recipe_options(variant) else {"iter_n": 2}
        generator = gen if get_variant(variant).needs_generator else None
        ld.recipe(variant, "fc8", FC8, generator, transforms=[spy], **options).render(net, progress=False)
        assert seen, variant


def test_unknown_option_names_the_variant_and_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        ld.recipe("lbfgs", "fc8", FC8, iter_n=5)
    message = str(err.value)
    assert "`iter_n` must be an option of variant 'lbfgs'" in message
    assert "Did you mean 'maxiter'?" in message and "'history_size'" in message


def test_render_option_given_to_the_recipe_says_where_it_goes():
    with pytest.raises(ConfigError, match=r"'progress' is a render option: pass it to .render\(model, ...\)"):
        ld.recipe("gd", "fc8", FC8, progress=False)
    with pytest.raises(ConfigError, match=r"`iter_n` must be one of the render options"):
        ld.recipe("gd", "fc8", FC8).render(TinyCaffeNet(), iter_n=3)


def test_option_of_the_other_solver_is_an_error():
    with pytest.raises(ConfigError, match=r"`maxfun` must be an option of the solver in use \('torch'\)"):
        ld.recipe("lbfgs", "fc8", FC8, maxfun=10)
    ld.recipe("lbfgs", "fc8", FC8, solver="scipy", maxfun=10)  # fine


@pytest.mark.parametrize("variant,generator,error", [
    ("dgn_gd", None, r"`generator` must be a generator module for variant 'dgn_gd'"),
    ("gd", "gen", r"`generator` must be None for the pixel variant 'gd'"),
    ("gb", None, r"`variant` must be one of .*; got 'gb'. Did you mean 'gd'\?"),
])
def test_generator_and_variant_errors(variant, generator, error):
    with pytest.raises(ConfigError, match=error):
        ld.recipe(variant, "fc8", FC8, TinyGenerator() if generator else None)


def test_recipe_renders_fresh_pieces_and_mutates_nothing():
    net, gen = TinyCaffeNet(), TinyGenerator()
    mask = FC8.clone()
    flags = [p.requires_grad for p in gen.parameters()]
    r = ld.recipe("dgn_gd", "fc8", mask, gen, iter_n=4, seed=0, upper=5.0)
    first, second = r.render(net, progress=False), r.render(net, progress=False)
    np.testing.assert_array_equal(first.raw, second.raw)
    assert torch.equal(mask, FC8) and [p.requires_grad for p in gen.parameters()] == flags
    assert first.settings["variant"] == "dgn_gd" and first.settings["options"]["upper"] == 5.0


def test_objective_option_replaces_the_masked_units():
    net = TinyCaffeNet()
    objective = ld.masked_units("fc8", FC8, weight=2.0) + ld.total_variation(weight=1e-4)
    via_recipe = ld.recipe("lbfgs", objective=objective, maxiter=3, seed=0).render(net, progress=False)
    explicit = ld.render(net, objective, ld.PixelImage(32, seed=0), ld.LBFGSB(max_iter=3), 3, seed=0, progress=False)
    np.testing.assert_array_equal(via_recipe.raw, explicit.raw)


def test_recipe_options_lists_every_option_with_its_default():
    options = ld.recipe_options("gd")
    assert options["iter_n"] == 200 and options["lr"] == (2.0, 1e-10) and options["jitter_size"] == 32
    options["iter_n"] = 1
    assert ld.recipe_options("gd")["iter_n"] == 200  # a copy
    assert set(ld.recipe_options("dgn_lbfgs")) >= {"lower", "upper", "solver", "history_size", "m", "maxiter"}


def test_image_size_comes_from_the_model():
    net = TinyCaffeNet()  # input_size 32
    pieces = ld.recipe("gd", "fc8", FC8).build(net)
    assert tuple(pieces.param.variable.shape[-2:]) == (32, 32)
    assert tuple(ld.recipe("gd", "fc8", FC8, image_size=40).build(net).param.variable.shape[-2:]) == (40, 40)


def test_image_size_from_the_initial_image_or_a_clear_error():
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    image = np.zeros((20, 20, 3), np.float32)
    pieces = ld.recipe("lbfgs", "2", FC8, init=image).build(plain)
    assert tuple(pieces.param.variable.shape[-2:]) == (20, 20)
    with pytest.raises(ConfigError, match=r"`image_size` must be given, or declared by the model"):
        ld.recipe("gd", "2", FC8).build(plain)
    dgn = ld.recipe("dgn_gd", "2", FC8, TinyGenerator()).build(plain)  # no size anywhere: the full output
    assert dgn.param.input_size is None
