"""feature_match: exact values on a hand-set conv (one layer, two layers with weights, masks,
batches), gradients, per-item losses, composition with Lucent, errors before any work."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from lucent.optvis import objectives as lucent_objectives
from lucent.optvis import param
from lucent.optvis.render import render_vis
from torch import nn

import lucent_dgn as ld
from lucent_dgn.errors import ConfigError, LayerNotFoundError, MaskError, ShapeError
from lucent_dgn.objectives import channel_mask, feature_match, total_variation, unit_mask

SHAPE = (2, 3, 3)
#: Channel 0 of hand_conv on hand_input: 9 * (5 (y + 1) + (x + 1)); channel 1 is 0.5 minus it.
CH0 = 9.0 * np.array([[6, 7, 8], [11, 12, 13], [16, 17, 18]], dtype=np.float64)
A = np.stack([CH0, 0.5 - CH0])            # hand_conv(hand_input)[0], (2, 3, 3)
A1 = np.stack([CH0 + 9, 0.5 - CH0 - 9])   # the same for hand_input + 1


def _T(acts):
    """A Lucent-style accessor: name -> activation."""
    return lambda name: acts[name]


def _value(objective, acts):
    return objective(_T(acts)).item()


@pytest.fixture
def acts(hand_conv, hand_input):
    with torch.no_grad():
        return {"0": hand_conv(hand_input)}


@pytest.fixture
def two_layer(hand_conv):
    """hand_conv followed by a ReLU: layer "0" is the conv, layer "1" its rectified output."""
    return nn.Sequential(OrderedDict([("0", hand_conv[0]), ("1", nn.ReLU())])).eval()


def test_hand_values_are_as_documented(acts):
    np.testing.assert_allclose(acts["0"][0].numpy(), A)


# ----- one layer ------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric, reduction, target, expected", [
    ("mse", "sum", A + 1, 18.0),                                  # 18 units, each off by 1
    ("mse", "mean", A + 1, 1.0),
    ("mse", "sum", A + np.stack([np.full((3, 3), 2.0), np.zeros((3, 3))]), 36.0),
    ("inner", "sum", np.stack([np.ones((3, 3)), np.zeros((3, 3))]), -972.0),   # - sum of channel 0
    ("inner", "mean", np.stack([np.ones((3, 3)), np.zeros((3, 3))]), -54.0),
    ("corr", "sum", 2 * A + 3, 0.0),                              # perfectly correlated
    ("corr", "sum", -A, 2.0),                                     # perfectly anti-correlated
])
def test_one_layer_exact(acts, metric, reduction, target, expected):
    objective = feature_match({"0": target}, metric=metric, reduction=reduction)
    assert _value(objective, acts) == pytest.approx(expected, abs=1e-4)


def test_corr_is_one_minus_pearson(acts):
    target = np.arange(18, dtype=np.float64).reshape(SHAPE) ** 2
    r = np.corrcoef(A.ravel(), target.ravel())[0, 1]
    assert _value(feature_match({"0": target}, metric="corr"), acts) == pytest.approx(1 - r, abs=1e-6)


@pytest.mark.parametrize("metric, mask, target, expected", [
    ("mse", channel_mask(SHAPE, 0), A + 1, 9.0),
    ("mse", unit_mask(SHAPE, 0), A + 1, 1.0),
    ("mse", channel_mask(SHAPE, 1), A + np.stack([np.full((3, 3), 1.0), np.full((3, 3), 3.0)]), 81.0),
    ("inner", unit_mask(SHAPE, 0), np.ones(SHAPE), -108.0),       # the centre of channel 0
    ("corr", channel_mask(SHAPE, 0), np.stack([CH0, -CH0]), 0.0),  # only channel 0 counts
])
def test_masks_select_units(acts, metric, mask, target, expected):
    objective = feature_match({"0": target}, masks={"0": mask}, metric=metric)
    assert _value(objective, acts) == pytest.approx(expected, abs=1e-4)


def test_gradient_is_twice_the_weighted_error():
    act = torch.tensor(A, dtype=torch.float32)[None].requires_grad_(True)
    target = A + np.arange(18).reshape(SHAPE)
    objective = feature_match({"0": target}, layer_weights={"0": 0.25})
    objective(_T({"0": act})).backward()
    np.testing.assert_allclose(act.grad[0].numpy(), 2 * 0.25 * (A - target), rtol=1e-6)
    act.grad = None
    feature_match({"0": target}, metric="inner")(_T({"0": act})).backward()
    np.testing.assert_allclose(act.grad[0].numpy(), -target, rtol=1e-6)


# ----- two layers with weights ------------------------------------------------------------------------

def _two_layer_targets():
    relu = np.maximum(A, 0)
    off = relu.copy()
    off[0, 0, 0] += 2.0                   # layer "1" differs in one unit by 2: loss 4
    return {"0": A + 1, "1": off}, relu   # layer "0": loss 18


@pytest.mark.parametrize("weights, expected", [
    ({"0": 0.5, "1": 2.0}, 0.5 * 18 + 2.0 * 4),
    (None, (18 + 4) / 2),
    ("equal", (18 + 4) / 2),
])
def test_two_layers_with_weights(two_layer, hand_input, weights, expected):
    targets, _ = _two_layer_targets()
    with torch.no_grad():
        acts = ld.features_of(two_layer, hand_input, ["0", "1"])
    assert _value(feature_match(targets, layer_weights=weights), acts) == pytest.approx(expected, abs=1e-4)


def test_inverse_norm_weights_follow_icnn_scripts(two_layer, hand_input):
    targets, relu = _two_layer_targets()
    n0 = ((A + 1) ** 2).sum()
    n1 = (targets["1"] ** 2).sum()
    w0, w1 = (1 / n0) / (1 / n0 + 1 / n1), (1 / n1) / (1 / n0 + 1 / n1)   # 1/||t||^2, normalised to sum 1
    acts = ld.features_of(two_layer, hand_input, ["0", "1"])
    objective = feature_match(targets, layer_weights="inverse_norm")
    assert _value(objective, acts) == pytest.approx(w0 * 18 + w1 * 4, rel=1e-5)
    layers = objective.layer_losses(acts)
    assert layers["0"].item() == pytest.approx(w0 * 18, rel=1e-5) and layers["1"].item() == pytest.approx(w1 * 4,
                                                                                                            rel=1e-5)
    weights = objective.check(two_layer, (1, 5, 5))
    assert weights["0"].item() == pytest.approx(w0) and weights["1"].item() == pytest.approx(w1)


# ----- batches ----------------------------------------------------------------------------------------

@pytest.fixture
def batch_acts(hand_conv, hand_input):
    with torch.no_grad():
        return {"0": hand_conv(torch.cat([hand_input, hand_input + 1]))}


def test_batch_acts_are_as_documented(batch_acts):
    np.testing.assert_allclose(batch_acts["0"][1].numpy(), A1)


def test_per_item_targets_give_per_item_losses(batch_acts):
    objective = feature_match({"0": np.stack([A + 1, A1 + 3])})
    assert objective.item_losses(batch_acts).tolist() == pytest.approx([18.0, 162.0])
    assert _value(objective, batch_acts) == pytest.approx(180.0)


def test_shared_target_applies_to_every_item(batch_acts):
    # item 1 against item 0's target: channel 0 off by 9 - 1 = 8, channel 1 by -9 - 1 = -10
    expected = [18.0, 9 * 64 + 9 * 100]
    for target in (A + 1, (A + 1)[None]):   # (C, H, W) and (1, C, H, W) are both shared
        assert feature_match({"0": target}).item_losses(batch_acts).tolist() == pytest.approx(expected)


def test_per_item_masks(batch_acts):
    masks = torch.stack([channel_mask(SHAPE, 0), channel_mask(SHAPE, 1)])
    objective = feature_match({"0": np.stack([A + 1, A1 + 3])}, masks={"0": masks})
    assert objective.item_losses(batch_acts).tolist() == pytest.approx([9.0, 81.0])
    corr = feature_match({"0": np.stack([A, -A1])}, masks={"0": masks}, metric="corr")
    assert corr.item_losses(batch_acts).tolist() == pytest.approx([0.0, 2.0], abs=1e-6)


def test_batch_render_equals_one_by_one_with_lbfgs(tiny_cnn):
    """Declared per-item losses: L-BFGS-B keeps one history per item, so a batch equals single renders."""
    torch.manual_seed(1)
    originals = torch.rand(2, 3, 16, 16)
    targets = ld.features_of(tiny_cnn, originals, ["features.2"])

    def run(target, batch):
        p = ld.PixelImage(16, batch=batch, space="unit", init="gray")
        return ld.render(tiny_cnn, feature_match(target), p, ld.LBFGSB(max_iter=15), 15, progress=False)

    both = run(targets, 2)
    for i in range(2):
        single = run({"features.2": targets["features.2"][i]}, 1)
        np.testing.assert_allclose(both.raw[i], single.raw[0], atol=1e-5)
    assert both.loss_history[-1] < 0.25 * both.loss_history[0]


# ----- composition and Lucent ----------------------------------------------------------------------

def test_composes_with_lucent_and_regularisers(acts, hand_input):
    fm = feature_match({"0": A + 1})
    channel = lucent_objectives.channel("0", 0)
    T = _T(dict(acts, input=hand_input))
    assert (fm + channel)(T).item() == pytest.approx(18.0 - CH0.mean(), abs=1e-3)
    assert (2 * fm - fm)(T).item() == pytest.approx(18.0, abs=1e-4)
    tv = total_variation(weight=0.5)
    assert (fm + tv)(T).item() == pytest.approx(18.0 + tv(T).item(), abs=1e-3)


def test_render_reduces_the_loss_with_a_regulariser(tiny_cnn):
    torch.manual_seed(0)
    targets = ld.features_of(tiny_cnn, torch.rand(1, 3, 16, 16), ["features.0", "features.2"])
    objective = feature_match(targets, layer_weights="inverse_norm") + total_variation(weight=1e-3)
    result = ld.render(tiny_cnn, objective, ld.PixelImage(16, space="unit", init="gray"),
                       ld.MomentumGD(lr=0.01, decay=0.0), 30, progress=False)
    assert result.loss_history[-1] < 0.5 * result.loss_history[0]


def test_runs_under_lucent_render_vis(tiny_cnn):
    torch.manual_seed(0)
    original = torch.rand(1, 3, 16, 16)
    target = ld.features_of(tiny_cnn, original, ["features.2"])["features.2"]
    objective = feature_match({"features_2": target})
    torch.manual_seed(0)
    params, image_f = param.image(16)
    start = image_f().detach().clone()
    images = render_vis(tiny_cnn, objective, param_f=lambda: (params, image_f), thresholds=(30,), transforms=[],
                        preprocess=False, fixed_image_size=16, show_image=False, progress=False)
    end = torch.from_numpy(images[-1]).permute(0, 3, 1, 2)

    def loss(img):
        with torch.no_grad():
            return ((tiny_cnn.features(img) - target) ** 2).sum().item()
    assert loss(end) < 0.7 * loss(start)


# ----- errors, before any work -------------------------------------------------------------------

def test_target_shape_that_does_not_fit_the_layer(hand_conv):
    objective = feature_match({"0": np.zeros((2, 4, 4))})
    message = r"`targets\['0'\]` must be the feature shape of layer '0', \(2, 3, 3\), or one target per batch item"
    with pytest.raises(ShapeError, match=message + r".*got shape \(2, 4, 4\)"):
        objective.check(hand_conv, (1, 5, 5))
    steps = []
    with pytest.raises(ShapeError, match=message):   # the render's validation pass, before any step
        ld.render(hand_conv, objective, ld.PixelImage(5, space="gray"), "gd", 3, progress=False,
                  callbacks=[steps.append], input_space=ld.UnitSpace(1))
    assert steps == []


def test_per_item_targets_of_another_batch_size(hand_conv):
    objective = feature_match({"0": np.zeros((3,) + SHAPE)})
    with pytest.raises(ShapeError, match=r"\(2, 2, 3, 3\) \(batch size 2\); got shape \(3, 2, 3, 3\)"):
        objective.check(hand_conv, (1, 5, 5), batch=2)


def test_unknown_layer_names_close_ones(tiny_cnn):
    objective = feature_match({"features.3": np.zeros(4)})
    with pytest.raises(LayerNotFoundError, match=r"`targets\['features.3'\]` must be a layer of Sequential; "
                                                 r"got 'features.3'. Did you mean 'features.2'"):
        objective.check(tiny_cnn, (3, 16, 16))


def test_nan_in_targets_is_named():
    target = np.ones(SHAPE)
    target[0, 1, 1] = np.nan
    with pytest.raises(ConfigError, match=r"`targets\['0'\]` must be finite everywhere; got 1 NaN value\(s\) of 18"):
        feature_match({"0": target})
    with pytest.raises(ConfigError, match="infinite"):
        feature_match({"0": np.full(SHAPE, np.inf)})


def test_layer_weight_for_a_layer_without_target():
    with pytest.raises(ConfigError, match=r"`layer_weights` must be a weight only for layers with a target "
                                          r"\('0'\); got a weight for 'fc8'"):
        feature_match({"0": A}, layer_weights={"0": 1.0, "fc8": 2.0})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(layer_weights={"0": 1.0}), ConfigError, r"one weight for every target layer; got no weight for '1'"),
    (dict(layer_weights={"0": -1.0, "1": 1.0}), ConfigError, r"`layer_weights\['0'\]` must be a finite number >= 0"),
    (dict(layer_weights="norm"), ConfigError, r"None, 'equal', 'inverse_norm' or a mapping"),
    (dict(metric="l2"), ConfigError, r"`metric` must be one of 'mse', 'inner', 'corr'; got 'l2'"),
    (dict(reduction="max"), ConfigError, r"`reduction` must be one of 'sum', 'mean'"),
    (dict(masks={"2": np.ones(SHAPE)}), ConfigError, r"a mask only for layers with a target"),
    (dict(masks={"0": np.full(SHAPE, 0.5)}), MaskError, r"masks\['0'\]"),
])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        feature_match({"0": A, "1": A}, **kwargs)


@pytest.mark.parametrize("targets", [None, {}, [A], {"0": "abc"}, {"0": np.array(1.0)}, {0: A}])
def test_bad_targets(targets):
    with pytest.raises((ConfigError, ShapeError), match="targets"):
        feature_match(targets)


def test_mask_errors_at_check(hand_conv):
    with pytest.raises(MaskError, match=r"`masks\['0'\]` must be the feature shape of layer '0', \(2, 3, 3\)"):
        feature_match({"0": A}, masks={"0": np.ones((2, 2, 2))}).check(hand_conv, (1, 5, 5))
    with pytest.raises(MaskError, match=r"at least one unit of every batch item; got no unit for item\(s\) \[1\]"):
        masks = np.stack([np.ones(SHAPE), np.zeros(SHAPE)])
        feature_match({"0": A}, masks={"0": masks}).check(hand_conv, (1, 5, 5), batch=2)


def test_degenerate_targets_for_corr_and_inverse_norm(hand_conv):
    with pytest.raises(ConfigError, match=r"not constant over the selected units"):
        feature_match({"0": np.ones(SHAPE)}, metric="corr").check(hand_conv, (1, 5, 5))
    with pytest.raises(ConfigError, match=r"'inverse_norm' only with targets that are not all zero"):
        feature_match({"0": np.zeros(SHAPE)}, layer_weights="inverse_norm").check(hand_conv, (1, 5, 5))


def test_same_value_in_the_render_loop(hand_conv, hand_input):
    p = ld.PixelImage(5, space="gray", bounded=False)
    with torch.no_grad():
        p.variable.copy_(hand_input)
    result = ld.render(hand_conv, feature_match({"0": A + 1}), p, ld.MomentumGD(lr=0.0, decay=0.0), 1, progress=False,
                       input_space=ld.UnitSpace(1))
    assert result.loss_history[0] == pytest.approx(18.0, abs=1e-4)


def test_each_layer_records_its_loss_per_step(two_layer, hand_input):
    targets, _ = _two_layer_targets()
    p = ld.PixelImage(5, space="gray", bounded=False)
    with torch.no_grad():
        p.variable.copy_(hand_input)
    result = ld.render(two_layer, feature_match(targets, layer_weights={"0": 0.5, "1": 2.0}), p,
                       ld.MomentumGD(lr=0.01, decay=0.0), 4, progress=False, input_space=ld.UnitSpace(1))
    histories = result.activation_histories
    assert set(histories) == {"feature_match:0", "feature_match:1"}
    assert histories["feature_match:0"][0, 0] == pytest.approx(0.5 * 18) and histories["feature_match:1"][0, 0] == \
        pytest.approx(2.0 * 4)
    total = histories["feature_match:0"].sum(1) + histories["feature_match:1"].sum(1)
    np.testing.assert_allclose(total, result.loss_history, rtol=1e-5)
