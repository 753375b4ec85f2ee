"""Interleaved timing: warm up, alternate the order of the variants each round, report medians.

Every variant is a callable ``run() -> list of per-step seconds`` that times its own steps from
inside its loop (a :class:`StepClock` whose :meth:`~StepClock.tick` runs at the end of every step,
so the first interval, which holds the set-up, is never counted). :func:`interleave` runs each
variant once to warm up, then ``rounds`` rounds over all variants, forward order in even rounds and
reverse order in odd ones, and pools the intervals of each variant over the rounds.
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["StepClock", "Stats", "summarize", "interleave", "ratio", "time_calls"]


class StepClock:
    """Timestamps taken at the end of every step; ``intervals()`` are the step times after the first.

    Use it as a lucent_dgn render callback (``callbacks=[clock]``: called after every outer step,
    returns None so it never stops the render), or call :meth:`tick` from any loop.
    """

    def __init__(self) -> None:
        self.stamps: List[float] = []
        self.evals: List[int] = []

    def tick(self, n_evals: Optional[int] = None) -> None:
        self.stamps.append(time.perf_counter())
        if n_evals is not None:
            self.evals.append(int(n_evals))

    def __call__(self, info=None) -> None:
        self.tick(getattr(info, "n_evals", None))

    def intervals(self) -> List[float]:
        """Seconds between consecutive ticks (len = ticks - 1): steps 2..N of the loop."""
        return list(np.diff(self.stamps)) if len(self.stamps) > 1 else []

    def per_eval(self) -> List[float]:
        """Seconds per evaluation of each step after the first (needs ``n_evals`` at every tick)."""
        out = []
        for i in range(1, min(len(self.stamps), len(self.evals))):
            n = self.evals[i] - self.evals[i - 1]
            if n > 0:
                out.append((self.stamps[i] - self.stamps[i - 1]) / n)
        return out


@dataclass
class Stats:
    """Summary of a sample of seconds, reported in milliseconds."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    n: int

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median_ms:8.2f} ms [{self.p25_ms:.2f}-{self.p75_ms:.2f}] n={self.n}"


def summarize(seconds: Sequence[float]) -> Stats:
    """Median, 25th and 75th percentiles and minimum of ``seconds`` (in ms)."""
    if len(seconds) == 0:
        return Stats(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    p25, med, p75 = np.percentile(a, [25, 50, 75])
    return Stats(float(med), float(p25), float(p75), float(a.min()), int(a.size))


def interleave(variants: Mapping[str, Callable[[], Sequence[float]]], rounds: int,
               warmup: int = 1) -> Dict[str, Stats]:
    """Run every variant ``warmup`` times, then ``rounds`` rounds in alternating order.

    Args:
        variants: name -> ``run()`` returning the per-step seconds of one call.
        rounds: measured rounds (>= 1); the order is reversed in odd rounds.
        warmup: unmeasured calls of each variant before the first round.

    Returns:
        name -> :class:`Stats` over the pooled intervals of all rounds.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    pooled: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        gc.collect()
        for name in (names if r % 2 == 0 else names[::-1]):
            pooled[name].extend(variants[name]())
    return {name: summarize(values) for name, values in pooled.items()}


def time_calls(fn: Callable[[], object], repeat: int) -> List[float]:
    """Seconds of ``repeat`` consecutive calls of ``fn`` (for small per-call operations)."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ratio(a: Stats, b: Stats) -> float:
    """Ratio of medians ``a / b``."""
    return a.median_ms / b.median_ms if b.median_ms > 0 else float("nan")
