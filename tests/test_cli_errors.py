"""The command line on bad arguments: a non-zero exit, one line on stderr, never a traceback.

Every case runs ``lucent_dgn.cli.main`` in-process; one runs ``python -m lucent_dgn.cli`` for real.
All cases fail before a model is loaded, except the unknown layer, which gets a tiny stand-in
model (the shipped Fashion-MNIST weights are not needed).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

from lucent_dgn import cli

from _tiny import TinyCaffeNet


def render_args(tmp_path: Path, *extra: str, out: str = "") -> List[str]:
    args = ["render", "--model", "fashion", "--layer", "conv1", "--units", "0", "--quiet",
            "--out", out or str(tmp_path / "out")]
    return args + list(extra)


def below_a_file(tmp_path: Path) -> str:
    (tmp_path / "file").write_text("a regular file")
    return str(tmp_path / "file" / "sub")


def check_one_line(code: int, err: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], err


# (id, argv built from tmp_path, exit status, fragment of the message)
CASES = [
    ("no-command", lambda p: [], 2, "the following arguments are required: command"),
    ("unknown-command", lambda p: ["paint", "--layer", "x"], 2, "invalid choice: 'paint'"),
    ("unknown-option", lambda p: render_args(p, "--colour", "red"), 2, "unrecognized arguments: --colour red"),
    ("missing-layer", lambda p: ["render", "--units", "0", "--out", str(p)], 2,
     "the following arguments are required: --layer"),
    ("missing-units", lambda p: ["render", "--layer", "conv1", "--out", str(p)], 2,
     "the following arguments are required: --units"),
    ("unknown-model", lambda p: render_args(p, "--model", "resnet5"), 2,
     "`--model` must be 'fashion', 'fashion-judge', 'bvlc_alexnet' or a torchvision classifier name; got "
     "'resnet5'. Did you mean"),
    ("unknown-model-layers", lambda p: ["layers", "--model", "alexnett"], 2, "got 'alexnett'. Did you mean 'alexnet'"),
    ("units-not-integers", lambda p: render_args(p, "--units", "1,x"), 2,
     "`--units` must be comma-separated integers or start:stop[:step]; got '1,x'"),
    ("units-empty-range", lambda p: render_args(p, "--units", "5:2"), 2, "`--units` must be at least one unit"),
    ("units-zero-step", lambda p: render_args(p, "--units", "0:10:0"), 2, "`--units` must be comma-separated"),
    ("steps-zero", lambda p: render_args(p, "--steps", "0"), 2, "`--steps` must be a positive integer; got 0"),
    ("steps-negative", lambda p: render_args(p, "--steps", "-3"), 2, "`--steps` must be a positive integer; got -3"),
    ("steps-not-int", lambda p: render_args(p, "--steps", "ten"), 2, "argument --steps: invalid int value: 'ten'"),
    ("unknown-variant", lambda p: render_args(p, "--variant", "gd", "dgn-gd"), 2,
     "argument --variant: invalid choice: 'dgn-gd'"),
    ("unknown-preset", lambda p: render_args(p, "--preset", "highest"), 2, "argument --preset: invalid choice"),
    ("unit-weight-not-number", lambda p: render_args(p, "--unit-weight", "heavy"), 2,
     "argument --unit-weight: invalid float value: 'heavy'"),
    ("threads-zero", lambda p: render_args(p, "--threads", "0"), 2, "`--threads` must be a positive integer"),
    ("device-unknown", lambda p: render_args(p, "--device", "banana"), 2,
     "`--device` must be a torch device such as 'cpu' or 'cuda:0'; got 'banana'"),
    ("out-not-writable", lambda p: render_args(p, out=below_a_file(p)), 2,
     "`--out` must be a directory that can be created"),
    ("convert-missing-file", lambda p: ["convert-caffemodel", str(p / "absent.caffemodel"), str(p / "out.pt")], 1,
     "convert-caffemodel: error: `path` must be an existing .caffemodel file"),
]


@pytest.mark.parametrize("argv, code, fragment", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_argument_exits_with_one_line(tmp_path, capsys, argv, code, fragment):
    status = cli.main(argv(tmp_path))
    out, err = capsys.readouterr()
    check_one_line(status, err, code, fragment)
    assert not (tmp_path / "out").exists()  # nothing was written


def test_cuda_device_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    status = cli.main(render_args(tmp_path, "--device", "cuda:0"))
    check_one_line(status, capsys.readouterr().err, 2, "`--device` must be an available device; got 'cuda:0'")


def test_not_a_caffemodel(tmp_path, capsys):
    (tmp_path / "notes.caffemodel").write_text("plain text, not a network\n" * 3)
    status = cli.main(["convert-caffemodel", str(tmp_path / "notes.caffemodel"), str(tmp_path / "out.pt")])
    check_one_line(status, capsys.readouterr().err, 1, "must be a binary Caffe .caffemodel")
    assert not (tmp_path / "out.pt").exists()


def test_unknown_layer_is_one_line_with_a_suggestion(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_model_by_name", lambda name, weights=None: TinyCaffeNet())
    status = cli.main(render_args(tmp_path, "--layer", "conv9", "--steps", "1"))
    check_one_line(status, capsys.readouterr().err, 2,
                   "`layer` must be a layer of TinyCaffeNet; got 'conv9'. Did you mean 'conv1'")


def test_interrupt_is_one_line_with_status_130(tmp_path, capsys, monkeypatch):
    def interrupted(name, weights=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_model_by_name", interrupted)
    check_one_line(cli.main(render_args(tmp_path)), capsys.readouterr().err, 130, "lucent-dgn: interrupted")


def test_help_exits_zero(capsys):
    assert cli.main(["render", "--help"]) == 0
    assert "--units" in capsys.readouterr().out


def test_real_process_prints_one_line_and_no_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "lucent_dgn.cli"] + render_args(tmp_path, "--steps", "0"),
                          capture_output=True, text=True, timeout=120, env=env)
    check_one_line(proc.returncode, proc.stderr, 2, "lucent-dgn: error: `--steps` must be a positive integer; got 0")
    assert proc.stdout == "" and not (tmp_path / "out").exists()
