"""cnnpref's example runs: the faithful mode gives the images of cnnpref's functions, saved as its scripts save them."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from lucent_dgn.cli import main
from lucent_dgn.cnnpref.prefer_img_dgn_gd import generate_image as dgn_gd_generate
from lucent_dgn.cnnpref.prefer_img_dgn_lbfgs import generate_image as dgn_lbfgs_generate
from lucent_dgn.cnnpref.prefer_img_gd import generate_image as gd_generate
from lucent_dgn.cnnpref.prefer_img_lbfgs import generate_image as lbfgs_generate
from lucent_dgn.cnnpref.receptive_field import receptive_field_mask
from lucent_dgn.errors import ConfigError
from lucent_dgn.examples import run_examples
from lucent_dgn.objectives import unit_mask
from lucent_dgn.render.result import RenderResult
from lucent_dgn.runs import save_units

from _tiny import TinyCaffeNet, TinyGenerator

LAYERS = {"lower": ("conv1", (4, 14, 14)), "higher": ("fc8", (10,))}
UNITS = [1, 3]
STEPS, SEED = 3, 5
UPPER = np.arange(16) % 7 + 3.0  # an act_range file's per-unit upper code bounds


def cnnpref_png(img: np.ndarray) -> np.ndarray:
    """cnnpref's scripts: ``normalise_img(clip_extreme_pixel(img, pct=0.04))``, written out (dtype kept)."""
    img = np.clip(img, np.percentile(img, 0.02), np.percentile(img, 99.98)).astype(img.dtype)
    img = img - img.min()
    if img.max() > 0:
        img = img * img.dtype.type(255.0 / img.max())
    return np.uint8(img)


def cnnpref_opts(variant: str, kind: str, shape) -> dict:
    """The example scripts' options (spec §9.2) as generate_image keywords, iterations cut to STEPS."""
    weight = {("lbfgs", "higher"): 10., ("dgn_gd", "higher"): 10., ("dgn_lbfgs", "higher"): 10.,
              ("dgn_lbfgs", "lower"): 0.05}.get((variant, kind), 1.)
    opts = dict(feature_weight=np.full(shape, weight, dtype=np.float32))
    if variant == "gd":
        opts.update(iter_n=STEPS, lr_start=1., lr_end=1., momentum_start=0.001, momentum_end=0.001,
                    decay_start=0.001, decay_end=0.001, image_blur=True, sigma_start=2.5, sigma_end=0.5,
                    image_jitter=True, jitter_size=4 if kind == "lower" else 32, clip_small_norm=True,
                    clip_small_norm_every=1, n_pct_start=5., n_pct_end=5., clip_small_contribution=True,
                    clip_small_contribution_every=1, c_pct_start=5., c_pct_end=5., initial_image=None,
                    disp_every=0, faithful_jitter_momentum=True)
    elif variant == "lbfgs":
        opts.update(maxiter=STEPS, initial_image=np.zeros((32, 32, 3)), disp=False, solver="scipy")
    elif variant == "dgn_gd":
        lr, momentum, decay = ((0.1, 0.01), 0.1, 0.001) if kind == "lower" else ((2., 1e-10), 0.9, 0.01)
        opts.update(iter_n=STEPS, lr_start=lr[0], lr_end=lr[1], momentum_start=momentum, momentum_end=momentum,
                    decay_start=decay, decay_end=decay, input_layer_gen="feat", output_layer_gen="generated",
                    feat_upper_bound=UPPER, feat_lower_bound=0., initial_gen_feat=None, disp_every=0,
                    return_pre_update_image=True)
    else:
        opts.update(maxiter=STEPS, gen_feat_bounds=[(0., ub) for ub in UPPER], initial_gen_feat=None, disp=False,
                    solver="scipy")
    return opts


GENERATE = {"gd": gd_generate, "lbfgs": lbfgs_generate, "dgn_gd": dgn_gd_generate, "dgn_lbfgs": dgn_lbfgs_generate}


@pytest.fixture(scope="module")
def bounds_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("act_range") / "fc6.txt"
    path.write_text(" ".join(str(int(v)) for v in UPPER))
    return str(path)


@pytest.mark.parametrize("kind", ["lower", "higher"])
@pytest.mark.parametrize("variant", ["gd", "lbfgs", "dgn_gd", "dgn_lbfgs"])
def test_faithful_examples_are_generate_images_images(variant, kind, bounds_file, tmp_path):
    net, gen = TinyCaffeNet(), TinyGenerator()
    layer, shape = LAYERS[kind]
    record = run_examples(net, layer, kind, tmp_path, generator=gen, variants=[variant], units=UNITS,
                          bounds_file=bounds_file, steps=STEPS, seed=SEED, progress=False)
    assert record["mode"] == "faithful" and record["variants"][variant]["settings"]["seeds"] == [SEED, SEED + 1]
    for i, unit in enumerate(UNITS):
        mask = unit_mask(shape, unit).numpy().astype(np.float64)
        args = (gen, net) if variant.startswith("dgn") else (net,)
        expected = GENERATE[variant](*args, layer, mask, seed=SEED + i, **cnnpref_opts(variant, kind, shape))
        stem = tmp_path / f"preferred_img_{variant}_layer_{layer}_unit_{unit}"
        saved = np.load(f"{stem}.npy")
        assert saved.dtype == expected.dtype == (np.float64 if variant == "lbfgs" else np.float32)
        np.testing.assert_array_equal(saved, expected)
        np.testing.assert_array_equal(np.asarray(Image.open(f"{stem}.png")), cnnpref_png(expected))
        if kind == "lower":  # the masked copies: the PNG's bytes and the image, times the receptive field
            rf = receptive_field_mask(net, layer, mask)
            np.testing.assert_array_equal(np.asarray(Image.open(f"{stem}_masked.png")), cnnpref_png(expected) * rf)
            np.testing.assert_array_equal(np.load(f"{stem}_masked.npy"), expected * rf)


def test_the_three_faithful_conventions_matter(bounds_file, tmp_path):
    """Fast mode (torch L-BFGS-B, aligned buffer, final image) gives other images at the same settings."""
    net, gen = TinyCaffeNet(), TinyGenerator()
    runs = {mode: run_examples(net, "fc8", "higher", tmp_path / mode, generator=gen, variants=["lbfgs", "dgn_gd"],
                               units=[2], bounds_file=bounds_file, steps=STEPS, seed=SEED, progress=False,
                               mode=mode) for mode in ("faithful", "fast")}
    assert runs["fast"]["mode"] == "fast" and "torch L-BFGS-B" in runs["fast"]["mode_description"]
    for variant in ("lbfgs", "dgn_gd"):
        name = f"preferred_img_{variant}_layer_fc8_unit_2.npy"
        assert not np.array_equal(np.load(tmp_path / "faithful" / name), np.load(tmp_path / "fast" / name))


def test_masked_pngs_are_cnnprefs_bytes(tmp_path):
    """``save_units``: the masked PNG is cnnpref's saved image (from the 0-255 image) times the mask."""
    images = np.random.default_rng(1).uniform(-0.3, 1.4, (2, 96, 96, 3)).astype(np.float32)
    masks = np.zeros((2, 96, 96, 3), np.uint8)
    masks[0, 10:30, 20:41] = 1
    masks[1, :48, 40:] = 1  # holds 3 of the 6 bytes that normalising the 0-1 image instead would change
    result = RenderResult(images=images, raw=images, model_input=images, loss_history=np.zeros(1),
                          activation_history=np.zeros((1, 2)), final_activation=np.zeros(2), final_params=None,
                          n_evals=1, steps=1, wall_time=0.0)
    save_units(tmp_path, {"gd": result}, "conv1", [0, 1], rf_masks=masks)
    stems = [tmp_path / f"preferred_img_gd_layer_conv1_unit_{i}" for i in range(2)]
    for stem, img, mask in zip(stems, images * np.float32(255.0), masks):
        png = np.asarray(Image.open(f"{stem}_masked.png"))
        np.testing.assert_array_equal(png, cnnpref_png(img) * mask)
        np.testing.assert_array_equal(np.asarray(Image.open(f"{stem}.png")), cnnpref_png(img))
        assert (png[mask == 0] == 0).all()
    for stem, img, mask in zip(stems, images * np.float32(255.0), masks):  # cnnpref's masked .mat
        np.testing.assert_array_equal(np.load(f"{stem}_masked.npy"), img * mask)


def test_a_model_without_an_input_size_is_refused(tmp_path):
    net = nn.Sequential(OrderedDict(TinyCaffeNet().named_children()))
    with pytest.raises(ConfigError, match="input_size"):
        run_examples(net, "fc8", "higher", tmp_path, progress=False)
    with pytest.raises(ConfigError, match="mode"):
        run_examples(TinyCaffeNet(), "fc8", "higher", tmp_path, mode="exact", progress=False)


def test_cli_says_which_mode_ran(tmp_path, capsys, monkeypatch):
    import lucent_dgn.cli as cli
    monkeypatch.setattr(cli, "load_model_by_name", lambda name, weights=None: TinyCaffeNet())
    for argv, mode in (([], "faithful"), (["--mode", "fast"], "fast")):
        out = tmp_path / mode
        code = main(["examples", "higher", "--generator", "", "--units", "0", "--steps", "2", "--out", str(out),
                     "--quiet"] + argv)
        assert code == 0, capsys.readouterr().err
        assert f" in {mode} mode (" in capsys.readouterr().out
        assert json.loads(Path(out / "settings.json").read_text())["mode"] == mode
