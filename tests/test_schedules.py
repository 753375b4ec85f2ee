"""Linear schedules (cnnpref's ``lin``): exact values, accepted forms, errors, properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucent_dgn.errors import ConfigError
from lucent_dgn.render.schedules import Schedule, as_schedule, constant, linear


def test_default_lr_schedule_exact():
    s = linear(2, 1e-10, 200)
    assert s(0) == 2.0
    assert s(1) == 2 + 1 * (1e-10 - 2) / 200
    assert s(199) == 2 + 199 * (1e-10 - 2) / 200
    assert s(199) == pytest.approx(0.0100000001, abs=1e-12)  # printed value, 0.01000000009950...
    assert isinstance(s(3), float)


def test_sigma_schedules_never_reach_end():
    assert linear(2.5, 0.5, 200)(199) == pytest.approx(0.51, abs=1e-15)
    assert linear(2.0, 0.5, 200)(199) == pytest.approx(0.5075, abs=1e-15)
    assert linear(0.1, 0.01, 200)(199) == pytest.approx(0.01045, abs=1e-15)
    assert 0.5 not in linear(2.5, 0.5, 200).values()


def test_int_pairs_use_true_division():
    s = linear(3, 1, 4)
    assert s.values() == [3.0, 2.5, 2.0, 1.5]


def test_as_schedule_forms():
    assert as_schedule(0.9, 10).values() == [0.9] * 10
    assert as_schedule((1, 0), 2).values() == [1.0, 0.5]
    assert as_schedule([1, 0], 2)(1) == 0.5
    s = linear(1, 0, 4)
    assert as_schedule(s, 4) is s
    assert as_schedule(s, 2).values() == [1.0, 0.5]
    assert constant(5, 3).is_constant and constant(5, 3)(2) == 5.0
    assert "->" in repr(s) and "constant" in repr(constant(1, 2))


@pytest.mark.parametrize("bad", ["2", (1, 2, 3), (1,), float("nan"), float("inf"), None, True, (1, "a")])
def test_as_schedule_rejects(bad):
    with pytest.raises(ConfigError, match="`lr` must be"):
        as_schedule(bad, 10, "lr")


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_bad_n_steps(n):
    with pytest.raises(ConfigError, match="`n_steps`"):
        linear(1, 2, n)


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(start=finite, end=finite, n=st.integers(1, 300))
def test_schedule_properties(start, end, n):
    s = as_schedule((start, end), n)
    values = s.values()
    assert len(values) == n and values[0] == start
    for t, v in enumerate(values):
        assert v == start + t * (end - start) / n
        assert min(start, end) - 1e-9 <= v <= max(start, end) + 1e-9
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(d * (end - start) >= -1e-18 for d in steps)  # monotone towards end


def test_schedule_is_frozen():
    s = Schedule(1.0, 2.0, 3)
    with pytest.raises(Exception):
        s.start = 5.0  # type: ignore[misc]
