"""The command line on bad arguments: status 2, one line on stderr naming the argument, no traceback,
nothing written.

Every case runs in-process through ``lucent_dgn.cli.main``; the cases of :data:`REAL_PROCESS`
(one per kind of check) also run the real entry point, ``python -m lucent_dgn.cli``, in a
subprocess. Cases fail before a model is loaded, except those about a model's layers or input
size, which use small Fashion-MNIST-format weight files written by the test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import pytest
import torch

from lucent_dgn import cli
from lucent_dgn.models.fashion import FashionCNN, save_asset
from lucent_dgn.registry import GENERATOR_NAMES

from _tiny import TinyCaffeNet

ROOT = Path(__file__).resolve().parents[1]


def render_args(tmp_path: Path, *extra: str, out: str = "") -> List[str]:
    args = ["render", "--model", "fashion", "--layer", "conv1", "--units", "0", "--quiet",
            "--out", out or str(tmp_path / "out")]
    return args + list(extra)


def below_a_file(tmp_path: Path) -> str:
    (tmp_path / "file").write_text("a regular file")
    return str(tmp_path / "file" / "sub")


def text_file(tmp_path: Path, name: str = "notes.pt") -> str:
    (tmp_path / name).write_text("plain text, not weights\n" * 3)
    return str(tmp_path / name)


def pickled_module(tmp_path: Path) -> str:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled model: torch refuses it safely
    return str(tmp_path / "module.pt")


def small_cnn(tmp_path: Path) -> str:
    torch.manual_seed(0)
    return str(save_asset(FashionCNN(width=2, hidden=8), tmp_path / "cnn.pt", {"width": 2, "hidden": 8}))


def mask_file(tmp_path: Path, array: np.ndarray) -> str:
    np.save(tmp_path / "mask.npy", array)
    return str(tmp_path / "mask.npy")


def check_one_line(code: int, err: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], err


# (id, argv built from tmp_path, fragment of the one-line message); every case exits with status 2
CASES: List[Tuple[str, Callable[[Path], List[str]], str]] = [
    ("no-command", lambda p: [], "lucent-dgn: error: the following arguments are required: COMMAND"),
    ("unknown-command", lambda p: ["paint", "--layer", "x"], "invalid choice: 'paint'"),
    ("unknown-option", lambda p: render_args(p, "--colour", "red"),
     "lucent-dgn render: error: unrecognized arguments: --colour red"),
    ("missing-units-and-mask", lambda p: ["render", "--layer", "conv1", "--out", str(p / "out")],
     "lucent-dgn render: error: one of the arguments --units --mask is required"),
    ("units-and-mask", lambda p: render_args(p, "--mask", "m.npy"), "argument --mask: not allowed with argument --units"),
    ("unknown-model", lambda p: render_args(p, "--model", "resnet5"),
     "`--model` must be 'fashion', 'fashion-judge', 'bvlc_alexnet' or a torchvision classifier name; got "
     "'resnet5'. Did you mean"),
    ("unknown-model-layers", lambda p: ["layers", "--model", "alexnett"], "got 'alexnett'. Did you mean 'alexnet'"),
    ("unknown-generator", lambda p: render_args(p, "--variant", "dgn_gd", "--generator", "deepsim-fc9"),
     "argument --generator: invalid choice: 'deepsim-fc9' (choose from " + ", ".join(map(repr, GENERATOR_NAMES))),
    ("units-not-integers", lambda p: render_args(p, "--units", "1,x"),
     "`--units` must be comma-separated integers, start:stop[:step] or 'all'; got '1,x'"),
    ("units-empty-range", lambda p: render_args(p, "--units", "5:2"), "`--units` must be at least one unit"),
    ("units-zero-step", lambda p: render_args(p, "--units", "0:10:0"), "`--units` must be comma-separated"),
    ("units-negative", lambda p: render_args(p, "--units=-1,2"), "`--units` must be non-negative channel indices"),
    ("units-repeated", lambda p: render_args(p, "--units", "3,3"),
     "`--units` must be distinct units (each unit gets one image file); got '3,3'. Repeated: 3."),
    ("units-repeated-range", lambda p: render_args(p, "--units", "1,2,1,2,5"), "Repeated: 1, 2."),
    ("steps-zero", lambda p: render_args(p, "--steps", "0"), "`--steps` must be a positive integer; got 0"),
    ("steps-negative", lambda p: render_args(p, "--steps", "-3"), "`--steps` must be a positive integer; got -3"),
    ("steps-not-int", lambda p: render_args(p, "--steps", "ten"), "argument --steps: invalid int value: 'ten'"),
    ("seed-beyond-64-bits", lambda p: render_args(p, "--seed", str(2 ** 64)),
     "`--seed` must be an integer in [0, 2**64 - 1]; got 18446744073709551616"),
    ("seed-negative", lambda p: render_args(p, "--seed", "-1"), "`--seed` must be an integer in [0, 2**64 - 1]"),
    ("unknown-variant", lambda p: render_args(p, "--variant", "gd", "dgn-gd"),
     "argument --variant: invalid choice: 'dgn-gd'"),
    ("unknown-preset", lambda p: render_args(p, "--preset", "highest"), "argument --preset: invalid choice"),
    ("unit-weight-not-number", lambda p: render_args(p, "--unit-weight", "heavy"),
     "argument --unit-weight: invalid float value: 'heavy'"),
    ("unit-weight-nan", lambda p: render_args(p, "--unit-weight", "nan"), "`--unit-weight` must be a finite number"),
    ("bounds-negative", lambda p: render_args(p, "--variant", "dgn_gd", "--bounds", "-1"),
     "`--bounds` must be a finite number >= 0; got -1.0"),
    ("bounds-without-dgn", lambda p: render_args(p, "--bounds", "2"),
     "`--bounds` must be used with a dgn variant; got --variant gd"),
    ("set-without-equals", lambda p: render_args(p, "--set", "lr"), "`--set` must be KEY=VALUE or VARIANT.KEY=VALUE"),
    ("set-unknown-key", lambda p: render_args(p, "--set", "learning_rate=0.1"),
     "`--set` must be an option of the gd recipe; got 'learning_rate'. Valid: "),
    ("set-key-of-another-variant", lambda p: render_args(p, "--variant", "gd", "dgn_gd", "--set", "jitter_size=2"),
     "`--set` must be an option of the dgn_gd recipe; got 'jitter_size'"),
    ("set-variant-not-rendered", lambda p: render_args(p, "--set", "lbfgs.maxiter=3"),
     "`--set` must be a VARIANT.KEY whose variant is rendered (gd)"),
    ("threads-zero", lambda p: render_args(p, "--threads", "0"), "`--threads` must be between 1 and"),
    ("threads-beyond-machine", lambda p: render_args(p, "--threads", "100000"),
     "(the CPUs available to this process); got 100000"),
    ("device-unknown", lambda p: render_args(p, "--device", "banana"),
     "`--device` must be a device torch can render on here ('cpu', 'cuda', 'cuda:N' or 'mps'); got 'banana'"),
    ("device-meta", lambda p: render_args(p, "--device", "meta"), "`--device` must be a device torch can render on"),
    ("out-not-writable", lambda p: render_args(p, out=below_a_file(p)), "`--out` must be a directory that can be created"),
    ("layers-size-negative", lambda p: ["layers", "--size", "-3"], "`--size` must be a positive integer; got -3"),
    ("layers-size-zero", lambda p: ["layers", "--size", "0"], "`--size` must be a positive integer; got 0"),
    ("layers-size-too-small", lambda p: ["layers", "--weights", small_cnn(p), "--size", "5"],
     "`--size` must be an input size FashionCNN takes; got 5. Its forward pass fails at that size: mat1 and mat2"),
    ("weights-text-file", lambda p: ["layers", "--weights", text_file(p)], "--weights"),
    ("weights-pickled-module", lambda p: ["layers", "--weights", pickled_module(p)], "--weights"),
    ("weights-missing", lambda p: ["layers", "--weights", str(p / "absent.pt")], "--weights"),
    ("weights-text-torchvision", lambda p: ["layers", "--model", "resnet18", "--weights", text_file(p)], "--weights"),
    ("generator-weights-text", lambda p: render_args(p, "--variant", "dgn_gd", "--generator-weights",
                                                     text_file(p, "g.pt")), "--generator-weights"),
    ("layer-unknown", lambda p: render_args(p, "--weights", small_cnn(p), "--layer", "conv9"),
     "`--layer` must be a layer of FashionCNN; got 'conv9'. Did you mean 'conv2', 'conv1'?"),
    ("units-beyond-layer", lambda p: render_args(p, "--weights", small_cnn(p), "--layer", "fc2", "--units", "3,12"),
     "`--units` must be channels of fc2 (0 to 9); got '3,12'"),
    ("size-model-cannot-take", lambda p: render_args(p, "--weights", small_cnn(p), "--layer", "fc2",
                                                     "--set", "image_size=20"),
     "`--set image_size` must be an input size FashionCNN takes; got 20"),
    ("mask-missing", lambda p: ["render", "--weights", small_cnn(p), "--layer", "fc2", "--quiet",
                                "--mask", str(p / "absent.npy"), "--out", str(p / "out")],
     "`--mask` must be an existing .npy file"),
    ("mask-wrong-shape", lambda p: ["render", "--weights", small_cnn(p), "--layer", "fc2", "--quiet",
                                    "--mask", mask_file(p, np.ones((2, 7))), "--out", str(p / "out")],
     "`--mask` must be of shape (10,) or (B, 10) to fit layer fc2; got (2, 7)"),
    ("mask-empty-item", lambda p: ["render", "--weights", small_cnn(p), "--layer", "fc2", "--quiet",
                                   "--mask", mask_file(p, np.zeros((1, 10))), "--out", str(p / "out")],
     "`--mask` must be 0/1 values selecting at least one unit per item"),
    ("set-option-of-another-solver", lambda p: ["render", "--weights", small_cnn(p), "--variant", "gd", "lbfgs",
                                                "--units", "1", "--set", "lbfgs.maxfun=5", "--quiet",
                                                "--out", str(p / "out")],
     "`maxfun` must be an option of the solver in use ('torch'); got 'maxfun'. It belongs to solver='scipy'."),
    ("examples-unknown-generator", lambda p: ["examples", "higher", "--generator", "gan", "--out", str(p / "out")],
     "argument --generator: invalid choice: 'gan'"),
    ("convert-missing-file", lambda p: ["convert-caffemodel", str(p / "absent.caffemodel"), str(p / "out.pt")],
     "lucent-dgn: error: `path` must be an existing .caffemodel file"),
    ("convert-no-output", lambda p: ["convert-caffemodel", str(p / "absent.caffemodel")],
     "`OUTPUT` must be a file to write (only --list may leave it out)"),
    ("convert-unknown-arch", lambda p: ["convert-caffemodel", "a.caffemodel", "b.pt", "--arch", "vgg99"],
     "lucent-dgn convert-caffemodel: error: argument --arch: invalid choice: 'vgg99'"),
    ("train-generator-threads", lambda p: ["train-generator", "--layer", "relu3", "--out", str(p / "g.pt"),
                                           "--threads", "100000"], "`--threads` must be between 1 and"),
]

#: One case per kind of check, also run through the real entry point in a subprocess.
REAL_PROCESS = ["no-command", "unknown-option", "unknown-generator", "units-repeated", "steps-zero",
                "seed-beyond-64-bits", "set-unknown-key", "threads-beyond-machine", "device-meta",
                "layers-size-negative", "layers-size-too-small", "weights-pickled-module", "convert-missing-file"]


def _ids(cases) -> List:
    return [pytest.param(argv, fragment, id=name) for name, argv, fragment in cases]


@pytest.mark.parametrize("argv, fragment", _ids(CASES))
def test_bad_argument_exits_with_one_line(tmp_path, capsys, argv, fragment):
    status = cli.main(argv(tmp_path))
    out, err = capsys.readouterr()
    check_one_line(status, err, 2, fragment)
    assert not (tmp_path / "out").exists()  # nothing was written, not even the folder


def _run(argv: List[str], **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "lucent_dgn.cli"] + argv, capture_output=True, text=True,
                          timeout=180, env=env, **kwargs)


@pytest.mark.subprocess
@pytest.mark.parametrize("argv, fragment", _ids([c for c in CASES if c[0] in REAL_PROCESS]))
def test_real_process_prints_one_line_and_no_traceback(tmp_path, argv, fragment):
    proc = _run(argv(tmp_path))
    check_one_line(proc.returncode, proc.stderr, 2, fragment)
    assert proc.stdout == "" and not (tmp_path / "out").exists()


def test_every_real_process_case_is_a_case():
    assert set(REAL_PROCESS) <= {c[0] for c in CASES}


@pytest.mark.parametrize("argv", [
    lambda p: ["layers", "--weights", text_file(p)],
    lambda p: ["layers", "--weights", pickled_module(p)],
    lambda p: ["layers", "--model", "resnet18", "--weights", pickled_module(p)],
], ids=["text", "pickled-module", "pickled-module-torchvision"])
def test_non_weight_file_never_suggests_unsafe_loading(tmp_path, capsys, argv):
    assert cli.main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "weights_only" not in err and "trust" not in err and "add_safe_globals" not in err, err
    assert err.startswith("lucent-dgn: error: `--weights` must be"), err


def test_cuda_device_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    status = cli.main(render_args(tmp_path, "--device", "cuda:0"))
    check_one_line(status, capsys.readouterr().err, 2, "`--device` must be an available device; got 'cuda:0'")


def test_not_a_caffemodel(tmp_path, capsys):
    (tmp_path / "notes.caffemodel").write_text("plain text, not a network\n" * 3)
    status = cli.main(["convert-caffemodel", str(tmp_path / "notes.caffemodel"), str(tmp_path / "out.pt")])
    check_one_line(status, capsys.readouterr().err, 2, "must be a binary Caffe .caffemodel")
    assert not (tmp_path / "out.pt").exists()


def test_unknown_layer_of_a_caffe_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lucent_dgn.registry.load_model_by_name", lambda name, weights=None: TinyCaffeNet())
    status = cli.main(render_args(tmp_path, "--layer", "conv9", "--steps", "1"))
    check_one_line(status, capsys.readouterr().err, 2,
                   "`--layer` must be a layer of TinyCaffeNet; got 'conv9'. Did you mean 'conv1'")


def _subcommands() -> List[Tuple[str, argparse.ArgumentParser]]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices.items())


def test_every_subcommand_is_listed_with_help():
    names = [name for name, _ in _subcommands()]
    assert names == ["atlas", "convert-caffemodel", "demo", "examples", "invert", "layers", "render", "sweep",
                     "train-generator"]
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(choice.help for choice in action._choices_actions)


@pytest.mark.parametrize("name, sub", _subcommands(), ids=[n for n, _ in _subcommands()])
def test_every_option_has_help_text_and_the_usage_names_the_command(name, sub):
    assert sub.prog == f"lucent-dgn {name}"
    for action in sub._actions:
        assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name", [n for n, _ in _subcommands()])
def test_usage_errors_have_one_form(capsys, name):
    assert cli.main([name, "--no-such-option"]) == 2
    check_one_line(2, capsys.readouterr().err, 2, f"lucent-dgn {name}: error: ")


def test_generator_help_lists_the_valid_names(capsys):
    assert cli.main(["render", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "generator of the dgn variants: " + ", ".join(GENERATOR_NAMES) in out


def test_help_exits_zero(capsys):
    assert cli.main(["render", "--help"]) == 0
    assert "--units" in capsys.readouterr().out
