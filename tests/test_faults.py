"""Faults: interrupts, failing callbacks, non-finite activations and failures mid-write.

After any fault the model (and a DGN generator) must be as it was: no hooks, no new ``.grad``,
the same ``requires_grad`` flags, train/eval flags and in-place flags. A failed write never leaves
a partial file under the final name (files are written to a temporary file, then renamed).
The single-optimizer cases of test_render_loop.py are extended here to every optimizer, to
interrupts inside the forward pass, to generators and to activations (not losses) going NaN/inf.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn import _io
from lucent_dgn import weights as W
from lucent_dgn.errors import NonFiniteLossError, WeightsError
from lucent_dgn.caffemodel import CaffeLayer, write_caffemodel
from lucent_dgn.parameterizations import DGNImage
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.runs import save_units
from lucent_dgn.viz import save_png

from _tiny import TinyCaffeNet, TinyGenerator

OPTIMIZERS = ["gd", "lbfgsb", "scipy-lbfgsb", "adam"]


class Poison(nn.Module):
    """Identity until ``armed``: then a number (NaN/inf) fills the output, or "interrupt" raises once."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed == "interrupt":
            self.armed = None
            raise KeyboardInterrupt
        if self.armed is not None:
            return x * 0.0 + self.armed
        return x


def make_net() -> nn.Sequential:
    """12 px RGB -> conv1 (4, 10, 10) -> ReLU(inplace) -> poison -> conv2 (6, 8, 8) -> head (5,).

    Mixed state on purpose: trained mode with the head in eval mode, conv1's bias frozen, and a
    stale ``.grad`` on fc.weight; all of it must survive every fault.
    """
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3), relu1=nn.ReLU(inplace=True), poison=Poison(), conv2=nn.Conv2d(4, 6, 3),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(6, 5))).train()
    net.input_space = ld.UnitSpace()
    net.fc.eval()
    net.conv1.bias.requires_grad_(False)
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    return net


def snapshot(*modules: nn.Module) -> Dict[str, Any]:
    """Everything a render may touch on a module tree."""
    state: Dict[str, Any] = {}
    for k, module in enumerate(modules):
        for name, m in module.named_modules():
            state[f"{k}:{name}:mode"] = m.training
            state[f"{k}:{name}:hooks"] = (len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                                          + len(getattr(m, "_backward_pre_hooks", {})))
            state[f"{k}:{name}:inplace"] = getattr(m, "inplace", None)
        for name, p in module.named_parameters():
            state[f"{k}:{name}:requires_grad"] = p.requires_grad
            state[f"{k}:{name}:grad"] = None if p.grad is None else id(p.grad)
    return state


def assert_clean(before: Dict[str, Any], param: Any, *modules: nn.Module) -> None:
    after = snapshot(*modules)
    assert after == before
    assert all(v == 0 for k, v in after.items() if k.endswith(":hooks"))
    assert all(t.grad is None for t in param.tensors())


def pixel(batch: int = 1) -> ld.PixelImage:
    return ld.PixelImage(12, batch=batch, space="unit", seed=0)


def conv2_unit() -> Any:
    return ld.masked_units("conv2", ld.unit_mask((6, 8, 8), 0))


def arm_after_step(poison: Poison, value: Any, step: int = 1) -> Callable:
    def callback(info):
        if info.step == step:
            poison.armed = value
    return callback


# ------------------------------------------------------------------------------------ interrupts
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_interrupt_inside_the_forward_pass_returns_the_result_so_far(optimizer):
    model = make_net()
    before = snapshot(model)
    param = pixel(batch=2)
    result = ld.render(model, conv2_unit(), param, optimizer, steps=6, progress=False,
                       callbacks=[arm_after_step(model.poison, "interrupt")])
    assert result.interrupted and result.steps == 2
    assert result.loss_history.shape == (2,) and result.activation_history.shape == (2, 2)
    assert result.images.shape == (2, 12, 12, 3) and np.isfinite(result.images).all()
    assert np.isfinite(result.final_activation).all()
    assert_clean(before, param, model)


def test_interrupt_of_a_dgn_render_leaves_model_and_generator_clean():
    model, generator = TinyCaffeNet(), TinyGenerator().train()
    generator.fc.bias.requires_grad_(False)
    before = snapshot(model, generator)
    param = DGNImage(generator, batch=2, input_size=32, seed=0)

    def interrupt(info):
        if info.step == 2:
            raise KeyboardInterrupt

    result = ld.render(model, ld.masked_units("fc8", ld.unit_masks((10,), [1, 2])), param, MomentumGD(lr=1.0),
                       steps=10, callbacks=[interrupt], progress=False)
    assert result.interrupted and result.steps == 3 and result.raw.shape == (2, 16)
    assert_clean(before, param, model, generator)


# ----------------------------------------------------------------------------- callback failures
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_callback_exception_propagates_and_leaves_everything_clean(optimizer):
    model, generator = TinyCaffeNet(), TinyGenerator()
    before = snapshot(model, generator)
    param = DGNImage(generator, input_size=32, seed=0)

    def fails_at_step_1(info):
        if info.step == 1:
            raise OSError("disk full while saving a snapshot")

    with pytest.raises(OSError, match="disk full"):
        ld.render(model, ld.masked_units("fc8", ld.unit_mask((10,), 3)), param, optimizer, steps=5,
                  callbacks=[fails_at_step_1], progress=False)
    assert_clean(before, param, model, generator)


# ------------------------------------------------------------------------- non-finite activations
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_non_finite_activation_stops_with_the_step(optimizer, value):
    model = make_net()
    before = snapshot(model)
    param = pixel()
    with pytest.raises(NonFiniteLossError, match=r"became (nan|-?inf) at step 2 \(evaluation \d+\)") as info:
        ld.render(model, conv2_unit(), param, optimizer, steps=6, progress=False,
                  callbacks=[arm_after_step(model.poison, value)])
    assert "learning rate" in str(info.value)
    assert_clean(before, param, model)


def test_activation_non_finite_from_the_start_names_step_0():
    model = make_net()
    model.poison.armed = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"at step 0 \(evaluation 1\)"):
        ld.render(model, conv2_unit(), pixel(), MomentumGD(), steps=3, progress=False)


# ------------------------------------------------------------------------------- atomic writes
def _write_then_fail(data: bytes) -> Callable:
    """A replacement for a save function: writes ``data`` to its file argument, then fails."""
    def fake(*args: Any, **kwargs: Any) -> None:
        target = next(a for a in args if hasattr(a, "write") or isinstance(a, (str, os.PathLike)))
        if hasattr(target, "write"):
            target.write(data)
            target.flush()
        else:
            Path(target).write_bytes(data)
        raise OSError(28, "No space left on device")
    return fake


def _fail(*args: Any, **kwargs: Any) -> None:
    raise OSError(5, "Input/output error")


def _download(path: Path) -> None:
    def fetch(url, out, progress=True, timeout=60.0):  # a local stand-in for the server
        out.write(b"complete weights")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(W, "fetch_url", fetch)
        W.download_file("https://example.invalid/w.pt", path, progress=False)


# name -> (file name, writer(path), (object, attribute, replacement) that breaks it mid-write)
WRITERS: Dict[str, Tuple[str, Callable[[Path], Any], Tuple[Any, str, Callable]]] = {
    "png": ("unit.png", lambda p: save_png(p, np.random.default_rng(0).random((8, 8, 3))),
            (PIL.Image.Image, "save", lambda self, fp, *a, **k: _write_then_fail(b"\x89PNG\r\n\x1a\n")(fp))),
    "npy": ("unit.npy", lambda p: _io.save_npy(p, np.arange(1000.0)),
            (np, "save", _write_then_fail(b"\x93NUMPY\x01\x00partial"))),
    "json": ("settings.json", lambda p: _io.save_json(p, {"layer": "conv1", "units": [1, 2]}),
             (_io.os, "fsync", _fail)),
    "weights": ("w.pt", lambda p: _io.save_torch({"w": torch.arange(100.0)}, p),
                (torch, "save", _write_then_fail(b"PK\x03\x04partial"))),
    "caffemodel": ("net.caffemodel", lambda p: write_caffemodel(p, [CaffeLayer("fc", "InnerProduct",
                                                                                [np.ones((2, 3), np.float32)])]),
                   (os, "replace", _fail)),
    "download": ("w.pt", _download, (os, "replace", _fail)),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("kind", list(WRITERS))
def test_failure_mid_write_leaves_no_partial_file(tmp_path, monkeypatch, kind, existing):
    name, write, (owner, attribute, broken) = WRITERS[kind]
    target = tmp_path / "out" / name
    target.parent.mkdir()
    if existing:
        target.write_bytes(b"the previous, complete file")
    monkeypatch.setattr(owner, attribute, broken)
    with pytest.raises((OSError, WeightsError)):
        write(target)
    monkeypatch.undo()
    left = sorted(p.name for p in target.parent.iterdir())
    if existing:
        assert left == [name] and target.read_bytes() == b"the previous, complete file"
    else:
        assert left == []
    write(target)  # and the same call works once the fault is gone
    assert sorted(p.name for p in target.parent.iterdir()) == [name]


def test_interrupt_mid_write_leaves_no_partial_file(tmp_path):
    def writer(handle):
        handle.write(b"x" * 4096)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write_bytes(tmp_path / "a.bin", writer)
    assert list(tmp_path.iterdir()) == []


def test_save_units_failing_midway_leaves_only_complete_files(tmp_path, monkeypatch):
    result = ld.render(TinyCaffeNet(), ld.masked_units("fc8", ld.unit_masks((10,), [0, 1, 2])),
                       ld.PixelImage(32, batch=3, seed=0), MomentumGD(lr=1.0), steps=2, progress=False)
    real_save = PIL.Image.Image.save
    calls: List[int] = []

    def third_png_fails(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image.Image, "save", third_png_fails)
    with pytest.raises(OSError):
        save_units(tmp_path / "run", {"gd": result}, "fc8", [0, 1, 2])
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["preferred_img_gd_layer_fc8_unit_0.npy", "preferred_img_gd_layer_fc8_unit_0.png",
                     "preferred_img_gd_layer_fc8_unit_1.npy", "preferred_img_gd_layer_fc8_unit_1.png"]
    for name in names:  # every file left is complete
        path = tmp_path / "run" / name
        if name.endswith(".png"):
            with PIL.Image.open(path) as img:
                img.load()
        else:
            assert np.load(path).shape == (32, 32, 3)
    record = save_units(tmp_path / "run", {"gd": result}, "fc8", [0, 1, 2])
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["units"] == record["units"] == [0, 1, 2]


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from lucent_dgn._io import atomic_write_bytes

    def writer(handle):
        handle.write(b"half of a file" * 10000)
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

    atomic_write_bytes(sys.argv[1], writer)
""")


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_killed_process_never_leaves_a_partial_file(tmp_path, existing):
    target = tmp_path / "image.png"
    if existing:
        target.write_bytes(b"old complete image")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"writing", proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if existing:
        assert target.read_bytes() == b"old complete image"
    else:
        assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(n.startswith(".image.png.") and n.endswith(".part") for n in leftovers)  # hidden, never the name


# ----------------------------------------------------------------- faults in overlapping renders
def test_failing_nested_render_leaves_the_outer_render_and_the_model_clean():
    """A render started in a callback fails (NaN); the outer render goes on and restores the model."""
    model = make_net()
    before = snapshot(model)
    outer_param = pixel()
    errors = []

    def nested(info):
        if info.step == 1:
            model.poison.armed = float("nan")
            try:
                ld.render(model, conv2_unit(), pixel(), "gd", steps=3, progress=False)
            except NonFiniteLossError as err:
                errors.append(err)
            finally:
                model.poison.armed = None
            assert all(not p.requires_grad for p in model.parameters())  # still frozen for the outer render

    result = ld.render(model, conv2_unit(), outer_param, MomentumGD(lr=0.1, decay=0.0), steps=4, progress=False,
                       callbacks=[nested])
    assert len(errors) == 1 and result.steps == 4 and np.isfinite(result.final_activation).all()
    assert_clean(before, outer_param, model)


def test_a_failing_thread_does_not_disturb_a_concurrent_render():
    import threading
    model = make_net()
    before = snapshot(model)
    params = [pixel(), pixel()]
    started, outcome = threading.Event(), {}

    def failing():
        def boom(info):
            started.wait(timeout=30)
            raise RuntimeError("callback failed")
        try:
            ld.render(model, conv2_unit(), params[0], "gd", steps=5, progress=False, callbacks=[boom])
        except RuntimeError as err:
            outcome["error"] = str(err)

    def working():
        def signal(info):
            started.set()
        outcome["result"] = ld.render(model, conv2_unit(), params[1], MomentumGD(lr=0.1, decay=0.0), steps=5,
                                      progress=False, callbacks=[signal])

    threads = [threading.Thread(target=failing), threading.Thread(target=working)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcome["error"] == "callback failed" and outcome["result"].steps == 5
    assert_clean(before, params[0], model)
    assert_clean(before, params[1], model)
