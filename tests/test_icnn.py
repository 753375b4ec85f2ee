"""icnn feature inversion: targets (features_of, files), the four registered variants, invert(),
and the ``lucent-dgn invert`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import lucent_dgn as ld
from lucent_dgn.cli import main
from lucent_dgn.errors import ConfigError, LayerNotFoundError, ShapeError
from lucent_dgn.generators.small import SmallGenerator, fashion_generator
from lucent_dgn.icnn import fashion_settings, read_image
from lucent_dgn.models.fashion import FashionCNN, fashion_classifier, save_asset
from lucent_dgn.spaces import TorchvisionSpace
from lucent_dgn.training.generator import save_generator

VARIANTS = ("icnn_gd", "icnn_lbfgs", "icnn_dgn_gd", "icnn_dgn_lbfgs")


@pytest.fixture(scope="module")
def fashion():
    return fashion_classifier(), fashion_generator()


@pytest.fixture(scope="module")
def garments(fashion):
    """Three natural-looking grey images (N, 1, 28, 28) in [0, 1]: generated garments."""
    _, gen = fashion
    torch.manual_seed(0)
    stats = gen.code_stats
    with torch.no_grad():
        return gen((stats["mean"] + stats["std"] * torch.randn(3, 256)).clamp(min=0))


# ----- targets ------------------------------------------------------------------------------------

def test_features_of_a_picture_equal_those_of_the_model_input(fashion, garments):
    model, _ = fashion
    picture = (garments[0, 0].numpy() * 255).round().astype(np.uint8)          # (H, W) grey, 0-255
    x = torch.from_numpy(picture.astype(np.float32) / 255.0)[None, None]
    expected = ld.features_of(model, x, ["conv1", "relu3"])
    for image in (picture, np.repeat(picture[..., None], 3, -1), Image.fromarray(picture)):
        got = ld.features_of(model, image, ["conv1", "relu3"])
        for layer in ("conv1", "relu3"):
            torch.testing.assert_close(got[layer], expected[layer], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(expected["relu3"], torch.relu(model.fc1(model.flatten(model.pool2(model.relu2(
            model.conv2(model.pool1(model.relu1(model.conv1(model.standardise(x)))))))))))


def test_pictures_use_the_render_loops_input_space(tiny_cnn):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    x = TorchvisionSpace().from_rgb01(torch.from_numpy(rgb).float().permute(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        expected = tiny_cnn.features[0](x)
    torch.testing.assert_close(ld.features_of(tiny_cnn, rgb, "features.0")["features.0"], expected)


def test_features_of_leaves_the_model_as_it_was_and_reads_pre_relu(tiny_cnn):
    tiny_cnn.train()
    tiny_cnn.head[2].weight.requires_grad_(False)
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    feats = ld.features_of(tiny_cnn, torch.rand(2, 3, 16, 16), [tiny_cnn.features[0], "features_2"])
    assert set(feats) == {"features.0", "features_2"}        # a module is keyed by its dotted path
    assert feats["features.0"].shape == (2, 4, 14, 14) and feats["features_2"].shape == (2, 6, 12, 12)
    assert (feats["features.0"] < 0).any()                     # pre-ReLU, despite ReLU(inplace=True)
    assert not feats["features.0"].requires_grad
    assert tiny_cnn.training and all(m.training for m in tiny_cnn.modules())
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert tiny_cnn.features[1].inplace is True
    assert all(not m._forward_hooks for m in tiny_cnn.modules())


def test_features_of_errors(tiny_cnn):
    with pytest.raises(LayerNotFoundError, match=r"`layers` must be a layer of Sequential; got 'features.3'. "
                                                 r"Did you mean 'features.2'"):
        ld.features_of(tiny_cnn, torch.rand(1, 3, 16, 16), ["features.3"])
    with pytest.raises(ShapeError, match=r"`image` must be a picture .* got shape \(16, 16, 4\)"):
        ld.features_of(tiny_cnn, np.zeros((16, 16, 4), np.uint8), ["features.0"])
    with pytest.raises(ConfigError, match="`layers` must be a non-empty list"):
        ld.features_of(tiny_cnn, torch.rand(1, 3, 16, 16), [])


def test_save_and_load_features(tmp_path, tiny_cnn):
    feats = ld.features_of(tiny_cnn, torch.rand(2, 3, 16, 16), ["features.0", "head.2"])
    path = ld.save_features(tmp_path / "decoded.npz", feats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoded.npz"]   # written atomically, no leftovers
    loaded = ld.load_features(path)
    assert list(loaded) == ["features.0", "head.2"]
    np.testing.assert_array_equal(loaded["features.0"], feats["features.0"].numpy())
    assert list(ld.load_features(path, layers=["head.2"])) == ["head.2"]
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "features.0.npy", feats["features.0"].numpy())
    np.testing.assert_array_equal(ld.load_features(folder)["features.0"], feats["features.0"].numpy())
    mapping = ld.load_features({"features.0": folder / "features.0.npy", "head.2": feats["head.2"]})
    assert set(mapping) == {"features.0", "head.2"}


@pytest.mark.parametrize("source, kwargs, match", [
    ("missing.npz", {}, r"`source` must be a .npz file"),
    ("notes.txt", {}, r"`source` must be a .npz file"),
    ({"conv1": "missing.npy"}, {}, r"`features\['conv1'\]` must be an array or an existing .npy file"),
    ("good.npz", {"layers": ["fc9"]}, r"`layers` must be layers present in the source \('conv1'\); got 'fc9'"),
])
def test_load_features_errors(tmp_path, monkeypatch, source, kwargs, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    np.savez(tmp_path / "good.npz", conv1=np.zeros(3))
    with pytest.raises(ConfigError, match=match):
        ld.load_features(source, **kwargs)


def test_save_features_needs_npz(tmp_path):
    with pytest.raises(ConfigError, match="ending in .npz"):
        ld.save_features(tmp_path / "x.npy", {"a": np.zeros(2)})


def test_read_image_resizes(tmp_path):
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (40, 30, 3)
    assert read_image(tmp_path / "a.png", 28).shape == (28, 28, 3)
    with pytest.raises(ConfigError, match="an image file PIL can read"):
        (tmp_path / "b.png").write_bytes(b"not an image")
        read_image(tmp_path / "b.png")


# ----- the variants ----------------------------------------------------------------------------

def test_variants_are_registered_with_icnns_defaults():
    assert set(VARIANTS) <= set(ld.variant_names())
    gd = ld.recipe_options("icnn_gd")
    assert gd["lr"] == (2.0, 1e-10) and gd["decay"] == (0.2, 1e-10) and gd["blur_sigma"] == (2.0, 0.5)
    assert gd["jitter_size"] == 0 and gd["space"] == "caffe" and gd["init"] == "random" and gd["iter_n"] == 200
    assert gd["layer_weights"] == "inverse_norm" and gd["metric"] == "mse" and "weight" not in gd
    dgn = ld.recipe_options("icnn_dgn_gd")
    assert dgn["decay"] == (0.01, 0.01) and (dgn["lower"], dgn["upper"]) == (0.0, 100.0) and dgn["init"] == "normal"
    assert ld.recipe_options("icnn_lbfgs")["maxiter"] == 500 and ld.recipe_options("icnn_dgn_lbfgs")["maxiter"] == 500
    assert ld.recipes.get_variant("icnn_dgn_lbfgs").needs_generator


def test_recipe_errors(fashion):
    model, gen = fashion
    targets = {"relu3": np.ones(256)}
    with pytest.raises(ConfigError, match=r"`weight` must be an option of variant 'icnn_gd'"):
        ld.recipe("icnn_gd", targets=targets, weight=2.0)
    with pytest.raises(ConfigError, match=r"`generator` must be None for the pixel variant"):
        ld.recipe("icnn_gd", generator=gen, targets=targets)
    with pytest.raises(ConfigError, match=r"`generator` must be a generator module"):
        ld.recipe("icnn_dgn_gd", targets=targets)
    with pytest.raises(ConfigError, match=r"`targets` must be target features for variant 'icnn_gd'"):
        ld.recipe("icnn_gd").build(model)
    with pytest.raises(ConfigError, match=r"`variant` must be one of .*Did you mean 'icnn_gd'"):
        ld.invert(model, targets, "icnn-gd")


def test_targets_are_checked_before_any_work(fashion):
    model, gen = fashion
    steps = []
    with pytest.raises(ShapeError, match=r"`targets\['relu3'\]` must be the feature shape of layer 'relu3', \(256,\)"):
        ld.invert(model, {"relu3": np.ones(255)}, "icnn_dgn_gd", gen, callbacks=[steps.append], progress=False)
    with pytest.raises(LayerNotFoundError, match=r"`targets\['relu4'\]` must be a layer of FashionCNN"):
        ld.invert(model, {"relu4": np.ones(256)}, "icnn_gd", callbacks=[steps.append], progress=False)
    with pytest.raises(ConfigError, match=r"per-item targets of one batch size"):
        ld.invert(model, {"relu3": np.ones((2, 256)), "fc2": np.ones((3, 10))}, "icnn_gd", progress=False)
    assert steps == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_reconstructs_a_batch(fashion, garments, variant):
    model, gen = fashion
    targets = ld.features_of(model, garments, ["conv2", "relu3"])
    options = dict(fashion_settings(gen, steps=30)[variant])
    result = ld.invert(model, targets, variant, gen if "dgn" in variant else None, seed=0, progress=False, **options)
    assert result.images.shape == (3, 28, 28, 3) and result.settings["variant"] == variant
    assert result.loss_history[-1] < 0.6 * result.loss_history[0]
    assert set(result.activation_histories) == {"feature_match:conv2", "feature_match:relu3"}


def test_dgn_reconstructions_identify_their_originals(fashion, garments):
    model, gen = fashion
    targets = ld.features_of(model, garments, ["relu3"])
    result = ld.invert(model, targets, "icnn_dgn_gd", gen, seed=0, progress=False,
                       **fashion_settings(gen)["icnn_dgn_gd"])
    rec = result.model_input.reshape(3, -1)
    corr = np.corrcoef(rec, garments.numpy().reshape(3, -1))[:3, 3:]
    assert (np.diag(corr)[:, None] >= corr).all() and np.diag(corr).min() > 0.6
    with torch.no_grad():
        assert (model(torch.from_numpy(result.model_input)).argmax(1) == model(garments).argmax(1)).all()


def test_shared_targets_and_an_explicit_batch(fashion, garments):
    model, gen = fashion
    shared = {"relu3": ld.features_of(model, garments[:1], ["relu3"])["relu3"][0]}
    one = ld.invert(model, shared, "icnn_gd", iter_n=2, progress=False, space="gray")
    four = ld.invert(model, shared, "icnn_gd", iter_n=2, progress=False, space="gray", batch=4)
    assert one.images.shape[0] == 1 and four.images.shape[0] == 4


def test_regularisers_compose(fashion, garments):
    model, _ = fashion
    targets = ld.features_of(model, garments[:1], ["relu3"])
    pieces = ld.recipe("icnn_gd", targets=targets, tv_weight=0.1, space="gray").build(model)
    assert "Total Variation" in pieces.objective.description and "Feature Match" in pieces.objective.description
    with pytest.raises(ConfigError, match="return_pre_update_image"):
        ld.invert(model, targets, "icnn_gd", return_pre_update_image=True)


# ----- the command line -------------------------------------------------------------------------

@pytest.fixture
def small_files(tmp_path):
    torch.manual_seed(0)
    model_path = save_asset(FashionCNN(width=4, hidden=16), tmp_path / "cnn.pt", {"width": 4, "hidden": 16})
    gen_path = save_generator(SmallGenerator((16,), 28, 1, width=8, hidden=16), tmp_path / "gen.pt")
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    return str(model_path), str(gen_path), str(tmp_path / "in.png")


@pytest.mark.parametrize("variant", ["icnn_gd", "icnn_dgn_lbfgs"])
def test_cli_inverts_an_image(small_files, tmp_path, capsys, variant):
    model_path, gen_path, image = small_files
    out = tmp_path / "out"
    code = main(["invert", image, "--layers", "conv2", "relu3", "--variant", variant, "--weights", model_path,
                 "--generator-weights", gen_path, "--steps", "3", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["variant"] == variant and record["layers"] == ["conv2", "relu3"] and 1 <= record["steps"] <= 3
    assert set(record["final_layer_losses"]) == {"conv2", "relu3"} and len(record["loss_history"]) == record["steps"]
    assert -1 <= record["pixel_correlation"] <= 1
    assert np.asarray(Image.open(out / "reconstruction.png")).shape[:2] == (28, 28)
    assert np.load(out / "reconstruction.npy").shape == (28, 28, 3)
    assert (out / "original.png").exists() and "wrote reconstruction.png" in capsys.readouterr().out


def test_cli_inverts_stored_features(small_files, tmp_path, capsys):
    model_path, _, image = small_files
    model = ld.models.fashion.load_asset(model_path)
    ld.save_features(tmp_path / "f.npz", ld.features_of(model, read_image(image, 28), ["relu3"]))
    out = tmp_path / "out"
    code = main(["invert", str(tmp_path / "f.npz"), "--variant", "icnn_gd", "--weights", model_path, "--steps", "2",
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "settings.json").read_text())["layers"] == ["relu3"]
    assert not (out / "original.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--layers", "relu9"], "`--layers` must be a layer of FashionCNN; got 'relu9'. Did you mean 'relu3'"),
    ([], "`--layers` must be one or more layer names"),
    (["--layers", "relu3", "--variant", "gd"], "invalid choice: 'gd'"),
])
def test_cli_errors_are_one_line(small_files, tmp_path, capsys, args, message):
    model_path, _, image = small_files
    code = main(["invert", image, "--weights", model_path, "--steps", "2", "--out", str(tmp_path / "o"), "--quiet",
                 *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_cli_missing_image(tmp_path, capsys):
    assert main(["invert", str(tmp_path / "none.png"), "--layers", "relu3", "--out", str(tmp_path / "o")]) == 2
    assert "`IMAGE` must be an existing image or .npz file" in capsys.readouterr().err


def test_cli_fashion_preset_on_the_shipped_pair(tmp_path, capsys, garments):
    Image.fromarray((garments[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "garment.png")
    out = tmp_path / "out"
    code = main(["invert", str(tmp_path / "garment.png"), "--layers", "relu3", "--preset", "fashion", "--steps", "3",
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["preset"] == "fashion" and record["options"]["lr"] == [0.5, 1e-10] and record["steps"] == 3
