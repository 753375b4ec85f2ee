"""Optimizers by name. Each optimizer has ``run(problem)`` (see :mod:`lucent_dgn.render.problem`).

| name | optimizer |
|---|---|
| ``"gd"`` | :class:`~lucent_dgn.render.gd.MomentumGD` (cnnpref's momentum GD, default settings) |
| ``"adam"`` | :class:`~lucent_dgn.render.torch_optim.TorchOptimizer` over ``torch.optim.Adam(lr=0.05)`` |
| ``"lbfgs"`` | ``torch.optim.LBFGS`` with strong Wolfe line search (unbounded problems) |
| ``"lbfgsb"`` | :class:`~lucent_dgn.render.lbfgs.LBFGSB`, bounded L-BFGS in torch |
| ``"scipy-lbfgsb"`` | :class:`~lucent_dgn.render.lbfgs.ScipyLBFGSB`, SciPy's L-BFGS-B (cnnpref's solver) |
| ``"cmaes"`` | :class:`~lucent_dgn.render.search.CMAES`, gradient-free (forward only) |
| ``"ga"`` | :class:`~lucent_dgn.render.search.GeneticSearch`, XDream-style genetic algorithm |
| ``"random-search"`` | :class:`~lucent_dgn.render.search.RandomSearch` |
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from ..errors import ConfigError, describe

__all__ = ["make_optimizer", "OPTIMIZER_NAMES"]


def _gd(**kw):
    from .gd import MomentumGD
    return MomentumGD(**kw)


def _adam(**kw):
    from .torch_optim import adam
    return adam(**kw)


def _lbfgs(**kw):
    from .torch_optim import lbfgs
    return lbfgs(**kw)


def _lbfgsb(**kw):
    from .lbfgs import LBFGSB
    return LBFGSB(**kw)


def _scipy(**kw):
    from .lbfgs import ScipyLBFGSB
    return ScipyLBFGSB(**kw)


def _search(kind: str):
    def make(**kw):
        from . import search
        return getattr(search, kind)(**kw)
    return make


_FACTORIES: Dict[str, Callable[..., Any]] = {
    "gd": _gd, "adam": _adam, "lbfgs": _lbfgs, "lbfgsb": _lbfgsb, "scipy-lbfgsb": _scipy,
    "cmaes": _search("CMAES"), "ga": _search("GeneticSearch"), "random-search": _search("RandomSearch"),
}
OPTIMIZER_NAMES = tuple(_FACTORIES)


def make_optimizer(name: str, **options: Any) -> Any:
    """Build an optimizer by name with keyword options (see the table above)."""
    key = str(name).lower().replace("_", "-")
    if key not in _FACTORIES:
        import difflib
        close = difflib.get_close_matches(key, OPTIMIZER_NAMES, n=2)
        hint = f"Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(describe("optimizer", f"one of {list(OPTIMIZER_NAMES)}", name, hint))
    return _FACTORIES[key](**options)
