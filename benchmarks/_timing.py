"""Interleaved timing: warm up, alternate the order of the variants each round, report medians.

Every variant is a callable ``run() -> StepClock`` that times its own steps from inside its loop
(a :class:`StepClock` whose :meth:`~StepClock.tick` runs at the end of every step, so the first
interval, which holds the set-up, is never counted). :func:`interleave` runs each variant once to
warm up, then ``rounds`` rounds over all variants, forward order in even rounds and reverse order
in odd ones, and pools the intervals of each variant over the rounds.

Two clocks are read at every tick: wall time (``time.perf_counter``) and the process's CPU time
(``time.process_time``). With one torch thread every operation of a CPU step (autograd's CPU
backward included) runs on the calling thread, so CPU time is the work of the step and does not
count the time the scheduler gives to other processes; on a shared machine it is the stable
measure. With two threads only wall time means anything (CPU time adds both threads).
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["StepClock", "Stats", "Timing", "summarize", "interleave", "ratio", "time_calls"]


class StepClock:
    """Timestamps taken at the end of every step; ``intervals()`` are the step times after the first.

    Use it as a lucent_dgn render callback (``callbacks=[clock]``: called after every outer step,
    returns None so it never stops the render), or call :meth:`tick` from any loop.
    """

    def __init__(self) -> None:
        self.stamps: List[float] = []
        self.cpu_stamps: List[float] = []
        self.evals: List[int] = []

    def tick(self, n_evals: Optional[int] = None) -> None:
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())
        if n_evals is not None:
            self.evals.append(int(n_evals))

    def __call__(self, info=None) -> None:
        self.tick(getattr(info, "n_evals", None))

    def intervals(self, clock: str = "wall") -> List[float]:
        """Seconds between consecutive ticks (len = ticks - 1): steps 2..N of the loop."""
        stamps = self.stamps if clock == "wall" else self.cpu_stamps
        return [float(v) for v in np.diff(stamps)] if len(stamps) > 1 else []

    def per_eval(self, clock: str = "wall") -> List[float]:
        """Seconds per evaluation of each step after the first (needs ``n_evals`` at every tick)."""
        stamps = self.stamps if clock == "wall" else self.cpu_stamps
        out = []
        for i in range(1, min(len(stamps), len(self.evals))):
            n = self.evals[i] - self.evals[i - 1]
            if n > 0:
                out.append((stamps[i] - stamps[i - 1]) / n)
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


@dataclass
class Timing:
    """Per-step statistics of one variant on both clocks."""

    wall: Stats
    cpu: Stats

    def get(self, clock: str) -> Stats:
        return self.wall if clock == "wall" else self.cpu

    def as_dict(self) -> Dict[str, Dict[str, float]]:
        return {"wall": self.wall.as_dict(), "cpu": self.cpu.as_dict()}


def interleave(variants: Mapping[str, Callable[[], StepClock]], rounds: int, warmup: int = 1,
               per_eval: bool = False) -> Dict[str, Timing]:
    """Run every variant ``warmup`` times, then ``rounds`` rounds in alternating order.

    Args:
        variants: name -> ``run()`` returning the :class:`StepClock` of one call.
        rounds: measured rounds (>= 1); the order is reversed in odd rounds.
        warmup: unmeasured calls of each variant before the first round.
        per_eval: pool seconds per evaluation instead of per step (L-BFGS).

    Returns:
        name -> :class:`Timing` over the pooled intervals of all rounds.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    pooled: Dict[str, Dict[str, List[float]]] = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(rounds):
        gc.collect()
        for name in (names if r % 2 == 0 else names[::-1]):
            clock = variants[name]()
            for kind in ("wall", "cpu"):
                pooled[name][kind].extend(clock.per_eval(kind) if per_eval else clock.intervals(kind))
    return {name: Timing(summarize(v["wall"]), summarize(v["cpu"])) for name, v in pooled.items()}


def time_calls(fn: Callable[[], object], repeat: int) -> StepClock:
    """A clock ticked before and after ``repeat`` consecutive calls of ``fn`` (small operations)."""
    clock = StepClock()
    clock.tick()
    for _ in range(repeat):
        fn()
        clock.tick()
    return clock


def ratio(a, b, clock: str = "cpu") -> float:
    """Ratio of medians ``a / b`` (:class:`Stats` or :class:`Timing` on ``clock``)."""
    if isinstance(a, Timing):
        a, b = a.get(clock), b.get(clock)
    return a.median_ms / b.median_ms if b.median_ms > 0 else float("nan")
