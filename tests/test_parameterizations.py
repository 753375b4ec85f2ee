"""Pixel and DGN parameterizations: spaces, bounds, crop geometry, Lucent param_f."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn.errors import BoundsError, ConfigError, ShapeError
from lucent_dgn.parameterizations.codes import code_bounds, initial_code, load_act_range
from lucent_dgn.spaces import CAFFE_MEAN_BGR, CaffeSpace, TorchvisionSpace, UnitSpace, img_deprocess, img_preprocess
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def test_preprocess_matches_cnnpref_rule_and_round_trips():
    img = np.random.RandomState(0).randint(0, 256, (5, 4, 3)).astype(np.float32)
    net = img_preprocess(img)
    assert net.shape == (3, 5, 4) and net.dtype == np.float32
    np.testing.assert_allclose(net[0], img[..., 2] - CAFFE_MEAN_BGR[0], rtol=0, atol=1e-4)  # B first
    np.testing.assert_allclose(img_deprocess(net), img, atol=1e-4)


def test_spaces_convert_both_ways():
    rgb = torch.rand(2, 3, 4, 4)
    for space in (CaffeSpace(), TorchvisionSpace(), UnitSpace()):
        torch.testing.assert_close(space.to_rgb01(space.from_rgb01(rgb)), rgb, atol=1e-5, rtol=0)
    caffe = CaffeSpace().from_rgb01(rgb)
    torch.testing.assert_close(caffe[:, 0], rgb[:, 2] * 255 - CAFFE_MEAN_BGR[0], atol=1e-4, rtol=0)
    tv = ld.spaces.convert(caffe, CaffeSpace(), TorchvisionSpace())
    torch.testing.assert_close(tv, (rgb - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                               / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), atol=1e-4, rtol=0)


def test_pixel_random_init_is_integer_valued_in_0_255():
    p = ld.PixelImage(8, batch=2, seed=1)
    raw = p.image_for_display().numpy() * 255
    assert raw.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(raw, np.round(raw), atol=1e-3)
    assert raw.min() >= 0 and raw.max() <= 255


def test_pixel_bounds_are_raw_0_255_in_net_space():
    p = ld.PixelImage(4, init="black")
    lower, upper = p.bounds()
    np.testing.assert_allclose(lower.flatten().numpy(), -np.array(CAFFE_MEAN_BGR), atol=1e-4)
    np.testing.assert_allclose(upper.flatten().numpy(), 255 - np.array(CAFFE_MEAN_BGR), atol=1e-4)
    torch.testing.assert_close(p.variable.data, lower.expand_as(p.variable))  # black = lower bound


def test_pixel_decay_pulls_towards_mean_colour_in_caffe_space():
    p = ld.PixelImage(4, init="black")
    for _ in range(200):
        p.decay_(0.1)
    rgb = p.image_for_display().numpy() * 255
    np.testing.assert_allclose(rgb[0, 0, 0], np.array(CAFFE_MEAN_BGR)[::-1], atol=1e-3)


def test_pixel_init_image_validation():
    with pytest.raises(ShapeError, match="init"):
        ld.PixelImage(8, init=np.zeros((7, 8, 3)))
    with pytest.raises(ConfigError, match="init"):
        ld.PixelImage(8, init="noise")


def test_pixel_model_space_conversion():
    img = np.random.RandomState(0).randint(0, 256, (6, 6, 3)).astype(np.float32)
    p = ld.PixelImage(6, init=img, model_space=TorchvisionSpace())
    expected = TorchvisionSpace().from_rgb01(torch.from_numpy(img).permute(2, 0, 1)[None] / 255)
    torch.testing.assert_close(p(), expected, atol=1e-4, rtol=0)


class TinyGen(nn.Module):
    """Code (8,) -> (3, 12, 12) Caffe-space image."""

    code_shape = (8,)
    output_space = CaffeSpace()

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 3 * 12 * 12)

    def forward(self, z):
        return 50 * self.fc(z).view(-1, 3, 12, 12)


def test_initial_codes():
    z = initial_code("cnnpref", 1000, (8,), seed=0)
    assert (z >= 0).all() and 0.4 < (z == 0).float().mean() < 0.6 and 3.5 < z.mean() < 4.5
    assert initial_code("zeros", 2, (8,)).abs().sum() == 0
    assert initial_code(np.ones(8), 3, (8,)).shape == (3, 8)
    with pytest.raises(ShapeError):
        initial_code(np.ones(7), 1, (8,))


def test_code_bounds_validation(tmp_path):
    lo, hi = code_bounds(0.0, np.arange(8), (8,))
    assert hi[3] == 3
    with pytest.raises(BoundsError, match="lower"):
        code_bounds(5.0, np.arange(8), (8,))
    with pytest.raises(BoundsError, match="8 values"):
        code_bounds(0.0, np.arange(7), (8,))
    f = tmp_path / "range.txt"
    f.write_text("1 2 x")
    with pytest.raises(BoundsError, match="numbers"):
        code_bounds(0.0, f, (3,))
    f.write_text("1 2 3 4")
    with pytest.raises(BoundsError, match="3 values"):
        code_bounds(0.0, f, (3,))


@pytest.mark.skipif(not SHARED.exists(), reason="../shared is absent")
def test_act_range_file_from_cnnpref():
    ub = load_act_range(SHARED / "data/cnnpref/act_range_3x/fc6.txt", expected=4096)
    assert ub.min() == 3 and ub.max() == 17 and abs(ub.mean() - 11.85) < 0.01


def test_dgn_crop_geometry_and_zero_gradient_outside_crop():
    gen = TinyGen()
    p = ld.DGNImage(gen, input_size=8, init="normal", seed=0)
    full = p.generate()
    full.retain_grad()
    x = p.fit_to_model(full)
    torch.testing.assert_close(x, full[..., 2:10, 2:10])
    x.sum().backward()
    grad = full.grad[0]
    assert grad[:, 2:10, 2:10].abs().min() > 0
    inside = torch.zeros_like(grad, dtype=torch.bool)
    inside[:, 2:10, 2:10] = True
    assert grad[~inside].abs().max() == 0
    assert p.variable.grad is not None and p.variable.grad.abs().sum() > 0


def test_dgn_projection_and_no_clamp_in_path():
    p = ld.DGNImage(TinyGen(), input_size=12, init=np.full(8, 50.0), lower=0, upper=np.arange(8))
    assert p.variable.max() == 50  # cnnpref's DGN-GD does not clip the initial code
    p.project_()
    torch.testing.assert_close(p.variable.data[0], torch.arange(8).float())
    out = p()
    assert out.abs().max() > 0  # raw generator output, converted but not clamped


def test_dgn_requires_generator_attributes():
    with pytest.raises(ConfigError, match="code_shape"):
        ld.DGNImage(nn.Linear(2, 2))


def test_dgn_param_f_runs_in_lucent_render_vis():
    from lucent.optvis import render as lrender
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 6)).eval()
    p = ld.DGNImage(TinyGen(), input_size=12, init="normal", seed=0, model_space=UnitSpace())
    obj = ld.masked_units("3", ld.unit_mask((6,), 2))
    with torch.no_grad():
        before = model(p())[0, 2].item()
    lrender.render_vis(model, obj, p.lucent_param_f(), transforms=[], preprocess=False, thresholds=(20,),
                       show_image=False, progress=False, fixed_image_size=12)
    with torch.no_grad():
        after = model(p())[0, 2].item()
    assert after > before


def test_fc6_generator_through_dgn_into_a_227_classifier():
    """DeePSiM fc6 (random init): 256 -> 227 crop at offset 14, gradient reaches the code,
    exactly zero image gradient outside the crop."""
    from lucent_dgn.generators.deepsim import deepsim_generator
    gen = deepsim_generator("fc6")
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Conv2d(3, 4, 11, stride=4), nn.Flatten(), nn.Linear(4 * 55 * 55, 10)).eval()
    p = ld.DGNImage(gen, input_size=227, seed=0)
    assert p.variable.shape == (1, 4096)
    full = p.generate()
    assert full.shape == (1, 3, 256, 256)
    full.retain_grad()
    x = p.fit_to_model(full)
    torch.testing.assert_close(x, full[:, :, 14:241, 14:241])
    clf(x)[0, 3].backward()
    outside = torch.ones(256, 256, dtype=torch.bool)
    outside[14:241, 14:241] = False
    assert full.grad[0][:, outside].abs().max() == 0
    assert full.grad[0][:, ~outside].abs().max() > 0
    assert p.variable.grad is not None and p.variable.grad.abs().sum() > 0
