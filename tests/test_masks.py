"""Mask builders and mask validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lucent_dgn.errors import MaskError, ShapeError
from lucent_dgn.objectives import (
    as_bool_mask, channel_mask, every_nth_channel, region_mask, unit_mask, unit_masks,
)


def _on(mask: torch.Tensor) -> list:
    return [tuple(i) for i in mask.nonzero().tolist()]


def test_unit_mask_default_centre_matches_cnnpref():
    mask = unit_mask((96, 55, 55), 5)
    assert mask.dtype == torch.bool and mask.shape == (96, 55, 55)
    assert _on(mask) == [(5, 27, 27)]  # int(55 / 2) = 27


def test_unit_mask_centre_on_non_square_and_even_maps():
    assert _on(unit_mask((2, 6, 5), 1)) == [(1, 3, 2)]
    assert _on(unit_mask((2, 2, 9), 0)) == [(0, 1, 4)]
    assert _on(unit_mask((3, 6, 5), 2, y=0, x=4)) == [(2, 0, 4)]


def test_unit_mask_fc_layer():
    mask = unit_mask((1000,), 960)
    assert mask.shape == (1000,) and _on(mask) == [(960,)]
    assert _on(unit_mask(10, 3)) == [(3,)]


@pytest.mark.parametrize("kwargs, arg", [
    (dict(channel=4), "`channel` must be in [0, 3]"),
    (dict(channel=-1), "`channel` must be in [0, 3]"),
    (dict(channel=1, y=5), "`y` must be in [0, 4]"),
    (dict(channel=1, x=7), "`x` must be in [0, 6]"),
    (dict(channel=1.0), "`channel` must be an int"),
    (dict(channel=True), "`channel` must be an int"),
])
def test_unit_mask_rejects_bad_indices(kwargs, arg):
    with pytest.raises(MaskError) as info:
        unit_mask((4, 5, 7), **kwargs)
    assert arg in str(info.value)


def test_unit_mask_fc_rejects_spatial_position():
    with pytest.raises(MaskError, match="`y` must be None for a layer of shape"):
        unit_mask((10,), 1, y=0)


@pytest.mark.parametrize("shape", [(4, 5), (0, 3, 3), "abc", (4, 5.5, 6), (), (True, 2, 2)])
def test_bad_shape(shape):
    with pytest.raises(ShapeError, match="`shape` must be a feature shape"):
        unit_mask(shape, 0)


def test_channel_mask():
    mask = channel_mask((3, 2, 4), 1)
    assert mask.sum() == 8 and mask[1].all() and not mask[0].any() and not mask[2].any()
    assert channel_mask((3, 2, 4), [0, 2]).sum() == 16
    assert _on(channel_mask((5,), 4)) == [(4,)]
    with pytest.raises(MaskError, match="`channel` must be in"):
        channel_mask((3, 2, 4), 3)
    with pytest.raises(MaskError, match="non-empty"):
        channel_mask((3, 2, 4), [])


def test_region_mask():
    mask = region_mask((3, 6, 6), channels=[0, 2], y=(1, 3), x=(2, 5))
    expected = torch.zeros(3, 6, 6, dtype=torch.bool)
    expected[[0, 2], 1:3, 2:5] = True
    assert torch.equal(mask, expected)
    assert region_mask((3, 6, 6)).all()
    assert region_mask((3, 6, 6), y=(5, 6)).sum() == 3 * 6
    assert torch.equal(region_mask((4,), channels=[1, 3]), torch.tensor([False, True, False, True]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(y=(3, 3)), "`y` must be a half-open range"),
    (dict(y=(-1, 2)), "`y` must be a half-open range"),
    (dict(x=(0, 7)), "`x` must be a half-open range (start, stop) with 0 <= start < stop <= 6"),
    (dict(x=5), "`x` must be a half-open range"),
    (dict(channels=9), "`channels` must be in [0, 2]"),
])
def test_region_mask_rejects(kwargs, message):
    with pytest.raises(MaskError) as info:
        region_mask((3, 6, 6), **kwargs)
    assert message in str(info.value)


def test_unit_masks_one_per_item():
    masks = unit_masks((4, 5, 5), [0, 3, 1], y=[0, 1, 4], x=2)
    assert masks.shape == (3, 4, 5, 5)
    assert [_on(m) for m in masks] == [[(0, 0, 2)], [(3, 1, 2)], [(1, 4, 2)]]
    centred = unit_masks((4, 5, 5), [2, 3])
    assert [_on(m) for m in centred] == [[(2, 2, 2)], [(3, 2, 2)]]
    fc = unit_masks((10,), [1, 9])
    assert fc.shape == (2, 10) and fc.sum() == 2 and fc[1, 9]


def test_unit_masks_rejects_length_mismatch():
    with pytest.raises(MaskError, match="one per channel"):
        unit_masks((4, 5, 5), [0, 1], y=[1, 2, 3])


def test_every_nth_channel_matches_cnnpref_examples():
    conv1 = every_nth_channel((96, 55, 55))
    assert conv1 == list(range(0, 96, 3)) and conv1[-1] == 93 and len(conv1) == 32  # spec Q13
    fc8 = every_nth_channel((1000,))
    assert fc8 == list(range(0, 1000, 40)) and fc8[-1] == 960 and len(fc8) == 25
    assert every_nth_channel(10) == list(range(10))  # int(10 / 25) = 0 -> step 1
    assert every_nth_channel(10, step=4) == [0, 4, 8]
    with pytest.raises(MaskError, match="`step` must be a positive int"):
        every_nth_channel(10, step=0)


def test_as_bool_mask_accepts_binary_inputs():
    expected = torch.tensor([[False, True], [True, False]])
    for value in ([[0, 1], [1, 0]], np.array([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[0, 1], [1, 0]]),
                  np.array([[False, True], [True, False]]),
                  torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)):
        result = as_bool_mask(value)
        assert result.dtype == torch.bool and torch.equal(result, expected)


def test_as_bool_mask_rejects():
    with pytest.raises(MaskError, match="weights? belong in `weight`"):
        as_bool_mask([0, 0.5, 1])
    with pytest.raises(MaskError, match="values such as \\[2.0\\]"):
        as_bool_mask(np.array([0, 2]))
    with pytest.raises(MaskError, match="NaN or infinite"):
        as_bool_mask([0.0, float("nan"), 1.0])
    with pytest.raises(MaskError, match="NaN or infinite"):
        as_bool_mask([0.0, float("inf")])
    with pytest.raises(MaskError, match="at least one unit"):
        as_bool_mask(torch.zeros(3, 2, 2))
    with pytest.raises(MaskError, match="feature shape"):
        as_bool_mask(1)
