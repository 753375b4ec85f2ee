"""Gradient-free search over the parameterization's variable: CMA-ES, an XDream-style genetic
algorithm and random search.

Each optimizer works two ways:

* ``optimizer.run(problem)`` inside :func:`lucent_dgn.render` (one outer step = one generation:
  the population of P candidates for each of the N batch items is scored by
  ``problem.evaluate_candidates`` as one forward-only batch of P x N images, no backward);
* ask/tell, for targets outside torch (a recorded neuron): ``start(x0, lower, upper)``, then
  ``ask() -> (P, R, D)`` and ``tell(losses (P, R))`` per generation; :class:`lucent_dgn.ClosedLoop`
  wraps this with images, scores and a checkpoint.

Rows: each batch item is searched independently (R = N rows of D coordinates). When the objective's
loss is not split by item, the whole (N, ...) variable becomes one row (the first generation is
then spent and the search restarts jointly).

Coordinates and bounds: the search runs in a *genotype* space where one unit is the width of the
box (``param.bounds()``) of a coordinate, so ``sigma0`` and mutation sizes are fractions of the
range whatever the code's scale. A genotype maps to a value inside the box, so every candidate lies
inside the bounds, without resampling: ``bounds="clip"`` (default) clips it (the box's faces are
reached with positive probability, which suits activation maximisation, whose optima sit on many
faces: on the shipped Fashion-MNIST pair CMA-ES reached 10-12 instead of 5.5 after 1000 evaluations),
``bounds="reflect"`` folds it back at the edges (a triangle wave). With ``"clip"`` the strategy is
told genotypes moved back to at most ``margin`` box widths beyond a face (Lamarckian repair, as the
``cmaes`` library does with its own bounds): with no limit (``margin=None``) its mean can drift far
beyond a face, where the loss is flat, and stay there once the step size has shrunk (on a bounded
sphere it then misses the optimum); with ``margin=0`` it reaches faces less often. Measured on the
shipped pair at 1000 evaluations: 9.0 (margin 0), 10.0 (0.1, default, still converges on the
bounded sphere of the tests), 11.7 (0.3), 12.0 (None); see benchmarks/RESULTS.md. Coordinates with
an infinite side use ``scale`` as their unit. Coordinates whose bounds are equal in every row are
left out of the search (they keep their value).

Determinism: every generation of every row draws from its own generator seeded by
``(seed, row, generation)`` (``numpy.random.SeedSequence``); global RNGs are never used or reseeded,
so the same seed gives bit-identical candidates, and a search restored from :meth:`state_dict`
continues exactly as the uninterrupted one.

Library: CMA-ES is ``cmaes`` (CyberAgent's, the CMA-ES of Optuna; maintained, numpy only). It was
chosen over pycma (``cma``) because its ask/tell keeps its random state in a per-instance generator
(pycma samples from and reseeds numpy's global RNG unless its ``randn`` option is replaced, and
writes log files by default), its state is plain arrays and numbers (checkpoints without pickle),
and its separable variant (``SepCMA``) costs O(D) per sample: 8 ms per generation of 40 at 4096
dimensions on one core, where a full covariance took 0.9 s per generation already at 1024
dimensions (an eigendecomposition per generation, O(D^3)). Bounds are handled here, not by either library (see above). ``cmaes`` is a
runtime dependency, not an extra: these optimizers are public API like the gradient ones, and the
package is small and pure Python on numpy, so an extra would only add an install step and an
import error to explain.

The variable after each step holds, per item, the best candidate evaluated so far (its record is
the step's history entry); the strategy itself (the CMA mean, the GA population) is in
:meth:`state_dict`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..errors import BoundsError, ConfigError, ShapeError, describe
from ._lbfgs_common import _check, _num, box_bounds
from .problem import Problem

__all__ = ["SearchOptimizer", "CMAES", "GeneticSearch", "RandomSearch"]

logger = logging.getLogger(__name__)

_SEED_MAX = 2**63 - 1


def _rng(seed: int, row: int, generation: int) -> np.random.Generator:
    """The generator of one row and generation (independent of every other draw)."""
    return np.random.default_rng(np.random.SeedSequence([seed, row, generation]))


def _popsize(value: Optional[int], name: str = "popsize", minimum: int = 2) -> Optional[int]:
    if value is None:
        return None
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
    return int(_check(name, value, ok, f"None or an integer >= {minimum}"))


def _positive(name: str, value: Any) -> float:
    value = _num(name, value)
    return float(_check(name, value, 0 < value < float("inf"), "a finite number > 0"))


def _seed(seed: Optional[int]) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy % _SEED_MAX)  # fresh OS entropy; global RNG untouched
    ok = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed <= _SEED_MAX
    return int(_check("seed", seed, ok, f"None or an integer in [0, {_SEED_MAX}]"))


class _Box:
    """Genotype <-> value maps of R rows x D coordinates (float64), see the module docstring."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, scale: float, fold: str = "reflect") -> None:
        self.lower, self.upper, self.scale, self.fold = lower, upper, scale, fold
        lo_f, hi_f = np.isfinite(lower), np.isfinite(upper)
        self.both, self.lo_only, self.hi_only = lo_f & hi_f, lo_f & ~hi_f, hi_f & ~lo_f
        self.width = np.where(self.both, upper - lower, 1.0)
        self.free = ~(self.both & (self.width == 0)).all(0)  # (D,) coordinates searched

    def to_x(self, y: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        """Values (..., R, D) of genotypes y (..., R, D_free); fixed coordinates from ``fixed`` (R, D)."""
        x = np.broadcast_to(fixed, y.shape[:-1] + fixed.shape[-1:]).copy()
        lo, hi, w, s = (a[:, self.free] for a in (self.lower, self.upper, self.width, np.full_like(self.width,
                                                                                                   self.scale)))
        both, lo_only, hi_only = (m[:, self.free] for m in (self.both, self.lo_only, self.hi_only))
        if self.fold == "reflect":
            u = np.mod(y, 2.0)
            tri, mag = np.where(u <= 1.0, u, 2.0 - u), np.abs(y)
        else:  # clip
            tri, mag = np.clip(y, 0.0, 1.0), np.maximum(y, 0.0)
        value = np.where(both, lo + w * tri,
                         np.where(lo_only, lo + s * mag,
                                  np.where(hi_only, hi - s * mag, s * y)))
        x[..., self.free] = np.where(both, np.clip(value, lo, hi), value)  # clip: rounding at the edges
        return x

    def repair(self, y: np.ndarray, margin: float) -> np.ndarray:
        """Genotypes (..., R, D_free) moved back to at most ``margin`` box widths beyond the faces."""
        both, one = (m[:, self.free] for m in (self.both, self.lo_only | self.hi_only))
        return np.where(both, np.clip(y, -margin, 1.0 + margin), np.where(one, np.maximum(y, -margin), y))

    def to_y(self, x: np.ndarray) -> np.ndarray:
        """Genotypes (R, D_free) of values x (R, D) inside the box (the inverse of :meth:`to_x` there)."""
        x = x[:, self.free]
        lo, hi, w = (a[:, self.free] for a in (self.lower, self.upper, self.width))
        both, lo_only, hi_only = (m[:, self.free] for m in (self.both, self.lo_only, self.hi_only))
        safe_w = np.where(w > 0, w, 1.0)
        return np.where(both, np.where(w > 0, (x - lo) / safe_w, 0.0),
                        np.where(lo_only, (x - lo) / self.scale,
                                 np.where(hi_only, (hi - x) / self.scale, x / self.scale)))


class SearchOptimizer:
    """Base of the gradient-free optimizers: incumbents, box, rows, ask/tell and ``run(problem)``.

    Subclasses implement ``_init_rows(y0)``, ``_ask_rows() -> (P, R, D_free)`` genotypes and
    ``_tell_rows(y, losses)``, and their state in ``_state()`` / ``_load_state()``.

    Args:
        popsize: candidates per item and generation (P).
        seed: seed of the search's own generators (None: fresh entropy, kept in ``seed``).
        scale: the genotype unit of coordinates with an infinite bound (default 1).
        bounds: ``"clip"`` (default) or ``"reflect"``: how genotypes map into the box (see the module).
        margin: with ``"clip"``, how far beyond a face (box widths) told genotypes may stay (0.1;
            None = no limit).
        max_batch: at most this many images per forward pass in ``run`` (None: P x N at once).

    After ``run``/``tell``: ``generation``, ``n_evals`` (candidates scored per item),
    ``best_x`` (R, D), ``best_loss`` (R,), ``history`` (per generation: mean and best loss per row).
    """

    kind = "search"

    def __init__(self, popsize: Optional[int], seed: Optional[int], scale: float, max_batch: Optional[int],
                 bounds: str = "clip", margin: Optional[float] = 0.1) -> None:
        self._popsize = _popsize(popsize)
        self.seed = _seed(seed)
        self.scale = _positive("scale", scale)
        self.max_batch = _popsize(max_batch, "max_batch", 1)
        self.bounds = str(_check("bounds", bounds, bounds in ("clip", "reflect"), "'clip' or 'reflect'"))
        self.margin = None if margin is None else float(_check("margin", margin, isinstance(margin, (int, float))
                                                               and 0 <= margin < float("inf"),
                                                               "None or a finite number >= 0"))
        self.generation, self.n_evals = 0, 0
        self.best_x: Optional[np.ndarray] = None
        self.best_loss: Optional[np.ndarray] = None
        self.history: List[Dict[str, np.ndarray]] = []
        self._box: Optional[_Box] = None
        self._x0: Optional[np.ndarray] = None
        self._pending: Optional[np.ndarray] = None  # genotypes asked, not yet told

    # ---------------------------------------------------------------------- ask/tell
    @property
    def popsize(self) -> int:
        """Candidates per item and generation (P)."""
        if self._popsize is None:
            raise ConfigError("The population size is known once the search has started (start()).")
        return self._popsize

    @property
    def rows(self) -> int:
        return 0 if self._x0 is None else int(self._x0.shape[0])

    def start(self, x0: Any, lower: Any = None, upper: Any = None) -> None:
        """Begin a search from values x0 (R rows, D >= 2 coordinates) inside the box [lower, upper]
        (each broadcastable to x0; None = unbounded on that side). x0 is clipped into the box.

        Raises:
            ShapeError: x0 is not (R, D) with D >= 2.
            BoundsError: NaN bounds, lower > upper, bounds that do not broadcast, or fewer than two
                coordinates with lower < upper.
            ConfigError: x0 has NaN or infinite values.
        """
        x0 = np.array(x0, dtype=np.float64, copy=True)
        if x0.ndim != 2 or x0.shape[1] < 2 or x0.shape[0] < 1:
            raise ShapeError(describe("x0", "an array (rows, D) with D >= 2", x0.shape))
        try:
            lower, upper = (np.broadcast_to(np.asarray(default if b is None else b, dtype=np.float64), x0.shape).copy()
                            for b, default in ((lower, -np.inf), (upper, np.inf)))
        except ValueError as err:
            raise BoundsError(describe("bounds", f"broadcastable to {x0.shape}", str(err), raw=True)) from None
        if np.isnan(lower).any() or np.isnan(upper).any() or (lower > upper).any():
            raise BoundsError(describe("bounds", "free of NaN with lower <= upper", "NaN or lower > upper", raw=True))
        if np.isnan(x0).any() or np.isinf(x0).any():
            raise ConfigError(describe("x0", "finite values", "NaN or infinite values", raw=True))
        self._box = _Box(lower, upper, self.scale, self.bounds)
        if int(self._box.free.sum()) < 2:
            raise BoundsError(describe("bounds", "a box with at least 2 coordinates whose lower < upper",
                                       f"{int(self._box.free.sum())} free coordinates", raw=True))
        self._x0 = np.clip(x0, lower, upper)
        self.generation, self.n_evals, self.history, self._pending = 0, 0, [], None
        self.best_x, self.best_loss = self._x0.copy(), np.full(x0.shape[0], np.inf)
        self._init_rows(self._box.to_y(self._x0))

    def ask(self) -> np.ndarray:
        """(P, R, D) float64 candidate values of this generation, inside the box. Asking again before
        :meth:`tell` returns the same candidates."""
        if self._box is None:
            raise ConfigError("Call start(x0, lower, upper) before ask().")
        if self._pending is None:
            self._pending = self._ask_rows()
        return self._box.to_x(self._pending, self._x0)

    def tell(self, losses: Any) -> np.ndarray:
        """Report the losses (P, R) of the asked candidates (lower = better). Returns, per row, the
        index of the candidate that became the row's best so far, or -1."""
        if self._pending is None:
            raise ConfigError("tell() must follow ask(): no candidates are waiting for their losses.")
        losses = np.asarray(losses, dtype=np.float64)
        shape = self._pending.shape[:2]
        if losses.shape != shape:
            raise ShapeError(describe("losses", f"an array of shape {shape} (candidates, rows)", losses.shape))
        if not np.isfinite(losses).all():
            raise ConfigError(describe("losses", "finite numbers", "NaN or infinite values", raw=True))
        y, self._pending = self._pending, None
        if self.bounds == "clip" and self.margin is not None:  # no endless drift beyond a face
            y = self._box.repair(y, self.margin)
        self._tell_rows(y, losses)
        best = np.argmin(losses, axis=0)
        value = losses[best, np.arange(losses.shape[1])]
        improved = value < self.best_loss
        x = self._box.to_x(y[best, np.arange(losses.shape[1])], self._x0)
        self.best_x = np.where(improved[:, None], x, self.best_x)
        self.best_loss = np.where(improved, value, self.best_loss)
        self.history.append({"mean": losses.mean(0), "best": value, "best_so_far": self.best_loss.copy()})
        self.generation += 1
        self.n_evals += losses.shape[0]
        return np.where(improved, best, -1)

    # ---------------------------------------------------------------------- render interface
    def run(self, problem: Problem) -> None:
        """One generation per outer step, for ``problem.n_steps`` steps (see the module docstring)."""
        var = problem.param.variable
        n = int(var.shape[0])
        box = box_bounds(problem, torch.float64)
        x0 = var.detach().to("cpu", torch.float64).reshape(n, -1).numpy()
        lower, upper = (None, None) if box is None else (b.cpu().reshape(n, -1).numpy() for b in box)
        self.start(x0, lower, upper)
        for t in range(problem.n_steps):
            problem.begin_step(t)
            cand = torch.from_numpy(self.ask().reshape((-1,) + tuple(var.shape)))
            losses = problem.evaluate_candidates(cand.to(var.device, var.dtype), self.max_batch)
            if losses.shape[1] != self.rows:  # the objective is not split by item: one joint row
                if self.generation or losses.shape[1] != 1:
                    raise ConfigError(describe("problem.evaluate_candidates", f"(P, {self.rows}) losses at every "
                                               "generation", tuple(losses.shape)))
                logger.info("No per-item losses (objective not split by item): one joint search of the batch.")
                self.start(x0.reshape(1, -1), *(None if b is None else b.reshape(1, -1) for b in (lower, upper)))
            else:
                index = self.tell(losses.cpu().numpy())
                problem.select_records(index.tolist())
                with torch.no_grad():
                    var.copy_(torch.from_numpy(self.best_x).reshape(var.shape))
            if problem.end_step(t):
                break

    # ---------------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        """The whole search state as numbers, strings and numpy arrays (no objects): restore it with
        :meth:`load_state_dict` on an optimizer built with the same options."""
        if self._box is None:
            raise ConfigError("The search has not started: nothing to save.")
        state = {"kind": self.kind, "options": self._options(), "seed": self.seed, "generation": self.generation,
                 "n_evals": self.n_evals, "x0": self._x0, "lower": self._box.lower, "upper": self._box.upper,
                 "best_x": self.best_x, "best_loss": self.best_loss, "popsize": self.popsize,
                 "history_mean": np.array([h["mean"] for h in self.history]).reshape(-1, self.rows),
                 "history_best": np.array([h["best"] for h in self.history]).reshape(-1, self.rows)}
        state.update({f"s.{k}": v for k, v in self._state().items()})
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. Raises ConfigError when it was saved by another kind of search
        or with other options."""
        if state.get("kind") != self.kind or state.get("options") != self._options():
            raise ConfigError(describe("state", f"a state saved by {self!r}",
                                       f"{state.get('kind')} with options {state.get('options')}", raw=True))
        self.seed, self._popsize = int(state["seed"]), int(state["popsize"])
        self._box = _Box(np.asarray(state["lower"]), np.asarray(state["upper"]), self.scale, self.bounds)
        self._x0 = np.asarray(state["x0"], dtype=np.float64)
        self.best_x = np.asarray(state["best_x"], dtype=np.float64).copy()
        self.best_loss = np.asarray(state["best_loss"], dtype=np.float64).copy()
        self.generation, self.n_evals, self._pending = int(state["generation"]), int(state["n_evals"]), None
        best_so_far = np.minimum.accumulate(np.asarray(state["history_best"]), axis=0) if self.generation else []
        self.history = [{"mean": m, "best": b, "best_so_far": s} for m, b, s in
                        zip(state["history_mean"], state["history_best"], best_so_far)]
        self._load_state({k[2:]: v for k, v in state.items() if k.startswith("s.")})

    def _options(self) -> Dict[str, Any]:
        return {"scale": self.scale, "bounds": self.bounds, "margin": self.margin}

    def _init_rows(self, y0: np.ndarray) -> None:
        raise NotImplementedError

    def _ask_rows(self) -> np.ndarray:
        raise NotImplementedError

    def _tell_rows(self, y: np.ndarray, losses: np.ndarray) -> None:
        raise NotImplementedError

    def _state(self) -> Dict[str, Any]:
        return {}

    def _load_state(self, state: Dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({opts}, seed={self.seed})"


class CMAES(SearchOptimizer):
    """CMA-ES (Hansen's covariance matrix adaptation evolution strategy), one per batch item.

    Built on the ``cmaes`` library (see the module docstring for why): ``CMA`` with a full covariance,
    or ``SepCMA`` (diagonal covariance, Ros & Hansen 2008) which learns faster in high dimension and
    costs O(D) per sample. The strategy's mean starts at the initial variable; the population is
    scored as one forward-only batch per generation.

    Args:
        sigma0: initial step size, in box widths (``scale`` units for unbounded coordinates).
            Default 0.5 (0.4-1.0 gave the same activations on the shipped Fashion-MNIST pair).
        popsize: candidates per item and generation; None = CMA's default ``4 + floor(3 ln D)``.
        diagonal: ``True`` = SepCMA, ``False`` = full covariance, None (default) = SepCMA when the
            search has more than 100 coordinates (it matched the full covariance at 179 coordinates
            in the same evaluations, at two thirds of the CPU time).
        seed, scale, bounds, margin, max_batch: see :class:`SearchOptimizer`.

    ``CMAES(sigma0=0.2)`` is also ``make_optimizer("cmaes", sigma0=0.2)``.
    """

    kind = "cmaes"

    def __init__(self, sigma0: float = 0.5, popsize: Optional[int] = None, diagonal: Optional[bool] = None,
                 seed: Optional[int] = None, scale: float = 1.0, bounds: str = "clip",
                 margin: Optional[float] = 0.1, max_batch: Optional[int] = None) -> None:
        super().__init__(popsize, seed, scale, max_batch, bounds, margin)
        self.requested_popsize = self._popsize
        self.sigma0 = _positive("sigma0", sigma0)
        _check("diagonal", diagonal, diagonal is None or isinstance(diagonal, bool), "None, True or False")
        self.diagonal = diagonal
        self._es: List[Any] = []

    def _options(self) -> Dict[str, Any]:
        return {"sigma0": self.sigma0, "popsize": self.requested_popsize, "diagonal": self.diagonal,
                "scale": self.scale, "bounds": self.bounds, "margin": self.margin}

    def _cls(self, dim: int):
        from cmaes import CMA, SepCMA
        diagonal = dim > 100 if self.diagonal is None else self.diagonal
        return SepCMA if diagonal else CMA

    def _init_rows(self, y0: np.ndarray) -> None:
        cls = self._cls(y0.shape[1])
        self._es = [cls(mean=y0[r].copy(), sigma=self.sigma0, seed=0, population_size=self.requested_popsize)
                    for r in range(y0.shape[0])]
        self._popsize = int(self._es[0].population_size)

    def _ask_rows(self) -> np.ndarray:
        out = np.empty((self.popsize, len(self._es), self._es[0].dim))
        for r, es in enumerate(self._es):
            es.reseed_rng(int(np.random.SeedSequence([self.seed, r, self.generation]).generate_state(1)[0]))
            for p in range(self.popsize):
                out[p, r] = es.ask()
        return out

    def _tell_rows(self, y: np.ndarray, losses: np.ndarray) -> None:
        for r, es in enumerate(self._es):
            es.tell([(y[p, r], float(losses[p, r])) for p in range(y.shape[0])])

    @property
    def mean(self) -> np.ndarray:
        """(R, D) the strategies' means as values inside the box."""
        return self._box.to_x(np.stack([es.mean for es in self._es]), self._x0)

    @property
    def sigma(self) -> np.ndarray:
        """(R,) the strategies' step sizes (genotype units)."""
        return np.array([float(es._sigma) for es in self._es])

    def _state(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"class": self._es[0].__class__.__name__}
        for r, es in enumerate(self._es):
            for key, value in es.__getstate__().items():
                if value is None:
                    continue
                out[f"{r}.{key}"] = value
        return out

    def _load_state(self, state: Dict[str, Any]) -> None:
        from cmaes import CMA, SepCMA
        cls = {"CMA": CMA, "SepCMA": SepCMA}[str(state["class"])]
        self._es = []
        for r in range(self.rows):
            prefix = f"{r}."
            attrs = {k[len(prefix):]: _plain(v) for k, v in state.items() if k.startswith(prefix)}
            es = cls.__new__(cls)
            template = cls(mean=np.zeros(int(attrs["_n_dim"])), sigma=1.0, population_size=int(attrs["_popsize"]))
            full = template.__getstate__()
            full.update(attrs)
            es.__setstate__(full)
            self._es.append(es)


def _plain(value: Any) -> Any:
    """numpy 0-d arrays from a saved state back to Python/numpy scalars of the same value."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


class GeneticSearch(SearchOptimizer):
    """A genetic algorithm in the style of XDream (Ponce et al. 2019; Xiao & Kreiman 2020).

    Each generation: the ``n_elite`` best candidates are kept (and scored again, which suits noisy
    targets); every other child takes each coordinate from one of two parents (from the first with
    probability ``heritability``), chosen with probabilities ``softmax(score / (selectivity *
    std(score)))``; then each coordinate mutates with probability ``mutation_rate`` by
    ``N(0, mutation_size^2)``. The first generation is the start plus ``N(0, init_size^2)``.
    Sizes are in box widths.

    Args:
        popsize: candidates per item and generation (default 40). n_elite: kept unchanged (10).
        mutation_rate (0.25), mutation_size (0.1), selectivity (2.0), heritability (0.75),
        init_size (0.2); seed, scale, bounds, margin, max_batch: see :class:`SearchOptimizer`.
    """

    kind = "ga"

    def __init__(self, popsize: int = 40, n_elite: int = 10, mutation_rate: float = 0.25,
                 mutation_size: float = 0.1, selectivity: float = 2.0, heritability: float = 0.75,
                 init_size: float = 0.2, seed: Optional[int] = None, scale: float = 1.0, bounds: str = "clip",
                 margin: Optional[float] = 0.1, max_batch: Optional[int] = None) -> None:
        super().__init__(_popsize(popsize, minimum=3), seed, scale, max_batch, bounds, margin)
        ok = isinstance(n_elite, (int, np.integer)) and not isinstance(n_elite, bool) and 0 <= n_elite < popsize
        self.n_elite = int(_check("n_elite", n_elite, ok, f"an integer in [0, popsize - 1 = {popsize - 1}]"))
        self.mutation_rate = float(_check("mutation_rate", mutation_rate,
                                          isinstance(mutation_rate, (int, float)) and 0 <= mutation_rate <= 1,
                                          "a number in [0, 1]"))
        self.heritability = float(_check("heritability", heritability,
                                         isinstance(heritability, (int, float)) and 0 <= heritability <= 1,
                                         "a number in [0, 1]"))
        self.mutation_size, self.selectivity = _positive("mutation_size", mutation_size), _positive("selectivity",
                                                                                                   selectivity)
        self.init_size = _positive("init_size", init_size)
        self._pop: Optional[np.ndarray] = None
        self._losses: Optional[np.ndarray] = None

    def _options(self) -> Dict[str, Any]:
        return {"popsize": self._popsize, "n_elite": self.n_elite, "mutation_rate": self.mutation_rate,
                "mutation_size": self.mutation_size, "selectivity": self.selectivity,
                "heritability": self.heritability, "init_size": self.init_size, "scale": self.scale,
                "bounds": self.bounds}

    def _init_rows(self, y0: np.ndarray) -> None:
        self._y0, self._pop, self._losses = y0, None, None

    def _ask_rows(self) -> np.ndarray:
        rows, dim, size = self._y0.shape[0], self._y0.shape[1], self.popsize
        out = np.empty((size, rows, dim))
        for r in range(rows):
            rng = _rng(self.seed, r, self.generation)
            if self._pop is None:
                out[:, r] = self._y0[r] + self.init_size * rng.standard_normal((size, dim))
                continue
            pop, score = self._pop[:, r], -self._losses[:, r]
            order = np.argsort(-score, kind="stable")
            out[:self.n_elite, r] = pop[order[:self.n_elite]]
            spread = score.std()
            z = (score - score.max()) / (self.selectivity * spread) if spread > 0 else np.zeros_like(score)
            prob = np.maximum(np.exp(z), 1e-12)
            prob /= prob.sum()
            n_child = size - self.n_elite
            parents = np.stack([rng.choice(size, size=2, replace=False, p=prob) for _ in range(n_child)])
            first = score[parents[:, 0]] >= score[parents[:, 1]]
            fit, other = np.where(first, parents[:, 0], parents[:, 1]), np.where(first, parents[:, 1], parents[:, 0])
            take = rng.random((n_child, dim)) < self.heritability
            child = np.where(take, pop[fit], pop[other])
            mutate = rng.random((n_child, dim)) < self.mutation_rate
            child = child + mutate * self.mutation_size * rng.standard_normal((n_child, dim))
            out[self.n_elite:, r] = child
        return out

    def _tell_rows(self, y: np.ndarray, losses: np.ndarray) -> None:
        self._pop, self._losses = y.copy(), losses.copy()

    def _state(self) -> Dict[str, Any]:
        out = {"y0": self._y0}
        if self._pop is not None:
            out.update(pop=self._pop, losses=self._losses)
        return out

    def _load_state(self, state: Dict[str, Any]) -> None:
        self._y0 = np.asarray(state["y0"])
        self._pop = np.asarray(state["pop"]) if "pop" in state else None
        self._losses = np.asarray(state["losses"]) if "losses" in state else None


class RandomSearch(SearchOptimizer):
    """Random search: each generation draws ``popsize`` independent candidates per item and keeps
    the best so far. ``sigma=None`` (default) draws uniformly in the box (``N(start, scale^2)`` on
    coordinates without a finite box); a number draws ``start + N(0, sigma^2)`` (box widths).

    Args:
        popsize: candidates per item and generation (default 40).
        sigma: None or the spread around the start; seed, scale, bounds, margin, max_batch: see
            :class:`SearchOptimizer`.
    """

    kind = "random"

    def __init__(self, popsize: int = 40, sigma: Optional[float] = None, seed: Optional[int] = None,
                 scale: float = 1.0, bounds: str = "clip", margin: Optional[float] = 0.1,
                 max_batch: Optional[int] = None) -> None:
        super().__init__(_popsize(popsize, minimum=1), seed, scale, max_batch, bounds, margin)
        self.sigma = None if sigma is None else _positive("sigma", sigma)

    def _options(self) -> Dict[str, Any]:
        return {"popsize": self._popsize, "sigma": self.sigma, "scale": self.scale, "bounds": self.bounds,
                "margin": self.margin}

    def _init_rows(self, y0: np.ndarray) -> None:
        self._y0 = y0

    def _ask_rows(self) -> np.ndarray:
        rows, dim = self._y0.shape
        out = np.empty((self.popsize, rows, dim))
        both = self._box.both[:, self._box.free]
        for r in range(rows):
            rng = _rng(self.seed, r, self.generation)
            noise = rng.standard_normal((self.popsize, dim))
            if self.sigma is None:
                out[:, r] = np.where(both[r], rng.random((self.popsize, dim)), self._y0[r] + noise)
            else:
                out[:, r] = self._y0[r] + self.sigma * noise
        return out

    def _tell_rows(self, y: np.ndarray, losses: np.ndarray) -> None:
        pass

    def _state(self) -> Dict[str, Any]:
        return {"y0": self._y0}

    def _load_state(self, state: Dict[str, Any]) -> None:
        self._y0 = np.asarray(state["y0"])
