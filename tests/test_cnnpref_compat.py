"""cnnpref-compatible generate_image: cnnpref's keyword arguments, shapes, dtypes and ranges (spec §10)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.cnnpref.prefer_img_dgn_gd import generate_image as dgn_gd_generate
from lucent_dgn.cnnpref.prefer_img_dgn_lbfgs import generate_image as dgn_lbfgs_generate
from lucent_dgn.cnnpref.prefer_img_gd import generate_image as gd_generate
from lucent_dgn.cnnpref.prefer_img_lbfgs import generate_image as lbfgs_generate
from lucent_dgn.objectives import unit_mask
from lucent_dgn.spaces import UnitSpace

from _tiny import TinyCaffeNet, TinyGenerator

MASK = unit_mask((10,), 4).numpy().astype(np.float32)
CONV_MASK = unit_mask((4, 14, 14), 1).numpy()


def test_gd_accepts_cnnpref_kwargs(capsys, tmp_path):
    img = gd_generate(
        TinyCaffeNet(), "fc8", MASK, feature_weight=np.full(10, 1.0, np.float32), initial_image=None, iter_n=4,
        lr_start=1., lr_end=1., momentum_start=0.001, momentum_end=0.001, decay_start=0.001, decay_end=0.001,
        grad_normalize=True, image_jitter=True, jitter_size=4, image_blur=True, sigma_start=2.5, sigma_end=0.5,
        use_p_norm_reg=True, p=3, lamda_start=1e-9, lamda_end=1e-9, use_TV_norm_reg=True, TVbeta=2,
        TVlamda_start=1e-9, TVlamda_end=1e-9, clip_extreme=True, clip_extreme_every=2, e_pct_start=1,
        e_pct_end=1, clip_small_norm=True, clip_small_norm_every=1, n_pct_start=5., n_pct_end=5.,
        clip_small_contribution=True, clip_small_contribution_every=1, c_pct_start=5., c_pct_end=5., disp_every=2,
        save_intermediate=True, save_intermediate_every=2, save_intermediate_path=str(tmp_path / "snaps"), seed=0)
    assert img.shape == (32, 32, 3) and img.dtype == np.float32
    assert "iter=2;" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == ["00002.png", "00004.png", "initial_image.png"]


def test_gd_output_is_unclipped_0_255_scale():
    img = gd_generate(TinyCaffeNet(), "fc8", MASK, iter_n=3, disp_every=0, seed=0)
    assert img.dtype == np.float32 and img.shape == (32, 32, 3)
    assert img.max() > 1.5  # 0-255 scale, not 0-1


def test_lbfgs_returns_float64_inside_0_255():
    black = np.zeros((32, 32, 3))
    img = lbfgs_generate(TinyCaffeNet(), "conv1", CONV_MASK, feature_weight=1.,
                                          initial_image=black, maxiter=5, disp=False, seed=0)
    assert img.dtype == np.float64 and img.shape == (32, 32, 3)
    assert img.min() >= 0 and img.max() <= 255


def test_dgn_gd_kwargs_and_stale_image_option():
    kwargs = dict(feature_weight=10., initial_gen_feat=None, feat_upper_bound=np.full(16, 5.0),
                  feat_lower_bound=0., input_layer_gen="feat", output_layer_gen="generated", iter_n=3, lr_start=2.,
                  lr_end=1e-10, momentum_start=0.9, momentum_end=0.9, decay_start=0.01, decay_end=0.01,
                  disp_every=0, save_intermediate=False, save_intermediate_every=1, save_intermediate_path=None, seed=0)
    net, gen = TinyCaffeNet(), TinyGenerator()
    final = dgn_gd_generate(gen, net, "fc8", MASK, **kwargs)
    stale = dgn_gd_generate(gen, net, "fc8", MASK, return_pre_update_image=True, **kwargs)
    assert final.shape == stale.shape == (32, 32, 3) and final.dtype == np.float32
    assert not np.allclose(final, stale)


def test_dgn_lbfgs_bounds_pairs():
    bounds = [(0., 3.)] * 16
    img = dgn_lbfgs_generate(TinyGenerator(), TinyCaffeNet(), "fc8", MASK, feature_weight=10.,
                                              gen_feat_bounds=bounds, maxiter=3, disp=False, seed=0)
    assert img.shape == (32, 32, 3) and img.dtype == np.float32


def test_dgn_lbfgs_rejects_malformed_bounds():
    from lucent_dgn.errors import BoundsError
    with pytest.raises(BoundsError, match="gen_feat_bounds"):
        dgn_lbfgs_generate(TinyGenerator(), TinyCaffeNet(), "fc8", MASK, gen_feat_bounds=[1, 2],
                                            maxiter=1, disp=False)


# ------------------------------------------------------------------------------------ input size
def _sizeless_net() -> nn.Module:
    """TinyCaffeNet's layers without its ``input_size`` (and ``input_space``) attributes."""
    return nn.Sequential(OrderedDict(TinyCaffeNet().named_children()))


def test_size_comes_from_the_initial_image_when_the_model_declares_none():
    net, image = _sizeless_net(), np.random.default_rng(0).uniform(0, 255, (32, 32, 3))
    assert gd_generate(net, "fc8", MASK, initial_image=image, iter_n=2, disp_every=0, seed=0).shape == (32, 32, 3)
    assert lbfgs_generate(net, "fc8", MASK, initial_image=image, maxiter=2, disp=False, seed=0).shape == (32, 32, 3)


def test_size_the_model_declares_wins_and_image_size_overrides_it():
    from lucent_dgn.cnnpref._compat import input_size
    net = TinyCaffeNet()
    assert input_size(net) == 32 and input_size(net, 40) == 40
    assert input_size(net, initial_image=np.zeros((28, 28, 3))) == 32  # the model's, as cnnpref's data blob
    assert input_size(_sizeless_net(), initial_image=np.zeros((28, 28, 3))) == 28
    img = gd_generate(_sizeless_net(), "fc8", MASK, image_size=32, iter_n=1, disp_every=0, seed=0)
    assert img.shape == (32, 32, 3)


@pytest.mark.parametrize("variant", ["gd", "lbfgs", "dgn_gd", "dgn_lbfgs", "receptive_field"])
def test_no_size_anywhere_is_a_clear_error_not_227(variant):
    from lucent_dgn.cnnpref import receptive_field_mask
    from lucent_dgn.errors import ConfigError
    net, gen = _sizeless_net(), TinyGenerator()
    calls = {
        "gd": lambda: gd_generate(net, "fc8", MASK, iter_n=1, disp_every=0),
        "lbfgs": lambda: lbfgs_generate(net, "fc8", MASK, maxiter=1, disp=False),
        "dgn_gd": lambda: dgn_gd_generate(gen, net, "fc8", MASK, iter_n=1, disp_every=0),
        "dgn_lbfgs": lambda: dgn_lbfgs_generate(gen, net, "fc8", MASK, maxiter=1, disp=False),
        "receptive_field": lambda: receptive_field_mask(net, "conv1", CONV_MASK),
    }
    with pytest.raises(ConfigError, match=r"`image_size` must be given, or declared by the model as `net.input_size`"):
        calls[variant]()


def test_non_square_initial_image_without_a_declared_size():
    from lucent_dgn.errors import ConfigError
    with pytest.raises(ConfigError, match="initial_image.*square"):
        gd_generate(_sizeless_net(), "fc8", MASK, initial_image=np.zeros((32, 30, 3)), iter_n=1, disp_every=0)


def test_receptive_field_size_from_the_model():
    from lucent_dgn.cnnpref import receptive_field_mask
    assert receptive_field_mask(TinyCaffeNet(), "conv1", CONV_MASK).shape == (32, 32, 3)


# ------------------------------------------------------------------------- plain generator modules
class PlainGenerator(nn.Module):
    """TinyGenerator's network as a plain module: no ``code_shape``, no ``output_space``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = TinyGenerator()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class RGBGenerator(PlainGenerator):
    """Declares its output space (RGB 0-1), but not its code shape."""

    output_space = UnitSpace()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(z) / 30.0)


Z0 = (10.0 * np.random.default_rng(3).standard_normal(16).clip(0)).astype(np.float32)


@pytest.mark.parametrize("generate, kwargs", [(dgn_gd_generate, dict(iter_n=3, disp_every=0)),
                                              (dgn_lbfgs_generate, dict(maxiter=3, disp=False))])
def test_a_plain_generator_module_is_a_caffe_space_generator(generate, kwargs):
    declared = generate(TinyGenerator(), TinyCaffeNet(), "fc8", MASK, initial_gen_feat=Z0, seed=0, **kwargs)
    plain = generate(PlainGenerator(), TinyCaffeNet(), "fc8", MASK, initial_gen_feat=Z0, seed=0, **kwargs)
    np.testing.assert_array_equal(plain, declared)


def test_a_plain_generator_needs_the_initial_code():
    from lucent_dgn.errors import ConfigError
    with pytest.raises(ConfigError, match="`initial_gen_feat` must be given when the generator declares no `code_shape`"):
        dgn_gd_generate(PlainGenerator(), TinyCaffeNet(), "fc8", MASK, iter_n=1, disp_every=0)
    with pytest.raises(ConfigError, match="net_gen"):
        dgn_lbfgs_generate("generator.caffemodel", TinyCaffeNet(), "fc8", MASK, maxiter=1, disp=False)


def test_a_declared_output_space_is_used():
    class Declared(RGBGenerator):
        code_shape = (16,)

    kwargs = dict(initial_gen_feat=Z0, iter_n=2, disp_every=0, seed=0)
    declared = dgn_gd_generate(Declared(), TinyCaffeNet(), "fc8", MASK, **kwargs)
    rgb = dgn_gd_generate(RGBGenerator(), TinyCaffeNet(), "fc8", MASK, **kwargs)
    np.testing.assert_array_equal(rgb, declared)
    assert 0.0 <= rgb.min() and rgb.max() <= 255.0  # a sigmoid image, not read as BGR minus the mean


def test_pre_update_image_is_the_image_of_the_code_before_the_last_update():
    """cnnpref's DGN-GD return value (Q8): deprocess(crop(G(z_{N-1}))), not G(z_N)."""
    import lucent_dgn as ld
    from lucent_dgn.spaces import CaffeSpace, img_deprocess
    net, gen = TinyCaffeNet(), TinyGenerator()
    stale = dgn_gd_generate(gen, net, "fc8", MASK, initial_gen_feat=Z0, feat_upper_bound=5.0, iter_n=3,
                            disp_every=0, seed=0, return_pre_update_image=True)
    codes = []
    ld.recipe("dgn_gd", "fc8", MASK, gen, init=Z0, upper=5.0, iter_n=3, seed=0).render(
        net, seed=0, progress=False, input_space=CaffeSpace(),
        callbacks=[lambda info: codes.append(info.param.variable.detach().clone())])
    with torch.no_grad():
        crop = gen(codes[-2])[0, :, 4:36, 4:36].numpy()  # 40 -> 32 px, offset (40 - 32) // 2
    np.testing.assert_allclose(stale, img_deprocess(crop), rtol=0, atol=1e-3)
    final = dgn_gd_generate(gen, net, "fc8", MASK, initial_gen_feat=Z0, feat_upper_bound=5.0, iter_n=3,
                            disp_every=0, seed=0)
    with torch.no_grad():
        np.testing.assert_allclose(final, img_deprocess(gen(codes[-1])[0, :, 4:36, 4:36].numpy()), rtol=0, atol=1e-3)
