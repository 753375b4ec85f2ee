"""Sweeps: per-unit determinism across grouping and backends, resume after kills, failures, bad inputs."""
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
from torch import nn

import lucent_dgn as ld
from lucent_dgn import cli
from lucent_dgn.errors import ConfigError, LayerNotFoundError
from lucent_dgn.sweeps import RUN_COLUMNS, dataset_digest, read_rows, resolve_units, sweep
from lucent_dgn.sweeps.examples import ImageSource, top_k_examples

#: Few steps of every variant on the shipped Fashion-MNIST pair (random initial images and codes).
FAST = {"gd": {"iter_n": 4, "space": "gray", "lr": 0.05, "decay": 0.0, "jitter_size": 1},
        "lbfgs": {"maxiter": 3, "space": "gray"},
        "dgn_gd": {"iter_n": 4, "init": "stats"},
        "dgn_lbfgs": {"maxiter": 3, "init": "stats"}}
FASHION = dict(layers=["conv1", "fc2"], units="0:3", variants=FAST, generator="fashion", batch_size=2,
               progress=False)


def _view(root: Path) -> dict:
    """A sweep's unit files (bytes) and index rows without the per-run columns."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "units").rglob("*"))
             if p.is_file()}
    rows = sorted(({k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in read_rows(root)),
                  key=lambda r: r["key"])
    return {"files": files, "rows": rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted in-process sweep of FAST: 2 layers x 3 units x 4 variants."""
    out = tmp_path_factory.mktemp("sweep") / "ref"
    summary = sweep("fashion", out_dir=out, **FASHION)
    assert (summary.units, summary.rendered, summary.failed) == (24, 24, 0)
    return out


def killing_fashion() -> nn.Module:
    """The shipped classifier; in a worker process its first forward pass SIGKILLs that process, once.

    ``LUCENT_DGN_TEST_KILL_FLAG`` names the flag file written just before the kill, and
    ``LUCENT_DGN_TEST_DRIVER`` the pid of the driver (which is never killed).
    """
    from lucent_dgn.models.fashion import fashion_classifier
    model = fashion_classifier()
    flag = os.environ.get("LUCENT_DGN_TEST_KILL_FLAG")
    if flag and str(os.getpid()) != os.environ.get("LUCENT_DGN_TEST_DRIVER"):
        def hook(*_):
            if not os.path.exists(flag):
                Path(flag).touch()
                os.kill(os.getpid(), signal.SIGKILL)
        model.conv1.register_forward_hook(hook)
    return model


# -- what a unit's result depends on -------------------------------------------------------------
def test_dataset_layout_and_rows(reference):
    rows = read_rows(reference)
    assert [r["key"] for r in rows][:3] == ["conv1/gd/seed0/0", "conv1/gd/seed0/1", "conv1/gd/seed0/2"]
    assert len({r["key"] for r in rows}) == 24
    row = next(r for r in rows if r["key"] == "fc2/dgn_gd/seed0/1")
    assert row["status"] == "ok" and row["error"] is None and row["steps"] == 4 and row["evaluations"] == 4
    assert row["batch"] == 2 and next(r for r in rows if r["variant"] == "lbfgs")["batch"] == 1
    assert row["curve_steps"] == [0, 1, 2, 3] and row["activation_max"] == max(row["activation_curve"])
    assert set(row["versions"]) >= {"torch", "lucent-dgn"} and row["worker"]
    npy = np.load(reference / row["npy"])
    assert npy.shape == (28, 28, 3) and npy.dtype == np.float32
    from PIL import Image
    png = np.asarray(Image.open(reference / row["png"]))
    assert png.dtype == np.uint8 and png.min() == 0 and png.max() == 255  # cnnpref's normalisation
    settings = json.loads((reference / "sweep.json").read_text())
    assert settings["batch"] == {"gd": 2, "lbfgs": 1, "dgn_gd": 2, "dgn_lbfgs": 1}
    assert settings["layers"][0] == {"name": "conv1", "shape": [32, 28, 28], "units": [0, 1, 2]}
    pd = pytest.importorskip("pandas")
    frame = ld.sweeps.load_index(reference)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 24 and frame["final_activation"].notna().all()


def test_unit_result_does_not_depend_on_its_batch_mates(reference, tmp_path):
    """Units 1 and 2 rendered in other groups (other positions, mates, padding) give the same bytes."""
    other = tmp_path / "other"
    sweep("fashion", out_dir=other, **dict(FASHION, units="1:3"))
    ref, new = _view(reference), _view(other)
    for path, data in new["files"].items():
        assert ref["files"][path] == data, path
    assert all(row in ref["rows"] for row in new["rows"])
    assert len(new["files"]) == 2 * 2 * 4 * 2  # 2 layers x 2 units x 4 variants x (png, npy)


@pytest.mark.parametrize("variant", ["gd", "dgn_gd"])
def test_unit_result_equals_a_single_public_render(tmp_path, variant):
    """With one row per render, a sweep's unit is exactly the preset rendered alone with the seed."""
    from lucent_dgn.generators.small import fashion_generator
    from lucent_dgn.models.fashion import fashion_classifier
    sweep("fashion", "fc2", [3], {variant: FAST[variant]}, generator="fashion", seeds=5, batch_size=1,
          out_dir=tmp_path, progress=False)
    generator = fashion_generator() if variant == "dgn_gd" else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sweep's threads setting (the default, 1): products round by thread count
    try:
        result = ld.recipe(variant, "fc2", ld.unit_mask((10,), 3), generator, seed=5, **FAST[variant]).render(
            fashion_classifier(), progress=False)
    finally:
        torch.set_num_threads(threads)
    saved = np.load(tmp_path / f"units/fc2/{variant}/seed5/00003.npy")
    assert np.array_equal(saved, result.images[0] * np.float32(255.0))


@pytest.mark.subprocess
def test_process_pool_gives_the_same_units_even_when_a_worker_is_killed(reference, tmp_path, monkeypatch):
    flag = tmp_path / "killed"
    monkeypatch.setenv("LUCENT_DGN_TEST_KILL_FLAG", str(flag))
    monkeypatch.setenv("LUCENT_DGN_TEST_DRIVER", str(os.getpid()))
    summary = sweep(killing_fashion, out_dir=tmp_path / "pool", workers=2, **FASHION)
    assert flag.exists(), "no worker was killed"
    assert (summary.backend, summary.workers, summary.rendered) == ("process-pool", 2, 24)
    assert _view(tmp_path / "pool") == _view(reference)


@pytest.mark.subprocess
def test_ray_gives_the_same_dataset_even_when_an_actor_is_killed(reference, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    import logging
    flag = tmp_path / "killed"
    monkeypatch.setenv("LUCENT_DGN_TEST_KILL_FLAG", str(flag))
    monkeypatch.setenv("LUCENT_DGN_TEST_DRIVER", str(os.getpid()))
    tests = str(Path(__file__).resolve().parent)  # Ray's workers import killing_fashion from here
    path = os.pathsep.join([tests] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        plain = sweep("fashion", out_dir=tmp_path / "ray", ray="auto", workers=2, **FASHION)
        killed = sweep(killing_fashion, out_dir=tmp_path / "killed_ray", ray="auto", workers=2, **FASHION)
        assert ray.is_initialized()  # a session the caller started is left running
    finally:
        ray.shutdown()
    assert (plain.backend, plain.workers, plain.rendered) == ("ray", 2, 24)
    assert dataset_digest(tmp_path / "ray") == dataset_digest(reference)
    assert flag.exists(), "no actor was killed"
    assert killed.rendered == 24 and _view(tmp_path / "killed_ray") == _view(reference)


# -- resume and faults ---------------------------------------------------------------------------
def _cli_args(out: Path, options: Path):
    return ["sweep", "--model", "fashion", "--layers", "conv1", "fc2", "--units", "0:8", "--variants", "gd",
            "lbfgs", "--preset", "cnnpref", "--options", str(options), "--batch-size", "2", "--quiet",
            "--out", str(out)]


@pytest.mark.subprocess
def test_sigkill_of_the_driver_then_rerun_gives_the_uninterrupted_dataset(tmp_path):
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"gd": {"iter_n": 30, "space": "gray", "lr": 0.05, "decay": 0.0},
                                   "lbfgs": {"maxiter": 15, "space": "gray"}}))
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(ld.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "lucent_dgn.cli"] + _cli_args(killed, options), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    index = killed / "index.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if index.is_file() and index.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    finished = len(read_rows(killed))
    assert 0 < finished < 32, "the kill did not land mid-sweep"

    assert cli.main(_cli_args(killed, options)) == 0  # the rerun
    assert cli.main(_cli_args(tmp_path / "whole", options)) == 0
    rows = read_rows(killed)
    assert len(rows) == len({r["key"] for r in rows}) == 32
    assert dataset_digest(killed) == dataset_digest(tmp_path / "whole")
    assert not list(killed.rglob("*.part"))


def test_rerun_redoes_half_done_units_and_skips_finished_ones(reference, tmp_path):
    import shutil
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    lines = (out / "index.jsonl").read_bytes().splitlines(keepends=True)
    gone = json.loads(lines[5])  # files written, row never appended
    (out / "index.jsonl").write_bytes(b"".join(lines[:5] + lines[6:-1]) + lines[-1][:40])  # last line cut off
    (out / gone["npy"]).unlink()
    (out / "units/fc2/gd/seed0/.00001.png.abc.part").write_bytes(b"half")
    summary = sweep("fashion", out_dir=out, **FASHION)
    assert (summary.skipped, summary.rendered) == (22, 2)
    assert dataset_digest(out) == dataset_digest(reference)
    assert sweep("fashion", out_dir=out, **FASHION).rendered == 0


class NaNAt(nn.Module):
    """Identity, except that unit ``k`` becomes log(-x^2 - 1) = NaN (with a finite local gradient)."""

    def __init__(self, k) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        if self.k is None:
            return x
        hit = torch.zeros(x.shape[1], dtype=torch.bool)
        hit[self.k] = True
        return torch.where(hit, torch.log(-x * x - 1.0), x)


class TinyNet(nn.Module):
    """3x12x12 input -> conv (4, 10, 10) -> mean -> fc -> out (3,); unit ``nan_unit`` of ``out`` is NaN."""

    input_size = 12

    def __init__(self, nan_unit=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4, 3)
        self.out = NaNAt(nan_unit)

    def forward(self, x):
        return self.out(self.fc(self.flat(self.pool(self.conv(x)))))


def test_a_nan_unit_is_recorded_and_the_sweep_goes_on(tmp_path):
    net = TinyNet(nan_unit=1)
    torch.set_num_threads(1)
    rng = torch.random.get_rng_state()
    summary = sweep(net, "out", "all", {"gd": {"iter_n": 3}}, out_dir=tmp_path / "nan", batch_size=2, threads=2,
                    progress=False)
    assert torch.get_num_threads() == 1 and torch.equal(torch.random.get_rng_state(), rng)  # left as it was
    assert (summary.rendered, summary.failed) == (3, 1)
    rows = {r["unit"]: r for r in read_rows(tmp_path / "nan")}
    assert rows[1]["status"] == "failed" and rows[1]["error"].startswith("NonFiniteLossError")
    assert rows[1]["png"] is None and rows[0]["status"] == rows[2]["status"] == "ok"
    # unit 0's render was retried alone after its group failed: same bytes as in a healthy group
    clean = tmp_path / "clean"
    sweep(net, "out", [0, 2], {"gd": {"iter_n": 3}}, out_dir=clean, batch_size=2, threads=2, progress=False)
    for unit in (0, 2):
        assert (clean / rows[unit]["npy"]).read_bytes() == (tmp_path / "nan" / rows[unit]["npy"]).read_bytes()
    again = sweep(net, "out", "all", {"gd": {"iter_n": 3}}, out_dir=tmp_path / "nan", batch_size=2, threads=2,
                  progress=False)
    assert again.rendered == 0  # recorded failures count as done ...
    retried = sweep(net, "out", "all", {"gd": {"iter_n": 3}}, out_dir=tmp_path / "nan", batch_size=2, threads=2,
                    progress=False, retry_failed=True)
    assert (retried.rendered, retried.failed, len(read_rows(tmp_path / "nan"))) == (1, 1, 3)  # ... unless asked


# -- bad inputs fail before any work -------------------------------------------------------------
@pytest.mark.parametrize("change, error, words", [
    (dict(layers=["conv9"]), LayerNotFoundError, ["conv9", "Did you mean"]),
    (dict(units=[1, 40]), ConfigError, ["[0, 32)", "conv1", "40"]),
    (dict(variants=["gd", "dgn_gdd"]), ConfigError, ["dgn_gdd", "Did you mean 'dgn_gd'"]),
    (dict(variants={"gd": {"iter": 3}}), ConfigError, ["iter", "Did you mean 'iter_n'"]),
    (dict(variants={"gd": {"batch": 3}}), ConfigError, ["batch", "batch_size="]),
    (dict(variants=["dgn_gd"], generator=None), ConfigError, ["generator", "dgn_gd"]),
    (dict(seeds=[-1]), ConfigError, ["seeds", "-1"]),
    (dict(batch_size=0), ConfigError, ["batch_size"]),
])
def test_bad_arguments_fail_before_any_work(tmp_path, change, error, words):
    out = tmp_path / "out"
    kwargs = dict(FASHION, layers=["conv1"], variants=["gd"])
    kwargs.update(change)
    with pytest.raises(error) as info:
        sweep("fashion", out_dir=out, **kwargs)
    for word in words:
        assert word in str(info.value)
    assert not out.exists()


def test_unwritable_output_directory_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="a directory that can be created.*file.txt"):
        sweep("fashion", out_dir=blocker / "sweep", **dict(FASHION, variants=["gd"]))


def test_directory_of_a_different_sweep_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    small = dict(FASHION, layers=["fc2"], units=[0], variants={"gd": FAST["gd"]})
    sweep("fashion", out_dir=out, **small)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    changed = dict(small, variants={"gd": dict(FAST["gd"], iter_n=5)})
    with pytest.raises(ConfigError, match=r"different sweep \(settings differ in: variants.gd.iter_n\)"):
        sweep("fashion", out_dir=out, **changed)
    with pytest.raises(ConfigError, match="holds other files"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "notes.txt").write_text("mine")
        sweep("fashion", out_dir=tmp_path / "busy", **small)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["sweep", "--layers", "conv1", "--units", "99", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lucent-dgn: error: `units` must be")
    assert cli.main(["atlas", str(tmp_path)]) == 2
    assert "sweep directory" in capsys.readouterr().err


# -- units and dataset examples ------------------------------------------------------------------
def test_unit_selections(tmp_path):
    assert resolve_units("all", 5, "l") == [0, 1, 2, 3, 4]
    assert resolve_units("::2", 5, "l") == [0, 2, 4] and resolve_units("1:3", 5, "l") == [1, 2]
    assert resolve_units("3,1,3", 5, "l") == [1, 3] and resolve_units(range(3, 5), 5, "l") == [3, 4]
    np.save(tmp_path / "mask.npy", np.array([True, False, True, False, False]))
    assert resolve_units(str(tmp_path / "mask.npy"), 5, "l") == [0, 2]
    (tmp_path / "units.txt").write_text("4 0\n")
    assert resolve_units(tmp_path / "units.txt", 5, "l") == [0, 4]
    with pytest.raises(ConfigError, match=r"\(5,\)"):
        resolve_units(np.ones(4, bool), 5, "l")
    with pytest.raises(ConfigError, match="at least one unit"):
        resolve_units("3:3", 5, "l")


@pytest.fixture
def image_folder(tmp_path) -> Path:
    from PIL import Image
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(13):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def test_top_k_examples_match_a_full_sort(image_folder):
    net = TinyNet()
    source = ImageSource(str(image_folder), 12, 3)
    top = top_k_examples(net, ["conv", "fc"], source, k=4, batch_size=5)  # three batches: streamed
    with torch.no_grad():
        x = source.load(range(13))
        conv = net.conv(x)[:, :, 5, 5].numpy()  # the centre unit of each channel
        fc = net(x).numpy()
    for name, acts in (("conv", conv), ("fc", fc)):
        for unit in range(acts.shape[1]):
            order = sorted(range(13), key=lambda i: (-acts[i, unit], i))[:4]
            assert top[name]["index"][unit] == order
            assert np.allclose(top[name]["activation"][unit], acts[order, unit], atol=1e-6)


def test_sweep_stores_dataset_examples_with_the_rows(image_folder, tmp_path):
    out = tmp_path / "ex"
    sweep(TinyNet(), ["conv", "fc"], "0:2", {"gd": {"iter_n": 2}}, out_dir=out, examples=str(image_folder), top_k=3,
          progress=False)
    rows = read_rows(out)
    assert all(len(r["examples"]) == 3 for r in rows)
    for r in rows:
        acts = [e["activation"] for e in r["examples"]]
        assert acts == sorted(acts, reverse=True) and all((out / e["file"]).is_file() for e in r["examples"])
    digest = dataset_digest(out)
    sweep(TinyNet(), ["conv", "fc"], "0:2", {"gd": {"iter_n": 2}}, out_dir=out, examples=str(image_folder), top_k=3,
          progress=False)
    assert dataset_digest(out) == digest
