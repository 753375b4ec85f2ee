"""What ``import lucent_dgn`` costs and changes, measured in fresh interpreters.

* It imports neither torchvision nor the generator zoo nor the torchvision model zoo; they load
  on first use (``ld.models``, ``ld.generators``).
* It leaves the process's warning filters as they were, and prints no warning, also under
  ``-W error``; afterwards, importing Lucent's render module (which imports kornia) does not
  print kornia's ``torch.jit.script`` FutureWarning either.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.subprocess


def run_python(code: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=180)


HEAVY = ("torchvision", "lucent_dgn.models.zoo", "lucent_dgn.generators", "lucent_dgn.generators.deepsim",
         "lucent.optvis.render")


def test_import_loads_neither_torchvision_nor_the_generator_zoo():
    proc = run_python(f"""
        import json, sys
        import lucent_dgn as ld
        after_import = [m for m in {HEAVY!r} if m in sys.modules]
        model = ld.models.fashion_classifier()          # the shipped networks need no torchvision
        after_model = [m for m in {HEAVY!r} if m in sys.modules]
        generator = ld.generators.fashion_generator()   # first use imports the generators
        names = ld.models.available_models()            # and the torchvision zoo
        print(json.dumps({{"import": after_import, "model": after_model,
                           "later": [m for m in {HEAVY!r} if m in sys.modules],
                           "dir": all(n in dir(ld) for n in ld.__all__)}}))
    """)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["import"] == [] and found["model"] == []
    assert {"torchvision", "lucent_dgn.models.zoo", "lucent_dgn.generators"} <= set(found["later"])
    assert found["dir"]


def test_import_leaves_warning_filters_unchanged_and_silences_only_kornias_warning():
    proc = run_python("""
        import json, warnings
        before = list(warnings.filters)
        import lucent_dgn
        unchanged = list(warnings.filters) == before
        from lucent.optvis import render  # imports kornia's transforms: their warning was consumed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("a FutureWarning of the user's own", FutureWarning)
        print(json.dumps({"unchanged": unchanged, "still_shown": [str(w.message) for w in caught]}))
    """, "-W", "error::FutureWarning")
    assert proc.returncode == 0, proc.stderr  # -W error: any FutureWarning on import would have failed
    found = json.loads(proc.stdout)
    assert found["unchanged"] is True
    assert found["still_shown"] == ["a FutureWarning of the user's own"]  # no global filter swallows it
    assert "FutureWarning" not in proc.stderr and "jit.script" not in proc.stderr


def test_cli_help_imports_no_torchvision():
    proc = run_python("""
        import sys
        from lucent_dgn.cli import main
        try:
            main(["render", "--help"])
        finally:
            print("torchvision" in sys.modules, file=sys.stderr)
    """)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
