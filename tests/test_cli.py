"""The lucent-dgn command line, end to end on small randomly initialised Fashion-MNIST-sized models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lucent_dgn.cli import main
from lucent_dgn.generators.small import SmallGenerator
from lucent_dgn.models.fashion import FashionCNN, save_asset
from lucent_dgn.training.generator import save_generator


@pytest.fixture
def model_files(tmp_path):
    torch.manual_seed(0)
    model_path = save_asset(FashionCNN(width=4, hidden=16), tmp_path / "cnn.pt", {"width": 4, "hidden": 16})
    gen = SmallGenerator((16,), 28, 1, width=8, hidden=16)
    gen_path = save_generator(gen, tmp_path / "gen.pt")
    return str(model_path), str(gen_path)


def test_render_two_units_with_every_variant(model_files, tmp_path, capsys):
    model_path, gen_path = model_files
    out = tmp_path / "out"
    code = main(["render", "--model", "fashion", "--weights", model_path, "--layer", "fc2", "--units", "1,7",
                 "--variant", "gd", "lbfgs", "dgn_gd", "dgn_lbfgs", "--generator", "fashion",
                 "--generator-weights", gen_path, "--steps", "3", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert set(record["variants"]) == {"gd", "lbfgs", "dgn_gd", "dgn_lbfgs"}
    for variant, info in record["variants"].items():
        assert len(info["final_activation"]) == 2 and info["steps"] == 3
        for name in info["files"]:
            img = np.asarray(Image.open(out / name))
            assert img.shape == (28, 28) or img.shape == (28, 28, 3)
            assert img.dtype == np.uint8 and img.max() >= 254 and img.min() == 0  # cnnpref: min-max to 0..255, truncated
        assert (out / info["files"][0].replace(".png", ".npy")).exists()
    grid = np.asarray(Image.open(out / record["grid"]))
    assert grid.shape[0] > 4 * 28 and grid.shape[1] > 2 * 28
    assert record["versions"]["torch"] and record["seed"] == 0
    assert "wrote 8 images" in capsys.readouterr().out


def test_layers_lists_shapes(model_files, capsys):
    assert main(["layers", "--model", "fashion", "--weights", model_files[0]]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "(4, 28, 28)" in out and "fc2" in out and "(10,)" in out


def test_bad_unit_list_is_one_line(capsys):
    assert main(["render", "--layer", "fc2", "--units", "a,b", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--units" in err[0] and "Traceback" not in err[0]


def test_examples_lower_layer_writes_masked_images(model_files, tmp_path, capsys):
    model_path, gen_path = model_files
    out = tmp_path / "ex"
    code = main(["examples", "lower", "--model", "fashion", "--weights", model_path, "--generator", "fashion",
                 "--generator-weights", gen_path, "--units", "0,2", "--steps", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["kind"] == "lower" and set(record["variants"]) == {"gd", "lbfgs", "dgn_gd", "dgn_lbfgs"}
    masked = sorted(p.name for p in out.glob("*_masked.png"))
    assert len(masked) == 8
    img = np.asarray(Image.open(out / masked[0]))
    assert (img == 0).any()  # outside the 3x3 receptive field of a conv1 unit: black
