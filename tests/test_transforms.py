"""Jitter and Compose: offsets drawn once per step, reused by every call until the next resample."""
from __future__ import annotations

import pytest
import torch

from lucent_dgn.errors import ConfigError
from lucent_dgn.render.transforms import Compose, Jitter


def test_jitter_draw_order_and_range():
    j = Jitter(3)
    assert j.offsets == (0, 0)
    g = torch.Generator().manual_seed(7)
    seen = set()
    for _ in range(400):
        j.resample(g)
        seen.add(j.offsets)
    assert {o for pair in seen for o in pair} == set(range(-3, 4))  # inclusive range, both ends hit
    # ox is drawn first (width), then oy (height)
    j.resample(torch.Generator().manual_seed(11))
    ox, oy = torch.randint(-3, 4, (2,), generator=torch.Generator().manual_seed(11)).tolist()
    assert j.offsets == (oy, ox)


def test_jitter_applies_roll_and_is_stable_between_resamples():
    j = Jitter(4)
    j.resample(torch.Generator().manual_seed(3))
    oy, ox = j.offsets
    x = torch.arange(2 * 3 * 9 * 10, dtype=torch.float32).view(2, 3, 9, 10)
    first = j(x)
    assert torch.equal(first, torch.roll(x, shifts=(oy, ox), dims=(-2, -1)))
    assert torch.equal(j(x), first)  # same offsets until the next resample


def test_jitter_positive_moves_down_right_and_gradient_unshifts():
    j = Jitter(2)
    j._oy, j._ox = 1, 2  # set a known shift
    x = torch.zeros(1, 1, 5, 5, requires_grad=True)
    y = j(x)
    w = torch.zeros(1, 1, 5, 5)
    w[0, 0, 1, 2] = 1.0  # the model looks at shifted pixel (1, 2) ...
    (y * w).sum().backward()
    assert x.grad[0, 0, 0, 0] == 1 and x.grad.sum() == 1  # ... which is original pixel (0, 0)


def test_jitter_zero_and_errors():
    j = Jitter(0)
    j.resample(torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 4, 4)
    assert j.offsets == (0, 0) and j(x) is x
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ConfigError, match="`max_shift`"):
            Jitter(bad)  # type: ignore[arg-type]
    Jitter(2).resample(None)  # global RNG


def test_compose_protocol():
    a, b = Jitter(3), Jitter(5)
    calls = []
    plain = lambda x: calls.append(1) or x * 2  # noqa: E731
    c = Compose([a, plain, b])
    assert len(c) == 3 and c.jitter_offsets == (0, 0)
    c.resample(torch.Generator().manual_seed(5))
    x = torch.rand(1, 3, 16, 16)
    expected = b(plain(a(x)))
    assert torch.equal(c(x), expected) and torch.equal(c(x), expected)
    assert c.jitter_offsets == (a.offsets[0] + b.offsets[0], a.offsets[1] + b.offsets[1])
    assert c.offsets == c.jitter_offsets
    assert Compose([plain]).jitter_offsets is None and Compose([plain]).offsets == (0, 0)
    with pytest.raises(ConfigError, match=r"`transforms\[1\]`"):
        Compose([a, 3])


def test_compose_resample_is_reproducible():
    def offsets(seed):
        c = Compose([Jitter(4), Jitter(4)])
        c.resample(torch.Generator().manual_seed(seed))
        return [t.offsets for t in c.transforms]
    assert offsets(9) == offsets(9)
