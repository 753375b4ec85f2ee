"""DeePSiM generators: spec tables, the single builder, and every weights format they load."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.errors import ConfigError, CorruptWeightsError, ShapeError, WeightsNotFoundError
from lucent_dgn.generators import (DEEPSIM_SPECS, DeePSiMGenerator, GeneratorSpec, LayerSpec, build_generator,
                                   deepsim_generator, deepsim_spec, load_generator_weights,
                                   normalize_generator_state_dict)
from lucent_dgn.spaces import CaffeSpace

PARAMS = {"fc6": 56_097_891, "fc7": 56_097_891, "fc8": 43_416_675, "pool5": 12_702_307}
CODES = {"fc6": (4096,), "fc7": (4096,), "fc8": (1000,), "pool5": (256, 6, 6)}
DECONVS = ["deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1", "deconv2", "deconv1", "deconv0"]


def shrink(spec: GeneratorSpec, factor: int = 32) -> GeneratorSpec:
    """The same layer names and geometry with channel widths divided by ``factor`` (3 stays 3)."""
    div = lambda n: n // factor if n >= factor else n  # noqa: E731
    layers = tuple(dataclasses.replace(layer, n_in=div(layer.n_in), n_out=div(layer.n_out),
                                       shape=(div(layer.shape[0]),) + layer.shape[1:] if layer.shape else ())
                   for layer in spec.layers)
    code = (div(spec.code_shape[0]),) + spec.code_shape[1:]
    return dataclasses.replace(spec, code_shape=code, layers=layers)


def outputs_equal(a: nn.Module, b: nn.Module, code: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a(code), b(code))


@pytest.fixture(scope="module")
def tiny_fc6() -> DeePSiMGenerator:
    torch.manual_seed(0)
    return build_generator(shrink(deepsim_spec("fc6")))


# ------------------------------------------------------------------------------------------ specs
def test_spec_tables_use_caffe_names_and_one_deconv_stack():
    assert [l.name for l in DEEPSIM_SPECS["fc6"].layers] == ["defc7", "defc6", "defc5", "reshape"] + DECONVS
    assert [l.name for l in DEEPSIM_SPECS["pool5"].layers] == ["Rconv6", "Rconv7", "Rconv8"] + DECONVS
    assert DEEPSIM_SPECS["fc8"].layers[0].n_in == 1000
    for spec in DEEPSIM_SPECS.values():
        acts = [l.activation for l in spec.layers if l.has_params]
        assert acts == ["leaky_relu"] * (len(acts) - 1) + ["none"]
        assert spec.leaky_slope == 0.3 and spec.image_size == 256
        assert all(l.kind == "deconv" for l in spec.layers[-9:])


def test_spec_rejects_unknown_kind_and_variant():
    with pytest.raises(ConfigError, match="kind"):
        LayerSpec("x", "dense", 3, 4)
    with pytest.raises(ConfigError, match="variant"):
        deepsim_spec("fc9")
    with pytest.raises(ConfigError, match="GeneratorSpec"):
        build_generator("fc6")


@pytest.mark.parametrize("variant", sorted(PARAMS))
def test_parameter_counts_and_keys_match_lucent_upconvgan(variant):
    gan = pytest.importorskip("lucent.optvis.param.gan")
    with torch.device("meta"):  # no memory, no initialisation cost
        ours = build_generator(deepsim_spec(variant))
        theirs = gan.upconvGAN(variant, pretrained=False)
    assert sum(p.numel() for p in ours.parameters()) == PARAMS[variant]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.G.state_dict().items()}
    # Lucent's G as a plain nn.Sequential: index keys ("0.weight", "7.bias", ...) map onto our names.
    indexed = nn.Sequential(*theirs.G.children()).state_dict()
    renamed = normalize_generator_state_dict(indexed, ours.spec)
    assert {k: v.shape for k, v in renamed.items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_fc6_parameter_count_and_attributes():
    gen = deepsim_generator("fc6")
    assert sum(p.numel() for p in gen.parameters()) == 56_097_891
    assert gen.variant == "fc6" and gen.code_shape == (4096,) and gen.image_size == 256
    assert isinstance(gen.output_space, CaffeSpace) and not gen.training
    assert all(not m.inplace for m in gen.modules() if isinstance(m, nn.LeakyReLU))
    assert all(m.negative_slope == 0.3 for m in gen.modules() if isinstance(m, nn.LeakyReLU))
    with torch.no_grad():
        assert gen(torch.randn(1, 4096)).shape == (1, 3, 256, 256)


@pytest.mark.parametrize("variant", ["fc7", "fc8", "pool5"])
def test_output_shapes(variant):
    gen = deepsim_generator(variant)
    assert gen.code_shape == CODES[variant]
    with torch.no_grad():
        assert gen(torch.randn(1, *CODES[variant])).shape == (1, 3, 256, 256)


def test_hand_set_network_applies_leaky_relu_except_last():
    spec = GeneratorSpec("toy", (1,), (
        LayerSpec("defc7", "linear", 1, 4),
        LayerSpec("reshape", "reshape", 4, activation="none", shape=(1, 2, 2)),
        LayerSpec("deconv0", "deconv", 1, 1, kernel=1, activation="none"),
    ), image_size=2)
    gen = build_generator(spec)
    with torch.no_grad():
        gen.defc7.weight.copy_(torch.tensor([[1.0], [-1.0], [2.0], [-2.0]]))
        gen.defc7.bias.zero_()
        gen.deconv0.weight.fill_(-1.0)
        gen.deconv0.bias.fill_(0.5)
        out = gen(torch.tensor([[1.0]]))
    expected = -torch.tensor([[1.0, -0.3], [2.0, -0.6]]) + 0.5  # the last layer has no activation
    torch.testing.assert_close(out, expected.view(1, 1, 2, 2), rtol=0, atol=1e-6)


def test_code_shape_checked_and_flat_codes_accepted():
    gen = build_generator(shrink(deepsim_spec("pool5")))
    code = torch.randn(2, *gen.code_shape)
    with torch.no_grad():
        torch.testing.assert_close(gen(code.flatten(1)), gen(code))
    with pytest.raises(ShapeError, match="code"):
        gen(torch.randn(2, 5))


# ------------------------------------------------------------------------------------ formats
def test_pool5_lucent_state_dict_gives_lucent_output(tmp_path):
    gan = pytest.importorskip("lucent.optvis.param.gan")
    torch.manual_seed(1)
    theirs = gan.upconvGAN("pool5", pretrained=False)
    path = tmp_path / "upconvGAN_pool5.pt"
    torch.save(theirs.state_dict(), path)  # keys "G.defc7.weight" ...
    ours = deepsim_generator("pool5", weights=path)
    code = torch.randn(1, 256, 6, 6)
    with torch.no_grad():  # Lucent's forward returns RGB: our BGR output with channels flipped
        torch.testing.assert_close(ours(code).flip(1), theirs(code), rtol=0, atol=0)
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())


@pytest.mark.parametrize("style", ["plain", "G_prefix", "lucent_dot_1", "module_prefix"])
def test_lucent_key_styles(tiny_fc6, style):
    source = tiny_fc6.state_dict()
    rename = {"plain": "{p}.{l}", "G_prefix": "G.{p}.{l}", "lucent_dot_1": "{p}.1.{l}",
              "module_prefix": "module.G.{p}.{l}"}[style]
    state = {rename.format(p=k.rsplit(".", 1)[0], l=k.rsplit(".", 1)[1]): v.clone() for k, v in source.items()}
    fresh = build_generator(tiny_fc6.spec)
    load_generator_weights(fresh, state)
    assert outputs_equal(fresh, tiny_fc6, torch.randn(1, *tiny_fc6.code_shape))


def bdpy_like(gen: DeePSiMGenerator) -> nn.Module:
    """A module registered the way bdpy's AlexNetGenerator / AlexNetPool5Generator are: every layer
    as a named attribute, then the same modules again inside Sequentials (defc or rconv, deconv)."""
    holder = nn.Module()
    children = [(n, m) for n, m in gen.named_children() if n != "reshape"]
    for name, module in children:
        holder.add_module(name, module)
    head = [m for n, m in children if n.startswith(("defc", "relu_defc", "Rconv", "relu_Rconv"))]
    tail = [m for n, m in children if not n.startswith(("defc", "relu_defc", "Rconv", "relu_Rconv"))]
    holder.add_module("defc" if gen.spec.layers[0].kind == "linear" else "rconv", nn.Sequential(*head))
    holder.add_module("deconv", nn.Sequential(*tail))
    return holder


def test_bdpy_fc6_generator_file_loads(tmp_path):
    torch.manual_seed(2)
    source = deepsim_generator("fc6")
    state = bdpy_like(source).state_dict()
    assert {"defc7.weight", "defc.0.weight", "defc.4.bias", "deconv.0.weight", "deconv.16.bias"} <= set(state)
    path = tmp_path / "generator.pt"
    torch.save(state, path)
    loaded = deepsim_generator("fc6", weights=str(path))
    assert outputs_equal(loaded, source, torch.randn(1, 4096))


@pytest.mark.parametrize("variant", ["fc6", "pool5"])
def test_bdpy_sequential_only_keys(variant):
    torch.manual_seed(3)
    source = build_generator(shrink(deepsim_spec(variant)))
    state = {k: v for k, v in bdpy_like(source).state_dict().items() if k.split(".")[0] in ("defc", "rconv", "deconv")}
    assert any(k.startswith("rconv.4.") for k in state) == (variant == "pool5")
    fresh = build_generator(source.spec)
    load_generator_weights(fresh, state)
    assert outputs_equal(fresh, source, torch.randn(1, *source.code_shape))


def test_caffemodel_generator_loads(tmp_path, tiny_fc6):
    caffe = pytest.importorskip("lucent_dgn.caffemodel")
    types = {"linear": "InnerProduct", "conv": "Convolution", "deconv": "Deconvolution"}
    layers = []
    for spec in tiny_fc6.spec.param_layers():
        module = getattr(tiny_fc6, spec.name)
        weight = module.weight.detach().numpy()
        if spec.kind == "linear":
            weight = weight.reshape(1, 1, *weight.shape)  # legacy 4-D InnerProduct blob
        layers.append(caffe.CaffeLayer(spec.name, types[spec.kind], [weight, module.bias.detach().numpy()]))
    layers.insert(3, caffe.CaffeLayer("reshape_relu_defc5", "Reshape"))
    path = caffe.write_caffemodel(tmp_path / "generator.caffemodel", layers)
    fresh = build_generator(tiny_fc6.spec)
    load_generator_weights(fresh, path)
    assert outputs_equal(fresh, tiny_fc6, torch.randn(1, *tiny_fc6.code_shape))


def test_wrong_keys_and_shapes_are_reported(tiny_fc6):
    state = dict(tiny_fc6.state_dict())
    state["classifier.weight"] = torch.zeros(2)
    with pytest.raises(CorruptWeightsError, match="classifier.weight"):
        load_generator_weights(build_generator(tiny_fc6.spec), state)
    state = dict(tiny_fc6.state_dict())
    del state["deconv0.bias"]
    with pytest.raises(CorruptWeightsError, match="deconv0.bias"):
        load_generator_weights(build_generator(tiny_fc6.spec), state)
    pool5 = build_generator(shrink(deepsim_spec("pool5")))
    with pytest.raises(CorruptWeightsError):  # fc6 weights into a pool5 generator
        load_generator_weights(pool5, tiny_fc6.state_dict())


def test_conflicting_duplicates_are_an_error(tiny_fc6):
    state = dict(tiny_fc6.state_dict())
    state["G.defc7.weight"] = state["defc7.weight"] + 1
    with pytest.raises(CorruptWeightsError, match="defc7.weight"):
        normalize_generator_state_dict(state, tiny_fc6.spec)


# ------------------------------------------------------------------------------- default weights
def test_default_weights_offline_error_names_file_url_and_converter(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError) as info:
        deepsim_generator("fc7", weights="default", cache_dir=tmp_path / "cache")
    text = str(info.value)
    assert "upconvGAN_fc7.pt" in text and "deepsim-fc7" in text and "onedrive.live.com" in text
    assert str(tmp_path / "cache" / "upconvGAN_fc7.pt") in text
    assert str(tmp_path / "torch" / "checkpoints" / "upconvGAN_fc7.pt") in text
    assert "convert-caffemodel" in text and "release_deepsim_v0.zip" in text and "download=True" in text


def test_default_weights_found_in_lucents_checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(4)
    source = deepsim_generator("pool5")
    (tmp_path / "checkpoints").mkdir()
    torch.save(source.state_dict(), tmp_path / "checkpoints" / "upconvGAN_pool5.pt")
    loaded = deepsim_generator("pool5", weights="default", cache_dir=tmp_path / "empty")
    assert outputs_equal(loaded, source, torch.from_numpy(np.ones((1, 256, 6, 6), np.float32)))
