"""Every ```python block of README.md runs as written, alone, in a fresh interpreter, and prints.

A block must be self-contained (no names from another block), cheap enough to run as it stands
(a few steps), and print what it computes. Nothing is injected: the blocks run exactly as a
reader would paste them, in an empty working directory.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks(text: str) -> List[Tuple[int, str]]:
    """(first line number, source) of every fenced block whose info string is ``python``."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if re.match(r"^\s*```python\s*$", lines[i]):
            start, body = i + 2, []
            i += 1
            while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i])
                i += 1
            blocks.append((start, "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


def test_block_extraction_finds_every_fence():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n  ```python\nprint(2)\n  ```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "print(2)\n")]


@pytest.mark.subprocess
@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs_alone_and_prints(tmp_path, line, source):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, f"README.md block at line {line} failed:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"README.md block at line {line} prints nothing"
    assert list(tmp_path.iterdir()) == [], f"README.md block at line {line} left files in the working directory"
