"""Malformed weight files of the shipped format: one CorruptWeightsError, before anything real is built.

Each file is a valid ``torch.save`` of the asset dict with one part broken. The architecture's
constructor is spied on: it may run on the ``meta`` device (no memory) while the file is checked,
but never for real unless the file passes.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import torch

from lucent_dgn.cli import main
from lucent_dgn.errors import CorruptWeightsError
from lucent_dgn.generators.small import SmallGenerator, load_generator
from lucent_dgn.models.fashion import FashionCNN, load_asset, save_asset
from lucent_dgn.training.generator import save_generator


@pytest.fixture
def blob(tmp_path) -> Dict[str, Any]:
    torch.manual_seed(0)
    path = save_asset(FashionCNN(width=2, hidden=8), tmp_path / "ok.pt", {"width": 2, "hidden": 8})
    return torch.load(path, weights_only=True)


@pytest.fixture
def builds(monkeypatch) -> List[str]:
    """The device type of every FashionCNN construction ('meta' for the checks, 'cpu' for real)."""
    devices: List[str] = []
    real_init = FashionCNN.__init__

    @functools.wraps(real_init)
    def spy(self, *args, **kwargs):
        devices.append(torch.empty(0).device.type)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(FashionCNN, "__init__", spy)
    return devices


def broken(tmp_path: Path, blob: Dict[str, Any], change: Callable[[Dict[str, Any]], None]) -> Path:
    bad = copy.deepcopy(blob)
    change(bad)
    torch.save(bad, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


CASES = [
    ("unknown-config-key", lambda b: b["config"].update(colour=3),
     r"config holds FashionCNN's arguments; .* Unknown: \['colour'\]; known: \['dropout', 'hidden', 'num_classes'"),
    ("config-not-a-dict", lambda b: b.update(config=[2, 8]), "config is a dict of FashionCNN's arguments"),
    ("config-value-of-wrong-type", lambda b: b["config"].update(width="two"), "config builds a FashionCNN"),
    ("config-negative-width", lambda b: b["config"].update(width=-2), "config builds a FashionCNN.*negative dimension"),
    ("huge-architecture", lambda b: b["config"].update(width=10 ** 9, hidden=10 ** 9),
     r"config fits its weights; .* holds 1000000000, more than the \d+ values stored"),
    ("larger-architecture-than-weights", lambda b: b["config"].update(hidden=1000),
     r"weights matching the FashionCNN its config describes; .* fc1.weight is \(1000, 196\) in the architecture "
     r"and \(8, 196\) in the file"),
    ("unknown-arch", lambda b: b.update(arch="ResNet"), r"lucent_dgn.asset/1 file of a known architecture"),
    ("state-with-non-tensor", lambda b: b["state_dict"].update(extra=3), "state_dict maps names to tensors"),
    ("state-missing-key", lambda b: b["state_dict"].pop("fc2.bias"), "First difference: fc2.bias"),
    ("meta-not-a-dict", lambda b: b.update(meta=[1]), "meta is a dict"),
]


@pytest.mark.parametrize("change, message", [pytest.param(c, m, id=i) for i, c, m in CASES])
def test_malformed_asset_is_rejected_before_building(tmp_path, blob, builds, change, message):
    with pytest.raises(CorruptWeightsError, match=message):
        load_asset(broken(tmp_path, blob, change))
    assert "cpu" not in builds  # never built for real


def test_good_file_is_built_once_for_real(tmp_path, blob, builds):
    model = load_asset(broken(tmp_path, blob, lambda b: None))
    assert isinstance(model, FashionCNN) and builds == ["meta", "cpu"]
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_generator_file_with_a_bad_config(tmp_path):
    path = save_generator(SmallGenerator((16,), 28, 1, width=8, hidden=16), tmp_path / "gen.pt")
    bad = torch.load(path, weights_only=True)
    bad["config"]["image_size"] = 30  # not a multiple of 4: the constructor refuses it
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CorruptWeightsError, match="config builds a SmallGenerator; .* ConfigError: `image_size`"):
        load_generator(tmp_path / "bad.pt")


def test_cli_names_the_weights_argument(tmp_path, blob, capsys):
    path = broken(tmp_path, blob, lambda b: b["config"].update(width=10 ** 9))
    assert main(["layers", "--weights", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lucent-dgn: error: `--weights` must be a file whose config fits"), err
