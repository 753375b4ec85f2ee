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
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["StepClock", "Stats", "Timing", "Lockstep", "summarize", "interleave", "ratio", "time_calls", "details"]


class StepClock:
    """Timestamps taken at the end of every step; ``intervals()`` are the step times after the first.

    Use it as a lucent_dgn render callback (``callbacks=[clock]``: called after every outer step,
    returns None so it never stops the render), or call :meth:`tick` from any loop.
    """

    def __init__(self) -> None:
        self.stamps: List[float] = []
        self.cpu_stamps: List[float] = []
        self.evals: List[int] = []
        self._extra: Dict[str, List[float]] = {"wall": [], "cpu": []}
        self._skip: List[int] = []  # tick indices that start a new chain (no interval before them)

    def add_interval(self, wall: float, cpu: float) -> None:
        """Record one step time measured elsewhere (paired timing)."""
        self._extra["wall"].append(wall)
        self._extra["cpu"].append(cpu)

    def break_chain(self) -> None:
        """The next tick starts a new chain: the gap before it is not a step."""
        self._skip.append(len(self.stamps))

    def tick(self, n_evals: Optional[int] = None) -> None:
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())
        if n_evals is not None:
            self.evals.append(int(n_evals))

    def __call__(self, info=None) -> None:
        self.tick(getattr(info, "n_evals", None))

    def intervals(self, clock: str = "wall") -> List[float]:
        """Seconds between consecutive ticks (steps 2..N of the loop), plus added intervals."""
        stamps = self.stamps if clock == "wall" else self.cpu_stamps
        skip = set(self._skip)
        out = [float(stamps[i] - stamps[i - 1]) for i in range(1, len(stamps)) if i not in skip]
        return out + list(self._extra[clock])

    def per_eval(self, clock: str = "wall") -> List[float]:
        """Seconds per evaluation of each step after the first (needs ``n_evals`` at every tick)."""
        stamps = self.stamps if clock == "wall" else self.cpu_stamps
        if not self.evals:  # a loop with one evaluation per step
            return self.intervals(clock)
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
        variants: name -> ``run()`` returning the :class:`StepClock` of one call, or a dict
            ``{sample name: StepClock}`` (paired runs: each clock is pooled under its own name).
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
    pooled: Dict[str, Dict[str, List[float]]] = {}
    for r in range(rounds):
        gc.collect()
        for name in (names if r % 2 == 0 else names[::-1]):
            out = variants[name]()
            for key, clock in (out.items() if isinstance(out, dict) else [(name, out)]):
                bucket = pooled.setdefault(key, {"wall": [], "cpu": []})
                for kind in ("wall", "cpu"):
                    bucket[kind].extend(clock.per_eval(kind) if per_eval else clock.intervals(kind))
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


def details(res: Mapping[str, Timing], *names: str) -> Dict[str, Dict[str, Dict[str, float]]]:
    """``{name: res[name].as_dict()}`` for ``names``: the statistics behind a ratio, for a row's detail."""
    return {n: res[n].as_dict() for n in names}


def _current_core() -> Optional[int]:
    """The CPU the calling thread last ran on (``/proc/thread-self/stat`` field 39), or None."""
    try:
        with open("/proc/thread-self/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def _one_malloc_arena() -> None:
    """Make glibc serve every thread from the main heap (``mallopt(M_ARENA_MAX, 1)``), so a loop
    run in a worker thread allocates as it would in the main thread (per-thread arenas return
    and re-fault large blocks differently)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class Lockstep:
    """Run two closed loops (e.g. ``render_vis`` and ``render``) in two threads that take turns
    step by step: A's set-up and first step, B's set-up and first step, A's step 2, B's step 2, ...

    Each loop calls ``hook(name)`` at the end of every step (a render callback, an optimizer-step
    wrapper, bdpy's per-iteration loss callback); the hook records the step, hands the turn to the
    other loop and waits for it to come back. Only one thread works at any time, so the two loops
    see the same machine load at nearly the same moments; CPU time is read per thread
    (``time.thread_time``: with one torch thread, CPU forward and backward run on the calling
    thread). With ``numpy_rng`` each side keeps its own copy of numpy's global random state (Lucent's
    transforms draw from it), seeded alike, so both sides get the same random transforms.
    Both threads are pinned to the core the caller runs on, so a hand-off never moves a loop to
    the other core (cold caches).
    """

    def __init__(self, first: str, second: str, numpy_seed: Optional[int] = None) -> None:
        import threading
        _one_malloc_arena()
        self.names = (first, second)
        self.clocks = {first: StepClock(), second: StepClock()}
        self._cond = threading.Condition()
        self._turn = first
        self._done: set = set()
        self._resume: Dict[str, tuple] = {}
        self._rng: Dict[str, object] = {}
        if numpy_seed is not None:
            np.random.seed(numpy_seed)
            self._rng = {first: np.random.get_state(), second: np.random.get_state()}

    def _other(self, name: str) -> str:
        return self.names[1] if name == self.names[0] else self.names[0]

    def _wait_turn(self, name: str) -> None:
        other = self._other(name)
        while self._turn != name and other not in self._done:
            self._cond.wait()
        if self._rng:
            np.random.set_state(self._rng[name])

    def _give_turn(self, name: str) -> None:
        if self._rng:
            self._rng[name] = np.random.get_state()
        self._turn = self._other(name)
        self._cond.notify_all()

    def hook(self, name: str) -> Callable[..., None]:
        """The per-step callback of loop ``name`` (accepts and ignores any arguments)."""
        clock = self.clocks[name]

        def at_step(*_args, **_kwargs) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            if name in self._resume:
                clock.add_interval(wall - self._resume[name][0], cpu - self._resume[name][1])
            with self._cond:
                self._give_turn(name)
                self._wait_turn(name)
            self._resume[name] = (time.perf_counter(), time.thread_time())
        return at_step

    def run(self, loops: Mapping[str, Callable[[], object]]) -> Dict[str, StepClock]:
        """Run ``loops[name]()`` for both names in turn-taking threads; returns both clocks."""
        import threading
        errors: List[BaseException] = []

        core = _current_core()

        def body(name: str) -> None:
            if core is not None:  # both threads on one core: no migration at the hand-offs
                os.sched_setaffinity(0, {core})
            try:
                with self._cond:
                    self._wait_turn(name)
                loops[name]()
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(err)
            finally:
                with self._cond:
                    self._done.add(name)
                    self._give_turn(name)

        threads = [threading.Thread(target=body, args=(n,)) for n in self.names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return self.clocks
