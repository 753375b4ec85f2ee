"""Module layering: no import cycles (also none hidden inside functions), and each module imports first.

The static check reads every ``import`` statement of the package, those inside functions too, so a
cycle cannot hide behind a lazy import. The dynamic check imports each module first in a fresh
interpreter state in which the top-level package ``lucent_dgn/__init__`` (which imports everything)
is replaced by a bare package, so only what the module itself imports is loaded.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lucent_dgn"

#: Known cycles through function-level imports, each to be removed on its own: the training
#: command reuses the top-level command's model loader.
KNOWN_CYCLES = [{"lucent_dgn.cli", "lucent_dgn.training.cli"}]


def _modules() -> Dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Set[str]:
    """Package modules that ``name`` imports anywhere in its source (module level or in functions)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, else a name in base
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _closure(start: str) -> Set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _cycles() -> List[Set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[Set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read():
    assert GRAPH["lucent_dgn.weights"] >= {"lucent_dgn._io", "lucent_dgn.caffemodel"}
    assert "lucent_dgn.models.alexnet" in GRAPH["lucent_dgn.convert"]


def test_no_import_cycles_not_even_through_function_level_imports():
    cycles = [sorted(c) for c in _cycles() if c not in KNOWN_CYCLES]
    assert cycles == []


def test_the_caffe_reader_is_a_leaf():
    reader = _closure("lucent_dgn.caffemodel")
    assert reader <= {"lucent_dgn._protobuf", "lucent_dgn._io", "lucent_dgn.errors"}
    assert _closure("lucent_dgn._protobuf") == set()


def test_weight_loading_and_generators_do_not_depend_on_the_classifiers():
    for name in ("lucent_dgn.weights", "lucent_dgn._asset_io", "lucent_dgn.generators.small",
                 "lucent_dgn.generators.deepsim"):
        assert not any(m.startswith("lucent_dgn.models") for m in _closure(name)), name


_IMPORT_EACH = r"""
import importlib, json, sys, types
names = json.loads(sys.argv[1])
root = sys.argv[2]
loaded, errors = {}, {}
for name in names:
    for key in [k for k in sys.modules if k == "lucent_dgn" or k.startswith("lucent_dgn.")]:
        del sys.modules[key]
    bare = types.ModuleType("lucent_dgn")
    bare.__path__ = [root + "/lucent_dgn"]
    sys.modules["lucent_dgn"] = bare
    try:
        importlib.import_module(name)
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
    loaded[name] = sorted(k for k in sys.modules if k.startswith("lucent_dgn."))
print(json.dumps({"loaded": loaded, "errors": errors}))
"""


@pytest.fixture(scope="module")
def imported_alone():
    names = [n for n in MODULES if n != "lucent_dgn"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names), str(ROOT)], capture_output=True,
                          text=True, env=env, cwd=str(ROOT), check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_module_imports_first(imported_alone):
    assert imported_alone["errors"] == {}


def test_importing_the_caffe_reader_loads_no_architecture(imported_alone):
    loaded = imported_alone["loaded"]
    assert set(loaded["lucent_dgn.caffemodel"]) == {"lucent_dgn.caffemodel", "lucent_dgn._protobuf",
                                                    "lucent_dgn._io", "lucent_dgn.errors"}
    assert "lucent_dgn.caffemodel" in loaded["lucent_dgn.weights"]
    for name in ("lucent_dgn.weights", "lucent_dgn.generators.deepsim", "lucent_dgn.generators"):
        assert not any(m.startswith("lucent_dgn.models") for m in loaded[name]), name
