"""Lucent, imported once and quietly.

Lucent's transforms import kornia 0.4, whose ``torch.jit.script`` decorators make torch >= 2.9 emit
``FutureWarning: `torch.jit.script` is deprecated`` once, when kornia is first imported. This
module imports Lucent's objectives and kornia inside a ``warnings.catch_warnings()`` block that
ignores only that warning, so neither ``import lucent_dgn`` nor a later
``from lucent.optvis import render`` prints it. The process's warning filters are left as they
were. kornia does not import torchvision; Lucent's render and transform modules (which do) are
not imported here. Lucent is installed with ``pip install --no-deps torch-lucent==0.1.8``; a
missing Lucent is an ImportError that says so.
"""
from __future__ import annotations

import warnings

__all__ = ["Objective"]

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    try:
        import kornia  # noqa: F401  (Lucent's dependency; imported here for its one-time warning)
        from lucent.optvis.objectives import Objective
    except ImportError as err:
        raise ImportError(f"lucent-dgn needs Lucent ({err}). Install it without the test tools its own dependency "
                          "list adds: pip install --no-deps torch-lucent==0.1.8") from err
