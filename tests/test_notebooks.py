"""Every notebook runs top to bottom with small settings; a failing cell fails its test.

The first code cell of each notebook (tagged ``parameters``) holds its knobs. The tests insert a
cell right after it that assigns small values (:data:`SMALL`), then execute the notebook with
nbclient in a kernel that runs this interpreter (``sys.executable``), so a fresh clone needs only
``pip install -e .[test]``. Figures use matplotlib's Agg backend; nothing is written to the repo.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "lucent-dgn-tests"
CELL_TIMEOUT_S = 180

#: Small settings per notebook (knob -> value): a few steps, few units, small images.
SMALL: Dict[str, Dict[str, Any]] = {
    "01_quickstart.ipynb": {"STEPS": 3},
    "02_cnnpref_variants.ipynb": {"STEPS": 3, "UNITS": [1, 3]},
    "03_composing_objectives.ipynb": {"STEPS": 3, "UNITS": [1, 3], "BATCH": 2},
    "04_captum.ipynb": {"STEPS": 3, "N_IMAGES": 8, "IG_STEPS": 4, "IMAGES": "generator"},
    "05_imagenet.ipynb": {"STEPS": 2, "SIZE": 64, "CLASSES": {11: "goldfinch"}, "ALEXNET": "random"},
    "07_feature_inversion.ipynb": {"STEPS": 3, "N_IMAGES": 3},
    "06_closed_loop_neuron_control.ipynb": {"GENERATIONS": 3, "POPSIZE": 6},
}

def _notebook_paths():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _parameters_cell(nb) -> int:
    """Index of the first code cell; it must be tagged ``parameters``."""
    index = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    assert "parameters" in nb.cells[index].metadata.get("tags", []), "the first code cell holds the knobs"
    return index


def _inject(nb, knobs: Dict[str, Any]) -> None:
    """Insert a cell after the parameters cell that overrides ``knobs`` (each must be a knob there)."""
    index = _parameters_cell(nb)
    source = nb.cells[index].source
    missing = [k for k in knobs if not re.search(rf"^{k}\s*=", source, flags=re.MULTILINE)]
    assert not missing, f"knobs not in the parameters cell: {missing}"
    lines = [f"{name} = {value!r}" for name, value in knobs.items()]
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(lines)))


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory) -> str:
    """A kernelspec that starts this interpreter's ipykernel, whatever kernels are installed."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "lucent-dgn tests",
                                                  "language": "python"}))
    return str(root)


def test_every_notebook_has_small_settings():
    names = [p.name for p in _notebook_paths()]
    assert names and sorted(SMALL) == names


@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    _parameters_cell(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"outputs left in {path.name}"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_dirs, tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    nb = nbformat.read(path, as_version=4)
    _inject(nb, SMALL[path.name])
    manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dirs]))
    client = nbclient.NotebookClient(nb, km=manager, timeout=CELL_TIMEOUT_S, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{str(err)[-3000:]}", pytrace=False)
    noise = [out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
             if out.get("output_type") == "stream" and out.get("name") == "stderr"
             and any(w in out.get("text", "") for w in ("TqdmWarning", "FutureWarning", "IProgress not found"))]
    assert not noise, f"{path.name} prints warnings: {noise[0][:500]}"
