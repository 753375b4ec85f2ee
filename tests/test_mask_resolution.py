"""Masks defined relative to a feature map resolve against the map the objective actually sees,
whose height and width follow the input size; explicit arrays must fit exactly."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from lucent.optvis import objectives as lobj
from lucent.optvis import param as lparam
from lucent.optvis.render import render_vis
from torch import nn

import lucent_dgn as ld
from lucent_dgn.errors import MaskError
from lucent_dgn.objectives import (
    MaskSpec, as_bool_mask, channel_mask, masked_units, region_mask, resolve_mask, unit_mask, unit_masks,
)


def _on(mask: torch.Tensor) -> list:
    return [tuple(i) for i in mask.nonzero().tolist()]


# ----- resolution of each builder ---------------------------------------------------------------

def test_channel_mask_resolves_to_the_same_channel_at_any_size():
    mask = channel_mask((4, 13, 13), [1, 3])
    assert isinstance(mask.mask_spec, MaskSpec) and mask.mask_spec.shape == (4, 13, 13)
    for size in ((14, 14), (6, 9), (1, 1)):
        assert torch.equal(resolve_mask(mask, (4,) + size), channel_mask((4,) + size, [1, 3]))
    assert resolve_mask(mask, (4, 13, 13)) is mask


def test_unit_mask_centre_is_the_centre_of_the_actual_map():
    mask = unit_mask((4, 13, 13), 2)
    assert _on(mask) == [(2, 6, 6)]
    assert _on(resolve_mask(mask, (4, 14, 14))) == [(2, 7, 7)]
    assert _on(resolve_mask(mask, (4, 6, 9))) == [(2, 3, 4)]


def test_relative_positions_and_regions_scale_with_the_map():
    unit = unit_mask((4, 8, 8), 1, y=0.25, x=0.75, relative=True)
    assert _on(unit) == [(1, 2, 6)]
    assert _on(resolve_mask(unit, (4, 12, 16))) == [(1, 3, 12)]
    assert _on(unit_mask((4, 8, 8), 0, y=1.0, x=0.0, relative=True)) == [(0, 7, 0)]  # 1.0 = the last row
    half = region_mask((2, 13, 13), channels=0, y=(0.0, 0.5), x=(0.25, 0.75), relative=True)
    expected = torch.zeros(2, 13, 13, dtype=torch.bool)
    expected[0, 0:6, 3:10] = True  # rows/columns whose centres lie in [0, 0.5) and [0.25, 0.75)
    assert torch.equal(half, expected)
    expected = torch.zeros(2, 14, 14, dtype=torch.bool)
    expected[0, 0:7, 3:10] = True
    assert torch.equal(resolve_mask(half, (2, 14, 14)), expected)
    tiny = region_mask((1, 10, 10), y=(0.41, 0.42), relative=True)  # narrower than a row: the row holding it
    assert tiny[0, :, 0].nonzero().flatten().tolist() == [4]


def test_unit_masks_over_every_nth_channel_resolve_per_item():
    masks = unit_masks((6, 5, 5), ld.every_nth_channel((6, 5, 5), 2))
    resolved = resolve_mask(masks, (6, 8, 7))
    assert resolved.shape == (3, 6, 8, 7)
    assert [_on(m) for m in resolved] == [[(0, 4, 3)], [(2, 4, 3)], [(4, 4, 3)]]


def test_absolute_positions_resolve_only_along_unchanged_axes():
    mask = unit_mask((4, 13, 13), 2, y=3)  # row 3 (absolute), centre column
    assert _on(resolve_mask(mask, (4, 13, 20))) == [(2, 3, 10)]
    with pytest.raises(MaskError) as info:
        resolve_mask(mask, (4, 14, 14))
    text = str(info.value)
    assert "unit_mask((4, 13, 13), channel=2, y=3)" in text and "absolute positions" in text
    assert "relative=True" in text and "fixed_image_size" in text
    with pytest.raises(MaskError, match="Its y and x are given in absolute positions"):
        resolve_mask(region_mask((4, 13, 13), y=(2, 5), x=(2, 5)), (4, 14, 14))


def test_channel_count_and_layer_kind_never_resolve():
    with pytest.raises(MaskError, match="among 256 channels and the layer has 384"):
        resolve_mask(channel_mask((256, 13, 13), 5), (384, 13, 13))
    with pytest.raises(MaskError, match="do not convert"):
        resolve_mask(unit_mask((10,), 3), (10, 4, 4))


def test_plain_arrays_and_edited_masks_carry_no_spec():
    mask = channel_mask((4, 6, 6), 1)
    assert as_bool_mask(mask).mask_spec.shape == (4, 6, 6)  # kept through validation
    for plain in (mask.numpy(), mask.clone(), mask.tolist(), mask.float()):
        assert getattr(as_bool_mask(plain), "mask_spec", None) is None
    edited = channel_mask((4, 6, 6), 1)
    edited[0, 0, 0] = True  # no longer what the spec says: it must fit exactly
    assert getattr(as_bool_mask(edited), "mask_spec", None) is None
    assert resolve_mask(mask.numpy(), (4, 9, 9)).shape == (4, 6, 6)  # returned as is; the caller checks it


@pytest.mark.parametrize("kwargs, message", [
    (dict(y=1.5, relative=True), "`y` must be a fraction of the map in [0, 1]"),
    (dict(x=-0.1, relative=True), "`x` must be a fraction of the map in [0, 1]"),
    (dict(y=0.5), "`y` must be an int"),
])
def test_relative_coordinates_are_validated(kwargs, message):
    with pytest.raises(MaskError) as info:
        unit_mask((4, 5, 5), 0, **kwargs)
    assert message in str(info.value)
    with pytest.raises(MaskError, match="fractions"):
        region_mask((4, 5, 5), y=(0.6, 0.2), relative=True)


# ----- masked_units on maps of another size -------------------------------------------------------

def _conv() -> nn.Sequential:
    """Conv2d(1, 2, 3, padding=1) summing its 3x3 window (channel 0) and its negation (channel 1):
    the map has the input's height and width."""
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[0].fill_(1.0)
        conv.weight[1].fill_(-1.0)
    return nn.Sequential(conv).eval()


def _accessor(model, x):
    features = {"0": model(x)}
    return lambda name: features[name]


@pytest.mark.parametrize("size", [5, 6, 9])
def test_masked_units_reads_the_resolved_units_exactly(size):
    model = _conv()
    x = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    act = model(x).detach()
    c = size // 2
    built_for = (2, 7, 7)
    cases = [
        (unit_mask(built_for, 0), -act[0, 0, c, c]),
        (channel_mask(built_for, 1), -act[0, 1].sum()),
        (region_mask(built_for, 0, y=(0.0, 0.5), x=(0.0, 1.0), relative=True), -act[0, 0, :size // 2].sum()),
    ]
    for mask, expected in cases:
        torch.testing.assert_close(masked_units("0", mask)(_accessor(model, x)), expected)


def test_per_item_builder_masks_resolve_with_batch_index():
    model = _conv()
    x = torch.arange(2 * 36, dtype=torch.float32).reshape(2, 1, 6, 6)
    act = model(x).detach()
    masks = unit_masks((2, 9, 9), [0, 1])  # built for 9x9, used on 6x6
    torch.testing.assert_close(masked_units("0", masks)(_accessor(model, x)), -(act[0, 0, 3, 3] + act[1, 1, 3, 3]))
    torch.testing.assert_close(masked_units("0", masks, batch=1)(_accessor(model, x)), -act[1, 1, 3, 3])


def test_explicit_array_of_another_size_keeps_the_error_and_hints_at_fixed_image_size():
    model = _conv()
    T = _accessor(model, torch.zeros(1, 1, 6, 6))
    array = np.zeros((2, 7, 7), dtype=bool)
    array[0, 3, 3] = True
    with pytest.raises(MaskError) as info:
        masked_units("0", array)(T)
    text = str(info.value)
    assert "feature shape of layer '0', (2, 6, 6)" in text and "got shape (2, 7, 7)" in text
    assert "fixed_image_size" in text and "channel_mask" in text
    with pytest.raises(MaskError) as info:  # another channel count: no size hint, the spec says why
        masked_units("0", channel_mask((3, 6, 6), 0))(T)
    assert "among 3 channels and the layer has 2" in str(info.value) and "fixed_image_size" not in str(info.value)


# ----- inside render loops ------------------------------------------------------------------------

def _tv_style_net() -> nn.Module:
    """A torchvision-style net whose ``features_2`` map is (6, S - 4, S - 4) for an S px input."""
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 6, 3))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    return nn.Sequential(OrderedDict(features=features, head=head)).eval()


def test_render_vis_with_a_mask_built_for_another_input_size():
    """Lucent upsamples the 16 px image to 224 px (no fixed_image_size): the map is 220x220, the
    mask was built for the 12x12 map of a 16 px input; Lucent's own channel() works there too."""
    model = _tv_style_net()
    objective = masked_units("features_2", channel_mask((6, 12, 12), 3)) \
        + 0.5 * masked_units("features_2", unit_mask((6, 12, 12), 1)) + lobj.channel("features_2", 0)
    with ld.preserve_pre_activations(model):
        images = render_vis(model, objective, lambda: lparam.image(16), transforms=[], preprocess=False,
                            thresholds=(2,), show_image=False, progress=False)
    assert images[-1].shape == (1, 16, 16, 3)


def test_render_vis_alexnet_standard_transforms_channel_mask_on_features_8():
    """The case of torchvision's AlexNet at 224 px: Lucent's standard transforms make conv5 14x14
    (or another size at each step) while the mask was built for the 13x13 map of a 224 px input."""
    from torchvision.models import alexnet
    torch.manual_seed(0)
    model = alexnet(weights=None).eval()
    np.random.seed(0)  # Lucent's transforms draw from numpy's global generator
    sizes = []
    mask = channel_mask((256, 13, 13), 5)
    inner = masked_units("features_8", mask)

    def func(T):
        sizes.append(tuple(T("features_8").shape[2:]))
        return inner(T)
    with ld.preserve_pre_activations(model):
        images = render_vis(model, lobj.Objective(func), lambda: lparam.image(224), thresholds=(2,), show_image=False,
                            progress=False)
    assert images[-1].shape == (1, 224, 224, 3)
    assert any(s != (13, 13) for s in sizes)


@pytest.mark.parametrize("mask", [channel_mask((6, 12, 12), 2), unit_mask((6, 12, 12), 2),
                                  region_mask((6, 12, 12), 2, y=(0.25, 0.75), x=(0.25, 0.75), relative=True)],
                         ids=["channel", "centre", "relative-region"])
def test_our_render_with_two_image_sizes(mask):
    model = _tv_style_net()
    objective = masked_units("features.2", mask)
    finals = {}
    for size in (16, 24):
        result = ld.render(model, objective, ld.PixelImage(size, space="unit", init="gray", seed=0), "adam", 3,
                           seed=0, progress=False)
        assert result.images.shape == (1, size, size, 3)
        x = torch.from_numpy(result.model_input)
        with torch.no_grad():
            act = model.features(x)[0]
        expected = act[resolve_mask(mask, tuple(act.shape))].mean().item()
        finals[size] = (float(result.final_activation[0]), expected)
    for got, expected in finals.values():
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
