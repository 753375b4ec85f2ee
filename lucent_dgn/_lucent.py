"""Lucent, imported once and quietly.

Lucent's transforms import kornia 0.4, whose ``torch.jit.script`` decorators make torch >= 2.9 emit
``FutureWarning: `torch.jit.script` is deprecated`` once, when kornia is first imported. This
module imports Lucent's objectives and kornia inside a ``warnings.catch_warnings()`` block that
ignores only that warning, so neither ``import lucent_dgn`` nor a later
``from lucent.optvis import render`` prints it. The process's warning filters are left as they
were. kornia does not import torchvision; Lucent's render and transform modules (which do) are
not imported here.
"""
from __future__ import annotations

import warnings

__all__ = ["Objective"]

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import kornia  # noqa: F401  (Lucent's dependency; imported here for its one-time warning)
    from lucent.optvis.objectives import Objective
