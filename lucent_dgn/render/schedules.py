"""Hyperparameter schedules: cnnpref's linear start -> end ramps.

cnnpref evaluates every (start, end) pair at the current outer step ``t`` (0-based) as
``start + t * (end - start) / n_steps`` for ``t = 0 ... n_steps - 1``: the end value is never
reached (the last value is ``start + (n_steps - 1) * (end - start) / n_steps``). Example: the
default learning rate 2 -> 1e-10 over 200 steps goes 2.0, 1.99, ..., 0.0100000001.

Users pass a single number (constant) or a ``(start, end)`` pair; :func:`as_schedule` turns
either into a :class:`Schedule`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, List, Tuple, Union

from ..errors import ConfigError, describe

__all__ = ["Schedule", "ScheduleLike", "linear", "constant", "as_schedule"]


@dataclass(frozen=True)
class Schedule:
    """A linear schedule ``t -> start + t * (end - start) / n_steps`` (float, true division).

    Attributes:
        start: value at ``t = 0``.
        end: value the ramp heads for; reached only at ``t = n_steps`` (never used).
        n_steps: number of outer steps ``N`` (> 0).
    """

    start: float
    end: float
    n_steps: int

    def __call__(self, t: int) -> float:
        """Value at outer step ``t`` (0-based). Any integer ``t`` is accepted (extrapolates)."""
        return self.start + t * (self.end - self.start) / self.n_steps

    @property
    def is_constant(self) -> bool:
        """True when ``start == end`` (the same value at every step)."""
        return self.start == self.end

    def values(self) -> List[float]:
        """The values at ``t = 0 ... n_steps - 1``."""
        return [self(t) for t in range(self.n_steps)]

    def __repr__(self) -> str:
        if self.is_constant:
            return f"Schedule(constant {self.start!r}, n_steps={self.n_steps})"
        return f"Schedule({self.start!r} -> {self.end!r}, n_steps={self.n_steps})"


ScheduleLike = Union[float, int, Tuple[float, float], Schedule]
"""A number (constant), a ``(start, end)`` pair, or a :class:`Schedule`."""


def _check_n_steps(n_steps: Any) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps <= 0:
        raise ConfigError(describe("n_steps", "a positive integer", n_steps))
    return n_steps


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(describe(name, "a finite number or a (start, end) pair of finite numbers", value))
    return float(value)


def linear(start: float, end: float, n_steps: int) -> Schedule:
    """Linear schedule from ``start`` towards ``end`` over ``n_steps`` steps (cnnpref's ``lin``).

    Args:
        start: value at ``t = 0``.
        end: value at ``t = n_steps`` (never reached).
        n_steps: number of outer steps (positive integer).

    Returns:
        Schedule whose value at ``t`` is exactly ``start + t * (end - start) / n_steps``.

    Raises:
        ConfigError: non-finite values or ``n_steps <= 0``.
    """
    return Schedule(_check_number(start, "start"), _check_number(end, "end"), _check_n_steps(n_steps))


def constant(value: float, n_steps: int) -> Schedule:
    """The schedule that is ``value`` at every step."""
    return linear(value, value, n_steps)


def as_schedule(value: ScheduleLike, n_steps: int, name: str = "value") -> Schedule:
    """Turn a number, a ``(start, end)`` pair or a :class:`Schedule` into a :class:`Schedule`.

    Args:
        value: a number (constant), a 2-sequence ``(start, end)``, or a Schedule. A Schedule
            built for another ``n_steps`` is re-built for ``n_steps`` with the same start/end.
        n_steps: number of outer steps of the run.
        name: argument name used in error messages (e.g. ``"lr"``).

    Raises:
        ConfigError: anything else (strings, 3-tuples, NaN ...), or ``n_steps <= 0``.
    """
    n_steps = _check_n_steps(n_steps)
    if isinstance(value, Schedule):
        return value if value.n_steps == n_steps else Schedule(value.start, value.end, n_steps)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(describe(name, "a number or a (start, end) pair", value))
        return Schedule(_check_number(value[0], name), _check_number(value[1], name), n_steps)
    v = _check_number(value, name)
    return Schedule(v, v, n_steps)
