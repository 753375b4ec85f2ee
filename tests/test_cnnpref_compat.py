"""cnnpref-compatible generate_image: cnnpref's keyword arguments, shapes, dtypes and ranges (spec §10)."""
from __future__ import annotations

import numpy as np
import pytest

from lucent_dgn.cnnpref.prefer_img_dgn_gd import generate_image as dgn_gd_generate
from lucent_dgn.cnnpref.prefer_img_dgn_lbfgs import generate_image as dgn_lbfgs_generate
from lucent_dgn.cnnpref.prefer_img_gd import generate_image as gd_generate
from lucent_dgn.cnnpref.prefer_img_lbfgs import generate_image as lbfgs_generate
from lucent_dgn.objectives import unit_mask

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
