"""Captum interop: neuron selectors from masks, module resolution, image conversion, masks from attributions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerConductance, NeuronGradient, NeuronIntegratedGradients

from lucent_dgn.errors import ConfigError, LayerNotFoundError, MaskError, ShapeError
from lucent_dgn.interop import as_neuron_selector, mask_from_attribution, module_for, to_hwc
from lucent_dgn.objectives import channel_mask, masked_units, region_mask, unit_mask, unit_masks
from lucent_dgn.render.hooks import ActivationAccessor

FEATURE = (6, 12, 12)


def _objective_grad(model, objective, x):
    x = x.detach().clone().requires_grad_(True)
    T = ActivationAccessor(model, {"features.2": model.features(x)}, model_input=x)
    return torch.autograd.grad(objective(T), x)[0]


@pytest.mark.parametrize("make_mask, weight", [
    (lambda: unit_mask(FEATURE, 3), None),
    (lambda: region_mask(FEATURE, [1, 4], y=(2, 7), x=(5, 9)), None),
    (lambda: unit_masks(FEATURE, [0, 5], y=[1, 10], x=[3, 4]), None),
    (lambda: channel_mask(FEATURE, 2), torch.linspace(0.5, 2.0, 12)),
])
def test_neuron_gradient_is_minus_objective_gradient(tiny_cnn, make_mask, weight):
    torch.manual_seed(3)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    mask = make_mask()
    layer = module_for(tiny_cnn, "features.2")
    attr = NeuronGradient(tiny_cnn, layer).attribute(x, neuron_selector=as_neuron_selector(mask, weight))
    objective = masked_units("features.2", mask, weight=1.0 if weight is None else weight)
    expected = -_objective_grad(tiny_cnn, objective, x)
    assert attr.shape == x.shape and expected.abs().sum() > 0
    assert torch.allclose(attr, expected, atol=1e-6)


def test_selector_equals_slice_tuple_selector(tiny_cnn):
    torch.manual_seed(4)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    gradient = NeuronGradient(tiny_cnn, tiny_cnn.features[2])
    by_tuple = gradient.attribute(x, neuron_selector=(4, slice(3, 8), slice(0, 5)))
    by_mask = gradient.attribute(x, neuron_selector=as_neuron_selector(region_mask(FEATURE, 4, y=(3, 8), x=(0, 5))))
    assert torch.allclose(by_mask, by_tuple, atol=1e-7)
    single = gradient.attribute(x, neuron_selector=(1, 6, 6))
    assert torch.allclose(gradient.attribute(x, neuron_selector=as_neuron_selector(unit_mask(FEATURE, 1))), single)


def test_selector_values(hand_conv, hand_input):
    out = hand_conv(torch.cat([hand_input, 2 * hand_input]))
    assert torch.equal(as_neuron_selector(unit_mask((2, 3, 3), 0))(out), torch.tensor([108.0, 216.0]))
    assert torch.equal(as_neuron_selector(unit_masks((2, 3, 3), [0, 1]))(out), torch.tensor([108.0, -215.5]))
    weighted = as_neuron_selector(channel_mask((2, 3, 3), 1), weight=2.0)(out)
    assert torch.equal(weighted, torch.tensor([-1935.0, -3879.0]))
    assert torch.equal(as_neuron_selector(unit_mask((2, 3, 3), 0))((out, out * 0)), torch.tensor([108.0, 216.0]))


def test_per_item_masks_follow_captum_batch_expansion(tiny_cnn):
    torch.manual_seed(5)
    x = torch.rand(2, 3, 16, 16)
    masks = unit_masks(FEATURE, [0, 5])
    ig = NeuronIntegratedGradients(tiny_cnn, tiny_cnn.features[2])
    batched = ig.attribute(x, neuron_selector=as_neuron_selector(masks), n_steps=8)
    for i in range(2):
        alone = ig.attribute(x[i:i + 1], neuron_selector=as_neuron_selector(masks[i]), n_steps=8)
        assert torch.allclose(batched[i:i + 1], alone, atol=1e-6)


def test_selector_errors(hand_conv, hand_input):
    out = hand_conv(torch.cat([hand_input] * 3))
    with pytest.raises(MaskError, match="feature shape \\(2, 3, 3\\)"):
        as_neuron_selector(unit_mask((2, 4, 4), 0).numpy())(out)  # a plain array must fit exactly
    with pytest.raises(MaskError, match="batch size 3"):
        as_neuron_selector(unit_masks((2, 3, 3), [0, 1]))(out)
    with pytest.raises(MaskError, match="belong in `weight`"):
        as_neuron_selector(np.full((2, 3, 3), 0.5))


def test_module_for(tiny_cnn):
    conv = tiny_cnn.features[2]
    assert module_for(tiny_cnn, "features.2") is conv
    assert module_for(tiny_cnn, "features_2") is conv
    assert module_for(tiny_cnn, conv) is conv
    with pytest.raises(LayerNotFoundError, match="Did you mean"):
        module_for(tiny_cnn, "features.9")


def test_to_hwc_layouts():
    rng = np.random.default_rng(0)
    nhwc = rng.random((2, 5, 4, 3)).astype(np.float32)
    assert np.array_equal(to_hwc(nhwc), nhwc)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    converted = to_hwc(nchw)
    assert converted.shape == (2, 5, 4, 3) and converted.dtype == np.float32
    assert np.array_equal(converted, nhwc) and converted[1].shape == (5, 4, 3)
    assert np.array_equal(to_hwc(torch.from_numpy(nhwc)), nhwc)
    assert to_hwc(nhwc[0]).shape == (1, 5, 4, 3)
    assert np.allclose(to_hwc(np.array([[[[0, 255, 51]]]], dtype=np.uint8)), [[[[0.0, 1.0, 0.2]]]])
    assert np.array_equal(to_hwc(np.array([[[[-0.5, 1.5, 0.25]]]])), [[[[0.0, 1.0, 0.25]]]])
    gray = to_hwc(torch.zeros(2, 1, 6, 7))
    assert gray.shape == (2, 6, 7, 1)
    with pytest.raises(ShapeError, match="1 or 3 channels"):
        to_hwc(np.zeros((2, 4, 5, 6)))
    with pytest.raises(ShapeError, match="of shape"):
        to_hwc(np.zeros((4, 5)))


def test_to_hwc_keeps_attribution_values_without_clip():
    attr = torch.tensor([[[[-2.5, 0.5], [3.0, -0.25]]]])  # (1, 1, 2, 2), channels first
    kept = to_hwc(attr, clip=False)
    assert kept.shape == (1, 2, 2, 1) and kept.dtype == np.float32
    assert np.array_equal(kept[0, :, :, 0], [[-2.5, 0.5], [3.0, -0.25]])
    assert np.array_equal(to_hwc(attr)[0, :, :, 0], [[0.0, 0.5], [1.0, 0.0]])
    nhwc = np.array([[[[-1.0, 2.0, 0.5]]]], dtype=np.float64)
    assert np.array_equal(to_hwc(nhwc, clip=False), nhwc.astype(np.float32))
    assert np.allclose(to_hwc(np.array([[[[0, 255, 51]]]], dtype=np.uint8), clip=False), [[[[0.0, 1.0, 0.2]]]])


def test_to_hwc_feeds_captum_visualization():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from captum.attr import visualization
    image = to_hwc(torch.rand(1, 3, 8, 8))[0]
    attr = to_hwc(torch.rand(1, 3, 8, 8) - 0.5, clip=False)[0]
    figure, _ = visualization.visualize_image_attr(attr, image, method="blended_heat_map", sign="all",
                                                   use_pyplot=False)
    assert figure is not None


def test_mask_from_attribution_top_k():
    attr = torch.zeros(2, 3, 2, 2)
    attr[0, 1, 0, 1] = 5.0
    attr[1, 1, 0, 1] = 1.0   # mean 3.0
    attr[0, 2, 1, 1] = 4.0   # mean 2.0
    attr[1, 0, 0, 0] = -9.0  # mean -4.5 (largest |.|)
    top2 = mask_from_attribution(attr, k=2)
    assert top2.shape == (3, 2, 2) and top2.dtype == torch.bool
    assert sorted(map(tuple, top2.nonzero().tolist())) == [(1, 0, 1), (2, 1, 1)]
    top1_abs = mask_from_attribution(attr, k=1, absolute=True)
    assert top1_abs.nonzero().tolist() == [[0, 0, 0]]
    per_item = mask_from_attribution(attr, k=1, per_item=True)
    assert per_item.shape == (2, 3, 2, 2)
    assert per_item[0].nonzero().tolist() == [[1, 0, 1]] and per_item[1].nonzero().tolist() == [[1, 0, 1]]
    unbatched = mask_from_attribution(np.array([0.1, 0.7, 0.3]), k=2)
    assert unbatched.tolist() == [False, True, True]
    fc = mask_from_attribution(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), k=1)
    assert fc.tolist() == [False, False, True]


def test_mask_from_attribution_errors():
    with pytest.raises(ConfigError, match=r"`k` must be an int in \[1, 12\]"):
        mask_from_attribution(torch.zeros(1, 3, 2, 2), k=13)
    with pytest.raises(ConfigError, match="`k` must be"):
        mask_from_attribution(torch.zeros(1, 3, 2, 2), k=0)
    with pytest.raises(ConfigError, match="`per_item` must be False"):
        mask_from_attribution(torch.zeros(3, 2, 2), per_item=True)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        mask_from_attribution(torch.tensor([[1.0, float("nan")]]))


def test_mask_from_layer_conductance_drives_masked_units(tiny_cnn):
    torch.manual_seed(6)
    x = torch.rand(2, 3, 16, 16)
    attr = LayerConductance(tiny_cnn, tiny_cnn.features[2]).attribute(x, target=1, n_steps=8)
    mask = mask_from_attribution(attr, k=3)
    assert mask.shape == FEATURE and int(mask.sum()) == 3
    expected = attr.mean(0).flatten().topk(3).indices.sort().values
    assert torch.equal(mask.flatten().nonzero().flatten(), expected)
    T = ActivationAccessor(tiny_cnn, {"features.2": tiny_cnn.features(x)}, model_input=x)
    assert torch.isfinite(masked_units(tiny_cnn.features[2], mask)(T))


def test_selector_resolves_a_builder_mask_against_the_output_size():
    """A centre-unit mask made for a 3x3 map selects the centre of the 5x5 map Captum hands over."""
    from lucent_dgn.interop.captum import as_neuron_selector
    selector = as_neuron_selector(unit_mask((2, 3, 3), 1))
    out = torch.arange(2 * 25, dtype=torch.float32).reshape(1, 2, 5, 5)
    assert float(selector(out)[0]) == float(out[0, 1, 2, 2])
