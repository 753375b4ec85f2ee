"""Caffe .caffemodel reading, writing and conversion (synthetic files and the real MTCNN files)."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lucent_dgn.errors import ConfigError, CorruptWeightsError, WeightsNotFoundError
from lucent_dgn import _protobuf as pb
from lucent_dgn._io import save_torch
from lucent_dgn.convert import convert_caffemodel_cli
from lucent_dgn.caffemodel import (CaffeLayer, CaffeModel, caffemodel_to_state_dict, read_caffemodel,
                                              write_caffemodel)

SHARED = Path(__file__).resolve().parents[2] / "shared"
MTCNN = SHARED / "data" / "caffe" / "mtcnn"
needs_mtcnn = pytest.mark.skipif(not MTCNN.is_dir(), reason="../shared/data/caffe/mtcnn is absent")


class Tiny(nn.Module):
    """(N, 3, 6, 6) -> conv 4x4x4 -> grouped deconv 2x8x8 -> PReLU -> Linear(128, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(),
                                      nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1, groups=2), nn.PReLU(2))
        self.classifier = nn.Linear(128, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


TINY_MAP = {"conv1": "features.0", "deconv1": "features.2", "prelu1": "features.3", "fc1": "classifier"}


def tiny_blobs(seed: int = 0) -> dict:
    """Caffe blobs for :class:`Tiny`: Convolution (out, in, kh, kw), Deconvolution (in, out/group,
    kh, kw), PReLU (C,), InnerProduct (out, in)."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": [(4, 3, 3, 3), (4,)], "deconv1": [(4, 1, 4, 4), (2,)], "prelu1": [(2,)],
              "fc1": [(5, 128), (5,)]}
    return {name: [rng.standard_normal(s).astype(np.float32) for s in blob_shapes]
            for name, blob_shapes in shapes.items()}


def tiny_layers(blobs: dict) -> list:
    return [CaffeLayer("data", "Input", [], [], ["data"]),
            CaffeLayer("conv1", "Convolution", blobs["conv1"], ["data"], ["conv1"]),
            CaffeLayer("relu1", "ReLU", [], ["conv1"], ["conv1"]),
            CaffeLayer("deconv1", "Deconvolution", blobs["deconv1"], ["conv1"], ["deconv1"]),
            CaffeLayer("prelu1", "PReLU", blobs["prelu1"], ["deconv1"], ["deconv1"]),
            CaffeLayer("fc1", "InnerProduct", blobs["fc1"], ["deconv1"], ["fc1"])]


def assert_tiny_loaded(state: dict, blobs: dict) -> None:
    net = Tiny()
    net.load_state_dict(state, strict=True)
    for caffe_name, prefix in TINY_MAP.items():
        module = net.get_submodule(prefix)
        for name, blob in zip(("weight", "bias"), blobs[caffe_name]):
            param = getattr(module, name).detach()
            assert torch.equal(param, torch.from_numpy(blob).reshape(param.shape))
    assert torch.isfinite(net(torch.ones(1, 3, 6, 6))).all()


# ------------------------------------------------------------------------------------ wire format
def test_writer_emits_caffes_wire_format_byte_for_byte(tmp_path):
    path = write_caffemodel(tmp_path / "a.caffemodel", [CaffeLayer("a", "B", [np.array([1.0, 2.0])])])
    # NetParameter.layer = 100 (tag a2 06), LayerParameter{name=1 "a", type=2 "B", blobs=7
    # BlobProto{shape=7 BlobShape{dim=1 packed [2]}, data=5 packed [1.0, 2.0]}}
    expected = bytes.fromhex("a20617 0a0161 120142 3a0f 3a03 0a0102 2a08") + struct.pack("<2f", 1.0, 2.0)
    assert path.read_bytes() == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-2**63, max_value=2**63 - 1))
def test_varints_round_trip(value):
    data = pb.encode_varint(value)
    assert pb.Reader(data).int64() == value
    assert len(data) <= 10


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), max_size=40), st.booleans())
def test_float_arrays_round_trip_packed_and_unpacked(values, packed):
    array = np.array(values, dtype=np.float32)
    if packed:
        data = pb.packed_floats_field(5, array)
    else:
        data = b"".join(bytes([5 << 3 | pb.FIXED32]) + struct.pack("<f", v) for v in array)
    data += pb.varint_field(1, 7)  # a different field after the run must stop it
    r = pb.Reader(data)
    decoded = []
    while not r.at_end():
        number, wire, _ = r.tag()
        if number == 5:
            decoded.append(r.reals(number, wire, "<f4"))
        else:
            assert r.varint() == 7
    got = np.concatenate(decoded) if decoded else np.zeros(0, np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, array)


# ------------------------------------------------------------------------------------- round trip
def test_round_trip_reads_back_every_field(tmp_path):
    blobs = tiny_blobs()
    path = write_caffemodel(tmp_path / "tiny.caffemodel", tiny_layers(blobs), name="TinyNet")
    model = read_caffemodel(path)
    assert model.name == "TinyNet" and model.path == path
    assert [(l.name, l.type) for l in model.layers] == [(l.name, l.type) for l in tiny_layers(blobs)]
    assert model.layer("relu1").bottoms == ["conv1"] and model.layer("fc1").tops == ["fc1"]
    for name, expected in blobs.items():
        got = model.layer(name).blobs
        assert [b.dtype for b in got] == [np.float32] * len(expected)
        assert all(np.array_equal(g, e) and g.shape == e.shape for g, e in zip(got, expected))


def test_round_trip_into_a_pytorch_net_value_by_value(tmp_path):
    blobs = tiny_blobs()
    path = write_caffemodel(tmp_path / "tiny.caffemodel", tiny_layers(blobs))
    state = caffemodel_to_state_dict(path, TINY_MAP, target=Tiny())
    assert sorted(state) == sorted(Tiny().state_dict())
    assert state["features.2.weight"].shape == (4, 1, 4, 4)  # ConvTranspose2d layout, unchanged
    assert_tiny_loaded(state, blobs)


def test_default_mapping_uses_caffe_names(tmp_path):
    blobs = tiny_blobs()
    state = caffemodel_to_state_dict(CaffeModel("n", tiny_layers(blobs)))
    assert sorted(state) == sorted(["conv1.weight", "conv1.bias", "deconv1.weight", "deconv1.bias",
                                    "prelu1.weight", "fc1.weight", "fc1.bias"])


def v1_blob(array: np.ndarray, legacy_shape: tuple, how: str = "packed") -> bytes:
    """A BlobProto with legacy num/channels/height/width (fields 1-4) and float data."""
    dims = b"".join(pb.varint_field(i + 1, d) for i, d in enumerate(legacy_shape))
    flat = array.astype(np.float32).ravel()
    if how == "packed":
        data = pb.packed_floats_field(5, flat)  # float data = 5
    elif how == "unpacked":
        data = b"".join(bytes([5 << 3 | pb.FIXED32]) + struct.pack("<f", v) for v in flat)
    else:
        data = pb.packed_floats_field(8, flat, "<f8")  # double double_data = 8
    return dims + data


def v1_layer(name: str, type_enum: int, blobs: list, bottom: str, top: str) -> bytes:
    """V1LayerParameter: bottom = 2, top = 3, name = 4, type = 5 (enum), blobs = 6."""
    body = pb.string_field(2, bottom) + pb.string_field(3, top) + pb.string_field(4, name)
    body += pb.varint_field(5, type_enum) + b"".join(pb.len_field(6, blob) for blob in blobs)
    return pb.len_field(2, body)  # NetParameter.layers = 2


def test_legacy_v1_file_converts(tmp_path):
    blobs = tiny_blobs(1)
    conv_w, conv_b = blobs["conv1"]
    fc_w, fc_b = blobs["fc1"]
    data = pb.string_field(1, "legacy") + b"".join([
        v1_layer("conv1", 4, [v1_blob(conv_w, conv_w.shape), v1_blob(conv_b, (1, 1, 1, 4), "unpacked")],
                 "data", "conv1"),  # CONVOLUTION = 4
        v1_layer("relu1", 18, [], "conv1", "conv1"),  # RELU = 18
        v1_layer("deconv1", 39, [v1_blob(blobs["deconv1"][0], (4, 1, 4, 4)),
                                 v1_blob(blobs["deconv1"][1], (1, 1, 1, 2))],
                 "conv1", "deconv1"),  # DECONVOLUTION = 39
        v1_layer("fc1", 14, [v1_blob(fc_w, (1, 1, 5, 128), "double"), v1_blob(fc_b, (1, 1, 1, 5))],
                 "deconv1", "fc1"),  # INNER_PRODUCT = 14
    ])
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(data)
    model = read_caffemodel(path)
    assert model.name == "legacy"
    assert [l.type for l in model.layers] == ["Convolution", "ReLU", "Deconvolution", "InnerProduct"]
    assert model.layer("fc1").blobs[0].shape == (1, 1, 5, 128)  # Caffe shape kept by the reader
    assert model.layer("conv1").blobs[1].shape == (1, 1, 1, 4)
    model.layers.append(CaffeLayer("prelu1", "PReLU", blobs["prelu1"]))
    state = caffemodel_to_state_dict(model, TINY_MAP, target=Tiny())
    assert state["classifier.weight"].shape == (5, 128) and state["features.0.bias"].shape == (4,)
    assert_tiny_loaded(state, blobs)


def test_v0_layers_nested_in_v1_entries(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    v0 = pb.string_field(1, "ip") + pb.string_field(2, "innerproduct")  # V0: name = 1, type = 2
    v0 += pb.len_field(50, v1_blob(weight, weight.shape))  # V0: blobs = 50
    path = tmp_path / "v0.caffemodel"
    path.write_bytes(pb.len_field(2, pb.len_field(1, v0) + pb.string_field(2, "x")))
    layer = read_caffemodel(path).layer("ip")
    assert layer.type == "InnerProduct" and layer.bottoms == ["x"]
    state = caffemodel_to_state_dict(path, {"ip": ""}, target=nn.Linear(3, 2, bias=False))
    assert torch.equal(state["weight"], torch.arange(6.0).reshape(2, 3))


def test_conv_blob_fits_a_linear_target(tmp_path):
    weight = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    model = CaffeModel("m", [CaffeLayer("fc", "Convolution", [weight, np.zeros((1, 1, 1, 2), np.float32)])])
    state = caffemodel_to_state_dict(model, {"fc": ""}, target=nn.Linear(12, 2))
    assert torch.equal(state["weight"], torch.from_numpy(weight.reshape(2, 12)))
    assert state["bias"].shape == (2,)


# ----------------------------------------------------------------------------------------- errors
def test_missing_file_is_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.caffemodel"):
        read_caffemodel(tmp_path / "nope.caffemodel")


def test_every_truncation_is_reported_with_path_and_offset(tmp_path):
    layers = tiny_layers(tiny_blobs())[:3]  # data, conv1, relu1: about 500 bytes
    data = write_caffemodel(tmp_path / "full.caffemodel", layers).read_bytes()
    ends, pos = set(), 0  # offsets where a whole top-level layer entry ends: a valid shorter net
    for layer in layers:
        entry = pb.encode_layer(layer.name, layer.type, layer.blobs, layer.bottoms, layer.tops)
        pos += len(pb.len_field(100, entry))
        ends.add(pos)
    cut_path = tmp_path / "cut.caffemodel"
    for cut in range(1, len(data)):
        cut_path.write_bytes(data[:cut])
        if cut in ends:
            assert len(read_caffemodel(cut_path).layers) == sorted(ends).index(cut) + 1
            continue
        with pytest.raises(CorruptWeightsError, match=r"cut\.caffemodel.*byte \d+ of " + str(cut)):
            read_caffemodel(cut_path)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_corrupt(tmp_path, seed):
    path = tmp_path / "random.caffemodel"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptWeightsError, match="random.caffemodel"):
        read_caffemodel(path)


def test_other_formats_get_a_hint(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(CorruptWeightsError, match="torch.load"):
        read_caffemodel(tmp_path / "model.pt")
    (tmp_path / "net.prototxt").write_text('name: "Net"\nlayer {\n  name: "conv1"\n}\n')
    with pytest.raises(CorruptWeightsError, match="prototxt"):
        read_caffemodel(tmp_path / "net.prototxt")
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(CorruptWeightsError, match="no layers"):
        read_caffemodel(tmp_path / "empty.caffemodel")


def test_blob_with_wrong_value_count_is_corrupt(tmp_path):
    blob = pb.len_field(7, pb.packed_varints_field(1, [2, 3])) + pb.packed_floats_field(5, np.zeros(5))
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(pb.len_field(100, pb.string_field(1, "ip") + pb.len_field(7, blob)))
    with pytest.raises(CorruptWeightsError, match=r"shape \(2, 3\), found 5 values"):
        read_caffemodel(path)


def test_missing_layer_and_wrong_shape_name_the_layer(tmp_path):
    blobs = tiny_blobs()
    model = CaffeModel("tiny", tiny_layers(blobs))
    with pytest.raises(CorruptWeightsError, match="caffemodel lacks layer 'fc7' needed for 'classifier'"):
        caffemodel_to_state_dict(model, {**TINY_MAP, "fc7": "classifier"}, target=Tiny())
    with pytest.raises(CorruptWeightsError, match="lacks weights for layer 'relu1'"):
        caffemodel_to_state_dict(model, {"relu1": "features.1"})
    bad = tiny_blobs()
    bad["fc1"][0] = np.zeros((5, 64), np.float32)
    with pytest.raises(CorruptWeightsError, match=r"'fc1'.*\(5, 64\).*expects \(5, 128\)"):
        caffemodel_to_state_dict(CaffeModel("tiny", tiny_layers(bad)), TINY_MAP, target=Tiny())
    partial = {k: v for k, v in TINY_MAP.items() if k != "prelu1"}
    state = caffemodel_to_state_dict(model, partial, target=Tiny())  # unmapped modules are not checked
    assert "features.3.weight" not in state
    with pytest.raises(CorruptWeightsError, match="'features.0.bias'.*gets no Caffe blob"):
        caffemodel_to_state_dict(CaffeModel("t", [CaffeLayer("conv1", "Convolution", blobs["conv1"][:1])]),
                                 {"conv1": "features.0"}, target=Tiny())
    with pytest.raises(CorruptWeightsError, match="target lacks"):
        caffemodel_to_state_dict(model, {"conv1": "features.1"}, target=Tiny())
    with pytest.raises(ConfigError, match="features.0.weight"):
        caffemodel_to_state_dict(model, {"conv1": "features.0", "deconv1": "features.0"})
    with pytest.raises(CorruptWeightsError, match="'fc7'.*Layers with weights: conv1, deconv1, prelu1, fc1"):
        model.layer("fc7")
    norm = CaffeModel("bn", [CaffeLayer("bn1", "BatchNorm", [np.zeros(2), np.ones(2), np.ones(1)])])
    with pytest.raises(CorruptWeightsError, match=r"'bn1' \(BatchNorm\) has 3 blobs"):
        caffemodel_to_state_dict(norm)


# ------------------------------------------------------------------------------- saving and CLI
def test_save_torch_is_atomic(tmp_path):
    path = tmp_path / "out" / "w.pt"
    save_torch({"a": torch.arange(3.0)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3.0))
    with pytest.raises(Exception):
        save_torch({"a": torch.zeros(2), "b": lambda: 0}, path)  # lambdas cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3.0))  # old file intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.pt"]  # no temporary file left


def test_cli_lists_and_converts(tmp_path, capsys):
    blobs = tiny_blobs()
    src = write_caffemodel(tmp_path / "tiny.caffemodel", tiny_layers(blobs))
    assert convert_caffemodel_cli([str(src), "--list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"deconv1\s+Deconvolution\s+\(4, 1, 4, 4\) \(2,\)", listing)
    assert re.search(r"relu1\s+ReLU\n", listing)
    out = tmp_path / "tiny.pt"
    argv = [str(src), str(out), "--map"] + [f"{k}={v}" for k, v in TINY_MAP.items()]
    assert convert_caffemodel_cli(argv) == 0
    assert "wrote 7 tensors" in capsys.readouterr().out
    assert_tiny_loaded(torch.load(out, weights_only=True), blobs)
    assert convert_caffemodel_cli([str(src), str(out), "--map", "conv1"]) == 1
    assert convert_caffemodel_cli([str(src), str(out), "--map", "fc7=x"]) == 1
    assert "lacks layer 'fc7'" in capsys.readouterr().err
    assert convert_caffemodel_cli([str(tmp_path / "missing.caffemodel"), str(out)]) == 1
    assert convert_caffemodel_cli([str(src)]) == 2  # OUTPUT needed without --list


# ---------------------------------------------------------------------------- real MTCNN files
@pytest.fixture(scope="module")
def mtcnn():
    if not MTCNN.is_dir():
        pytest.skip("../shared/data/caffe/mtcnn is absent")
    import _caffe_nets
    return _caffe_nets


def load_mtcnn(mtcnn, det: str) -> nn.Module:
    """The PyTorch copy of ``det`` with the converted Caffe weights, loaded strictly, in eval mode."""
    net = mtcnn.NETS[det]().eval()
    state = caffemodel_to_state_dict(MTCNN / f"{det}.caffemodel", mtcnn.MAPPINGS[det], target=net)
    net.load_state_dict(state, strict=True)
    return net


@needs_mtcnn
@pytest.mark.parametrize("det", ["det1", "det2", "det3"])
def test_mtcnn_blob_shapes_match_the_prototxt(mtcnn, det):
    model = read_caffemodel(MTCNN / f"{det}.caffemodel")
    expected = mtcnn.expected_blob_shapes((MTCNN / f"{det}.prototxt").read_text())
    assert len(expected) == {"det1": 8, "det2": 10, "det3": 13}[det]
    for name, shapes in expected.items():
        assert [b.shape for b in model.layer(name).blobs] == shapes, name
        assert all(np.isfinite(b).all() and b.std() > 0 for b in model.layer(name).blobs)


@needs_mtcnn
@pytest.mark.parametrize("det", ["det1", "det2", "det3"])
def test_mtcnn_nets_load_strictly_and_give_probabilities(mtcnn, det):
    torch.manual_seed(0)
    net = load_mtcnn(mtcnn, det)
    size = mtcnn.INPUT_SIZES[det]
    with torch.no_grad():
        outputs = net(torch.rand(3, 3, size, size) * 2 - 1)
    prob = outputs[0].reshape(3, 2)  # PNet on a 12x12 input: a 1x1 map
    assert torch.allclose(prob.sum(1), torch.ones(3)) and (prob >= 0).all()
    assert [tuple(o.shape[1:2]) for o in outputs] == [(2,), (4,), (10,)][: len(outputs)]
    assert all(torch.isfinite(o).all() for o in outputs)


@needs_mtcnn
def test_pnet_uses_caffe_ceil_pooling(mtcnn):
    net = load_mtcnn(mtcnn, "det1")
    with torch.no_grad():
        prob, box = net(torch.zeros(1, 3, 13, 13))  # conv 11 -> ceil((11 - 2) / 2) + 1 = 6 -> 2x2 map
    assert prob.shape == (1, 2, 2, 2) and box.shape == (1, 4, 2, 2)
    assert torch.allclose(prob.sum(1), torch.ones(1, 2, 2))


@needs_mtcnn
def test_mtcnn_finds_a_real_face(mtcnn):
    """Grace Hopper's face (matplotlib sample photo) is a face to all three nets; sky, flag and the
    medal ribbons are not. The Caffe nets were trained on transposed images, so crops are transposed."""
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image
    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    boxes = {"face": (165, 135, 365, 335), "sky": (400, 0, 500, 100), "flag": (0, 0, 120, 120),
             "ribbons": (320, 470, 460, 540)}
    for det in mtcnn.NETS:
        net = load_mtcnn(mtcnn, det)
        size = mtcnn.INPUT_SIZES[det]
        crops = [np.asarray(photo.crop(box).resize((size, size), Image.BILINEAR), np.float32)
                 for box in boxes.values()]
        x = torch.from_numpy((np.stack(crops) - 127.5) / 128).permute(0, 3, 2, 1)  # (N, C, W, H): transposed
        with torch.no_grad():
            p_face = net(x)[0].reshape(len(boxes), 2)[:, 1]
        assert p_face[0] > 0.99, det
        assert (p_face[1:] < 0.2).all(), (det, p_face)


def test_cli_arch_preset_converts_a_deepsim_pool5_file(tmp_path):
    """--arch maps Caffe names and checks every tensor against the real architecture."""
    from lucent_dgn.generators.deepsim import build_generator, caffe_layer_mapping
    from lucent_dgn.generators.specs import deepsim_spec
    import torch
    spec = deepsim_spec("pool5")
    gen = build_generator(spec)
    sd = gen.state_dict()
    layers = [CaffeLayer(caffe, "Deconvolution" if "deconv" in caffe or caffe.startswith("conv") else "Convolution",
                         [sd[f"{prefix}.weight"].numpy(), sd[f"{prefix}.bias"].numpy()])
              for caffe, prefix in caffe_layer_mapping(spec).items()]
    src = write_caffemodel(tmp_path / "pool5.caffemodel", layers)
    out = tmp_path / "pool5.pt"
    assert convert_caffemodel_cli([str(src), str(out), "--arch", "deepsim-pool5"]) == 0
    loaded = torch.load(out, weights_only=True)
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
