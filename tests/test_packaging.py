"""Packaging and test-suite hygiene, checked statically (no subprocess, no network).

* Runtime dependencies hold no test tools, and cover every third-party module Lucent's runtime
  modules import (torch-lucent is installed with ``--no-deps``; its own list adds test tools).
* The training command does not import the top-level command line (no import cycle).
* Every test that starts a subprocess or a notebook kernel carries the marker ``make test-fast``
  deselects (``subprocess`` / ``notebooks``), and the markers are registered.
"""
from __future__ import annotations

import ast
import configparser
import importlib.util
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CONFIG = configparser.ConfigParser()
CONFIG.read(ROOT / "setup.cfg")

#: import name -> distribution name, where they differ.
DISTRIBUTION = {"PIL": "pillow", "IPython": "ipython", "sklearn": "scikit-learn", "yaml": "pyyaml"}
TEST_TOOLS = {"pytest", "pytest-mock", "coverage", "coveralls", "scikit-learn", "hypothesis", "torch-lucent"}


def requirement_names(text: str) -> Set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~;\[ ]", line, 1)[0].strip().lower())
    return names


INSTALL_REQUIRES = requirement_names(CONFIG["options"]["install_requires"])


def imported_modules(paths: Iterable[Path]) -> Set[str]:
    """Top-level names of every module imported (at any depth of the code) by ``paths``."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_runtime_dependencies_hold_no_test_tools():
    assert not INSTALL_REQUIRES & TEST_TOOLS, INSTALL_REQUIRES & TEST_TOOLS


def test_runtime_dependencies_cover_what_lucent_imports():
    spec = importlib.util.find_spec("lucent")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch-lucent is not installed")
    lucent = Path(list(spec.submodule_search_locations)[0])
    runtime = sorted((lucent / "optvis").rglob("*.py")) + sorted((lucent / "misc" / "io").rglob("*.py"))
    third_party = {m for m in imported_modules(runtime) if m not in sys.stdlib_module_names and m != "lucent"}
    needed = {DISTRIBUTION.get(m, m).lower() for m in third_party}
    assert needed <= INSTALL_REQUIRES, f"Lucent imports {sorted(needed - INSTALL_REQUIRES)} at run time"


def test_readme_says_how_to_install_cpu_torch_and_lucent():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    assert "pip install --no-deps torch-lucent==0.1.8" in readme
    assert "--no-deps torch-lucent==0.1.8" in (ROOT / "Makefile").read_text()


def test_training_command_does_not_import_the_command_line():
    for path in (ROOT / "lucent_dgn" / "training").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                target = ("." * node.level) + (node.module or "")
                assert target not in ("..cli", "lucent_dgn.cli"), f"{path.name} imports the top-level CLI"
                assert not (node.level == 2 and node.module is None and any(a.name == "cli" for a in node.names)), \
                    f"{path.name} imports the top-level CLI"


# ------------------------------------------------------------------------------------ markers
STARTS_PROCESSES = re.compile(r"\b(subprocess\.(run|Popen|check_output|call)|NotebookClient)\b")


def _markers(decorators: List[ast.expr]) -> Set[str]:
    names = set()
    for d in decorators:
        for node in ast.walk(d):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and \
                    isinstance(node.value.value, ast.Name) and node.value.value.id == "pytest" and \
                    node.value.attr == "mark":
                names.add(node.attr)
    return names


def _module_markers(tree: ast.Module) -> Set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return _markers([node.value])
    return set()


def _process_starters(tree: ast.Module, source: str) -> Set[str]:
    """Module-level functions that start a process, directly or through another such function."""
    functions: Dict[str, ast.FunctionDef] = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    starters = {name for name, fn in functions.items() if STARTS_PROCESSES.search(ast.get_source_segment(source, fn))}
    changed = True
    while changed:
        changed = False
        for name, fn in functions.items():
            calls = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            if name not in starters and calls & starters:
                starters.add(name)
                changed = True
    return starters


def test_tests_that_start_processes_are_marked():
    """A test starts a process itself, through a helper, or through a fixture that does."""
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        module = _module_markers(tree)
        starters = _process_starters(tree, source)
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
            uses = fn.name in starters or bool({a.arg for a in fn.args.args} & starters)
            if uses and not ({"subprocess", "notebooks"} & (module | _markers(fn.decorator_list))):
                unmarked.append(f"{path.name}::{fn.name}")
    assert not unmarked, f"tests that start processes without a subprocess/notebooks marker: {unmarked}"


def test_markers_of_test_fast_are_registered():
    markers = CONFIG["tool:pytest"]["markers"]
    for name in ("slow", "notebooks", "subprocess"):
        assert re.search(rf"^\s*{name}:", markers, flags=re.MULTILINE), name
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'^test-fast:.*\n\t.*-m "not notebooks and not subprocess and not slow"', makefile, re.MULTILINE)
