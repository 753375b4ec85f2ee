"""Property-based tests (hypothesis) for the mask builders, plus the schedule and clipping
properties that test_schedules.py and test_image_ops.py do not cover yet.

Mask builders: the selected set is exactly the one asked for, whatever the shape; validation
round-trips every binary input and rejects every non-binary one; ``masked_units`` on a random
mask equals the sum computed by hand. Schedules: ``as_schedule`` forms agree with ``linear``.
Clipping: ``clip_small_contribution_`` zeroes exactly the low-contribution pixels, and the
saving helpers (``clip_extreme_pixel``, ``normalise_img``) keep their range and order.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lucent_dgn.errors import MaskError
from lucent_dgn.objectives import (as_bool_mask, channel_mask, every_nth_channel, masked_units, region_mask,
                                   unit_mask, unit_masks)
from lucent_dgn.render.image_ops import (clip_extreme_pixel, clip_small_contribution_, normalise_img, percentile,
                                         pixel_norm)
from lucent_dgn.render.schedules import Schedule, as_schedule, linear

FAST = settings(max_examples=40, deadline=None)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 7))


def _on(mask: torch.Tensor) -> set:
    return {tuple(i) for i in mask.nonzero().tolist()}


# ----------------------------------------------------------------------------------- mask builders
@FAST
@given(shape=shapes, data=st.data())
def test_unit_mask_selects_exactly_the_unit(shape, data):
    c, h, w = shape
    channel = data.draw(st.integers(0, c - 1))
    y = data.draw(st.one_of(st.none(), st.integers(0, h - 1)))
    x = data.draw(st.one_of(st.none(), st.integers(0, w - 1)))
    mask = unit_mask(shape, channel, y, x)
    assert mask.dtype == torch.bool and tuple(mask.shape) == shape
    assert _on(mask) == {(channel, h // 2 if y is None else y, w // 2 if x is None else x)}
    assert _on(unit_mask((c,), channel)) == {(channel,)}


@FAST
@given(shape=shapes, data=st.data())
def test_unit_mask_rejects_every_index_outside_the_layer(shape, data):
    c, h, w = shape
    channel = data.draw(st.one_of(st.integers(-20, -1), st.integers(c, c + 20)))
    with pytest.raises(MaskError, match=rf"`channel` must be in \[0, {c - 1}\]"):
        unit_mask(shape, channel)
    row = data.draw(st.one_of(st.integers(-20, -1), st.integers(h, h + 20)))
    with pytest.raises(MaskError, match="`y` must be"):
        unit_mask(shape, 0, row, None)


@FAST
@given(shape=shapes, data=st.data())
def test_channel_mask_selects_whole_channels(shape, data):
    c, h, w = shape
    channels = data.draw(st.lists(st.integers(0, c - 1), min_size=1, max_size=8))
    mask = channel_mask(shape, channels)
    assert int(mask.sum()) == len(set(channels)) * h * w
    for k in range(c):
        assert bool(mask[k].all()) == (k in channels) and bool(mask[k].any()) == (k in channels)


@FAST
@given(shape=shapes, data=st.data())
def test_region_mask_is_the_rectangle(shape, data):
    c, h, w = shape
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    channels = data.draw(st.one_of(st.none(), st.lists(st.integers(0, c - 1), min_size=1, max_size=4)))
    mask = region_mask(shape, channels, (y0, y1), (x0, x1))
    chans = set(range(c)) if channels is None else set(channels)
    expected = {(k, yy, xx) for k in chans for yy in range(y0, y1) for xx in range(x0, x1)}
    assert _on(mask) == expected


@FAST
@given(shape=shapes, data=st.data())
def test_unit_masks_give_one_unit_per_item(shape, data):
    c, h, w = shape
    channels = data.draw(st.lists(st.integers(0, c - 1), min_size=1, max_size=6))
    ys = data.draw(st.lists(st.integers(0, h - 1), min_size=len(channels), max_size=len(channels)))
    masks = unit_masks(shape, channels, y=ys)
    assert tuple(masks.shape) == (len(channels),) + shape
    for i, (k, yy) in enumerate(zip(channels, ys)):
        assert _on(masks[i]) == {(k, yy, w // 2)}


@FAST
@given(n=st.integers(1, 3000), step=st.one_of(st.none(), st.integers(1, 50)))
def test_every_nth_channel_is_a_range(n, step):
    expected_step = max(1, int(n / 25)) if step is None else step
    assert every_nth_channel(n, step) == list(range(0, n, expected_step))
    assert every_nth_channel((n, 3, 3), step) == every_nth_channel(n, step)


binary = st.lists(st.booleans(), min_size=1, max_size=30).filter(any)


@FAST
@given(values=binary, dtype=st.sampled_from(["bool", "uint8", "int64", "float32", "float64"]),
       as_torch=st.booleans())
def test_as_bool_mask_round_trips_every_binary_input(values, dtype, as_torch):
    array = np.array(values).astype(dtype)
    mask = as_bool_mask(torch.from_numpy(array) if as_torch else array)
    assert mask.dtype == torch.bool and mask.tolist() == values


@FAST
@given(values=binary, bad=st.floats(allow_nan=False, allow_infinity=False), position=st.integers(0, 29))
def test_as_bool_mask_rejects_any_other_value(values, bad, position):
    assume(bad not in (0.0, 1.0))
    array = np.array(values, dtype=np.float64)
    array[position % array.size] = bad
    with pytest.raises(MaskError, match="binary"):
        as_bool_mask(array)


@FAST
@given(shape=shapes, seed=st.integers(0, 2 ** 16), batch=st.integers(1, 3), per_item=st.booleans(),
       reduction=st.sampled_from(["sum", "mean"]))
def test_masked_units_equals_the_hand_computed_sum(shape, seed, batch, per_item, reduction):
    rng = np.random.default_rng(seed)
    mask_shape = ((batch,) if per_item else ()) + shape
    mask = rng.random(mask_shape) < 0.4
    mask.reshape(-1, int(np.prod(shape)))[:, 0] = True  # at least one unit per item
    weight = rng.normal(size=shape)
    act = torch.from_numpy(rng.normal(size=(batch,) + shape))
    loss = masked_units("layer", mask, weight=weight, reduction=reduction)(lambda name: act)
    full = np.broadcast_to(mask, (batch,) + shape)
    total = (weight * act.numpy())[full].sum()
    expected = -total if reduction == "sum" else -total / full.sum()
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------- schedules
finite = st.floats(-1e3, 1e3, allow_nan=False)


@FAST
@given(start=finite, end=finite, n=st.integers(1, 100), m=st.integers(1, 100))
def test_schedule_forms_agree(start, end, n, m):
    s = linear(start, end, n)
    assert as_schedule((start, end), n) == s == as_schedule(s, n)
    rebuilt = as_schedule(s, m)
    assert (rebuilt.start, rebuilt.end, rebuilt.n_steps) == (start, end, m)
    assert as_schedule(start, n).values() == [start] * n
    assert isinstance(rebuilt, Schedule) and rebuilt(0) == start


# ---------------------------------------------------------------------------------------- clipping
@settings(max_examples=25, deadline=None)
@given(pct=st.floats(0, 100), h=st.integers(1, 7), w=st.integers(1, 7), seed=st.integers(0, 2 ** 16))
def test_small_contribution_zeroes_exactly_those_below(pct, h, w, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=gen)
    g = torch.randn(2, 3, h, w, dtype=torch.float64, generator=gen)
    norms = pixel_norm(x * g)
    thr = percentile(norms, pct)
    out = clip_small_contribution_(x.clone(), g, pct)
    for i in range(2):
        below = norms[i] < thr[i]
        assert bool((out[i][:, below] == 0).all())
        assert torch.equal(out[i][:, ~below], x[i][:, ~below])
    assert bool((~(norms < thr.view(2, 1, 1))).any(dim=(1, 2)).all())  # the largest contribution survives


@settings(max_examples=25, deadline=None)
@given(pct=st.floats(0, 100), size=st.integers(1, 60), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_clip_extreme_pixel_keeps_dtype_range_and_inner_values(pct, size, seed, dtype):
    img = np.random.default_rng(seed).normal(size=(size, 3)).astype(dtype)
    out = clip_extreme_pixel(img, pct)
    lo, hi = np.percentile(img, pct / 2), np.percentile(img, 100 - pct / 2)
    assert out.dtype == img.dtype and out.shape == img.shape
    assert out.min() >= dtype(lo) and out.max() <= dtype(hi)
    inside = (img >= lo) & (img <= hi)
    assert np.array_equal(out[inside], img[inside])


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 60), seed=st.integers(0, 2 ** 16), scale=st.floats(1e-3, 1e4),
       offset=st.floats(-1e3, 1e3))
def test_normalise_img_spans_0_255_and_keeps_order(size, seed, scale, offset):
    img = np.random.default_rng(seed).normal(size=(size, 3)) * scale + offset
    assume(np.ptp(img) > 1e-6 * max(1.0, abs(offset)))
    out = normalise_img(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out.min() == 0 and out.max() >= 254  # truncation, as cnnpref: 254.99999 -> 254
    order = np.argsort(img, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # monotone: brighter stays brighter
    assert not normalise_img(np.full((4, 4), offset)).any()  # a constant image is all zeros
