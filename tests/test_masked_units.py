"""masked_units: exact values on a hand-set conv, composition with Lucent, Lucent's render_vis, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from lucent.optvis import objectives as lucent_objectives
from lucent.optvis import param
from lucent.optvis.render import render_vis

from lucent_dgn.errors import ConfigError, LayerNotFoundError, MaskError, ShapeError
from lucent_dgn.objectives import (
    channel_mask, masked_units, read_activation, region_mask, unit_mask, unit_masks,
)
from lucent_dgn.render.hooks import ActivationAccessor, preserve_pre_activations

SHAPE = (2, 3, 3)


def _dict_accessor(model, x):
    """Lucent-style accessor: name -> activation, for a Sequential with one conv named "0"."""
    features = {"0": model(x)}
    return lambda name: features[name]


def _own_accessor(model, x):
    return ActivationAccessor(model, {"0": model(x)}, model_input=x)


@pytest.fixture
def batch2(hand_input):
    return torch.cat([hand_input, 2 * hand_input])


def test_hand_conv_output_is_as_documented(hand_conv, hand_input):
    out = hand_conv(hand_input)[0]
    assert out[0, 1, 1] == 108 and out[1, 1, 1] == -107.5 and out[1].sum() == -967.5


@pytest.mark.parametrize("mask, weight, reduction, expected", [
    (unit_mask(SHAPE, 0), 1.0, "sum", -108.0),            # centre (1, 1) of channel 0: 9 * 12
    (unit_mask(SHAPE, 0), 1.0, "mean", -108.0),
    (unit_mask(SHAPE, 1), 1.0, "sum", 107.5),             # raw, pre-ReLU: 0.5 - 108
    (unit_mask(SHAPE, 0), 2.5, "sum", -270.0),
    (channel_mask(SHAPE, 1), 1.0, "sum", 967.5),          # 9 units, sum 4.5 - 9 * 108
    (channel_mask(SHAPE, 1), 1.0, "mean", 107.5),
    (channel_mask(SHAPE, 1), np.array([[[2.0]], [[3.0]]]), "sum", 2902.5),
    (region_mask(SHAPE, 0, y=(0, 2), x=(1, 3)), 1.0, "sum", -360.0),  # 9 * (7 + 8 + 12 + 13)
    (unit_mask(SHAPE, 0).numpy().astype(np.float32), 1.0, "sum", -108.0),
])
def test_exact_values(hand_conv, hand_input, mask, weight, reduction, expected):
    objective = masked_units("0", mask, weight=weight, reduction=reduction)
    for T in (_dict_accessor(hand_conv, hand_input), _own_accessor(hand_conv, hand_input)):
        assert objective(T).item() == pytest.approx(expected, abs=1e-4)


def test_weight_map_multiplies_before_masking(hand_conv, hand_input):
    weight = torch.ones(SHAPE)
    weight[0, 1, 1] = 4.0
    weight[1] = 100.0  # unselected units do not count
    objective = masked_units("0", unit_mask(SHAPE, 0), weight=weight)
    assert objective(_dict_accessor(hand_conv, hand_input)).item() == pytest.approx(-432.0)


def test_batch_of_masks(hand_conv, batch2):
    masks = unit_masks(SHAPE, [0, 1])  # item 0: ch 0 centre = 108; item 1: ch 1 centre = 0.5 - 216
    T = _own_accessor(hand_conv, batch2)
    assert masked_units("0", masks)(T).item() == pytest.approx(107.5)
    assert masked_units("0", masks, reduction="mean")(T).item() == pytest.approx(53.75)
    assert torch.allclose(T.activations["masked_units"], torch.tensor([108.0, -215.5]))
    assert masked_units("0", masks, batch=1)(T).item() == pytest.approx(215.5)


def test_shared_mask_sums_over_batch_and_batch_index(hand_conv, batch2):
    T = _dict_accessor(hand_conv, batch2)
    mask = unit_mask(SHAPE, 0)
    assert masked_units("0", mask)(T).item() == pytest.approx(-324.0)
    assert masked_units("0", mask, reduction="mean")(T).item() == pytest.approx(-162.0)
    assert masked_units("0", mask, batch=0)(T).item() == pytest.approx(-108.0)
    assert masked_units("0", mask, batch=1)(T).item() == pytest.approx(-216.0)


def test_report_is_signed_mean_of_selected_units(hand_conv, batch2):
    T = _own_accessor(hand_conv, batch2)
    masked_units("0", channel_mask(SHAPE, 1), weight=3.0)(T)
    assert torch.allclose(T.activations["masked_units"], torch.tensor([-107.5, -215.5]))


def test_layer_as_module_dotted_and_lucent_name(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    conv = tiny_cnn.features[2]
    act = conv(tiny_cnn.features[1](tiny_cnn.features[0](x)))
    expected = -act[:, 3, 6, 6].sum()
    T = ActivationAccessor(tiny_cnn, {"features.2": act}, model_input=x)
    mask = unit_mask((6, 12, 12), 3)
    for layer in (conv, "features.2", "features_2"):
        assert torch.allclose(masked_units(layer, mask)(T), expected)
    lucent_style = lambda name: {"features_2": act}[name]  # noqa: E731
    assert torch.allclose(masked_units("features.2", mask)(lucent_style), expected)
    with pytest.raises(LayerNotFoundError, match="Pass the layer's name instead"):
        masked_units(conv, mask)(lucent_style)


def test_is_a_lucent_objective_with_attributes(hand_conv, hand_input):
    mask = unit_mask(SHAPE, 1)
    objective = masked_units("0", mask, weight=2.0, reduction="mean", batch=0)
    assert isinstance(objective, lucent_objectives.Objective)
    assert objective.layers == ("0",)
    assert torch.equal(objective.mask, mask) and float(objective.weight) == 2.0
    assert objective.reduction == "mean" and objective.batch == 0
    assert objective.name == "masked_units"
    assert objective.description == "Masked Units [0, 1 units, weight=2, mean, batch=0]"


def test_composes_with_lucent_objectives(hand_conv, hand_input):
    ours = masked_units("0", unit_mask(SHAPE, 1))                  # 107.5
    theirs = lucent_objectives.channel("0", 0)                     # -mean of channel 0 = -108
    for T in (_dict_accessor(hand_conv, hand_input), _own_accessor(hand_conv, hand_input)):
        assert (theirs + 3 * ours)(T).item() == pytest.approx(-108 + 322.5)
        assert (ours - theirs)(T).item() == pytest.approx(215.5)
        assert (-ours)(T).item() == pytest.approx(-107.5)
        assert lucent_objectives.Objective.sum([ours, theirs, ours])(T).item() == pytest.approx(107.0)
        assert sum([ours, ours / 2])(T).item() == pytest.approx(161.25)
    assert "Masked Units" in (theirs + ours).description


def test_float64_and_cache(hand_conv, hand_input):
    model = hand_conv.double()
    objective = masked_units("0", unit_mask(SHAPE, 0), weight=np.float32(2.0))
    value = objective(_dict_accessor(model, hand_input.double()))
    assert value.dtype == torch.float64 and value.item() == -216.0
    assert objective(_dict_accessor(model, hand_input.double())).item() == -216.0


def test_gradient_flows_to_input(hand_conv, hand_input):
    x = hand_input.clone().requires_grad_(True)
    masked_units("0", unit_mask(SHAPE, 0), weight=2.0)(_dict_accessor(hand_conv, x)).backward()
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = -2.0  # d(-2 * sum window)/dx
    assert torch.equal(x.grad[0, 0], expected)


# ----- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(mask=[0.0, 0.5, 1.0]), MaskError, "Unit weights belong in `weight`"),
    (dict(mask=torch.zeros(SHAPE)), MaskError, "at least one unit"),
    (dict(mask=[1.0, float("nan")]), MaskError, "NaN or infinite"),
    (dict(mask=[1, 0], weight=float("inf")), ConfigError, "`weight` must be finite"),
    (dict(mask=[1, 0], weight=np.array([1.0, np.nan])), ConfigError, "`weight` must be finite"),
    (dict(mask=[1, 0], weight="heavy"), ConfigError, "`weight` must be a number"),
    (dict(mask=[1, 0], reduction="max"), ConfigError, "`reduction` must be one of 'sum', 'mean'; got 'max'"),
    (dict(mask=[1, 0], batch=-1), ConfigError, "`batch` must be None or a batch index >= 0"),
    (dict(mask=[1, 0], batch=[0, 1]), ConfigError, "`batch` must be"),
])
def test_construction_errors(kwargs, error, message):
    with pytest.raises(error) as info:
        masked_units("0", **kwargs)
    assert message in str(info.value)


def test_layer_type_error():
    with pytest.raises(TypeError, match="`layer` must be an nn.Module or a layer name"):
        masked_units(3, [1, 0])


def test_shape_mismatch_names_layer_and_shapes(hand_conv, batch2):
    T = _dict_accessor(hand_conv, batch2)
    with pytest.raises(MaskError) as info:
        masked_units("0", unit_mask((2, 4, 4), 0).numpy())(T)  # an array: it must fit exactly
    text = str(info.value)
    assert "'0'" in text and "(2, 3, 3)" in text and "shape (2, 4, 4)" in text and "(2, 2, 3, 3)" in text
    with pytest.raises(MaskError) as info:
        masked_units("0", unit_masks(SHAPE, [0, 1, 1]))(T)
    assert "batch size 2" in str(info.value) and "shape (3, 2, 3, 3)" in str(info.value)


def test_per_item_mask_with_empty_item(hand_conv, batch2):
    masks = unit_masks(SHAPE, [0, 1])
    masks[1] = False
    with pytest.raises(MaskError, match=r"no unit for item\(s\) \[1\]"):
        masked_units("0", masks)(_dict_accessor(hand_conv, batch2))


def test_weight_shape_and_batch_range_errors(hand_conv, batch2):
    T = _dict_accessor(hand_conv, batch2)
    with pytest.raises(ShapeError, match="`weight` must be a scalar or an array broadcastable"):
        masked_units("0", unit_mask(SHAPE, 0), weight=np.ones(4))(T)
    with pytest.raises(ConfigError, match=r"`batch` must be a batch index in \[0, 1\]; got 2"):
        masked_units("0", unit_mask(SHAPE, 0), batch=2)(T)


# ----- under Lucent's render_vis ------------------------------------------------------------------

def _render(model, objective, steps=20, seed=0):
    torch.manual_seed(seed)
    params, image_f = param.image(16)
    start = image_f().detach().clone()
    images = render_vis(model, objective, param_f=lambda: (params, image_f), thresholds=(steps,),
                        transforms=[], preprocess=False, fixed_image_size=16, show_image=False, progress=False)
    end = torch.from_numpy(images[-1]).permute(0, 3, 1, 2)
    return start, end


def test_render_vis_raises_masked_units(tiny_cnn):
    mask = unit_mask((6, 12, 12), 3)
    with torch.no_grad():
        unit = lambda img: tiny_cnn.features(img)[0, 3, 6, 6].item()  # noqa: E731
    for layer in ("features.2", tiny_cnn.features[2]):
        start, end = _render(tiny_cnn, masked_units(layer, mask))
        with torch.no_grad():
            assert unit(end) > unit(start) + 0.05


def test_render_vis_composed_with_lucent_channel(tiny_cnn):
    objective = lucent_objectives.channel("head_2", 1) + 0.5 * masked_units("features_2", channel_mask((6, 12, 12), 0))
    start, end = _render(tiny_cnn, objective)
    with torch.no_grad():
        value = lambda img: (tiny_cnn(img)[0, 1] + 0.5 * tiny_cnn.features(img)[0, 0].sum()).item()  # noqa: E731
        assert value(end) > value(start)


def _recording(model, layer, seen):
    masked = masked_units(layer, channel_mask((4, 14, 14), 0))

    def func(T):
        seen.setdefault("act", read_activation(T, layer).detach().clone())
        seen.setdefault("input", read_activation(T, "input").detach().clone())
        return masked(T)
    return lucent_objectives.Objective(func)


def test_inplace_relu_warns_once_and_preserve_pre_activations_fixes_it(tiny_cnn):
    seen = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _render(tiny_cnn, _recording(tiny_cnn, "features.0", seen), steps=3)
    ours = [w for w in caught if "preserve_pre_activations" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, UserWarning)
    assert seen["act"].min() >= 0  # overwritten by ReLU(inplace=True)

    seen = {}
    with warnings.catch_warnings(record=True) as caught, preserve_pre_activations(tiny_cnn):
        warnings.simplefilter("always")
        _render(tiny_cnn, _recording(tiny_cnn, tiny_cnn.features[0], seen), steps=3)
    assert not [w for w in caught if "preserve_pre_activations" in str(w.message)]
    assert tiny_cnn.features[1].inplace is True  # restored
    with torch.no_grad():
        expected = tiny_cnn.features[0](seen["input"])
    assert seen["act"].min() < 0
    assert torch.allclose(seen["act"], expected, atol=1e-6)


def test_unknown_lucent_name_suggests(tiny_cnn):
    with pytest.raises(LayerNotFoundError, match="Did you mean 'features_2'"):
        _render(tiny_cnn, masked_units("features_22", unit_mask((6, 12, 12), 0)), steps=1)
