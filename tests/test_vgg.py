"""VGG19 in Caffe's layout (cnnpref's VGG_ILSVRC_19_layers), its weights, and cnnpref's names for torchvision's VGG19."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.caffemodel import CaffeLayer, caffemodel_to_state_dict, write_caffemodel
from lucent_dgn.cnnpref.prefer_img_gd import generate_image
from lucent_dgn.errors import LayerNotFoundError, WeightsNotFoundError
from lucent_dgn.layers import layer_shape, layer_shapes, resolve_layer
from lucent_dgn.models import CaffeVGG19, available_models, caffe_vgg19, load_model, load_vgg19_weights
from lucent_dgn.models.vgg import CAFFE_LAYOUT, VGG19_CAFFE_MAPPING, VGG19_TORCHVISION_ALIASES
from lucent_dgn.objectives import unit_mask
from lucent_dgn.spaces import CaffeSpace

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cnnpref"

#: Blob shapes of every layer with weights in VGG_ILSVRC_19_layers.prototxt (3x3 convolutions, pad 1).
PROTOTXT_BLOBS = {
    "conv1_1": [(64, 3, 3, 3), (64,)], "conv1_2": [(64, 64, 3, 3), (64,)],
    "conv2_1": [(128, 64, 3, 3), (128,)], "conv2_2": [(128, 128, 3, 3), (128,)],
    "conv3_1": [(256, 128, 3, 3), (256,)], "conv3_2": [(256, 256, 3, 3), (256,)],
    "conv3_3": [(256, 256, 3, 3), (256,)], "conv3_4": [(256, 256, 3, 3), (256,)],
    "conv4_1": [(512, 256, 3, 3), (512,)], "conv4_2": [(512, 512, 3, 3), (512,)],
    "conv4_3": [(512, 512, 3, 3), (512,)], "conv4_4": [(512, 512, 3, 3), (512,)],
    "conv5_1": [(512, 512, 3, 3), (512,)], "conv5_2": [(512, 512, 3, 3), (512,)],
    "conv5_3": [(512, 512, 3, 3), (512,)], "conv5_4": [(512, 512, 3, 3), (512,)],
    "fc6": [(4096, 25088), (4096,)], "fc7": [(4096, 4096), (4096,)], "fc8": [(1000, 4096), (1000,)],
}
#: Top shapes of the prototxt for a 224 x 224 input (without batch).
PROTOTXT_TOPS = {"conv1_1": (64, 224, 224), "conv1_2": (64, 224, 224), "pool1": (64, 112, 112),
                 "conv2_2": (128, 112, 112), "pool2": (128, 56, 56), "conv3_1": (256, 56, 56), "conv3_4": (256, 56, 56),
                 "pool3": (256, 28, 28), "conv4_4": (512, 28, 28), "pool4": (512, 14, 14), "conv5_4": (512, 14, 14),
                 "pool5": (512, 7, 7), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}


@pytest.fixture(scope="module")
def meta_vgg() -> CaffeVGG19:
    """The architecture without weights (shapes only, no memory)."""
    with torch.device("meta"):
        return CaffeVGG19().eval()


def test_architecture_is_caffes(meta_vgg):
    names = [name for name, _ in meta_vgg.named_children()]
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-8:] == ["flatten", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert [n for n in names if n.startswith("conv")] == [n for n in PROTOTXT_BLOBS if n.startswith("conv")]
    assert sum(p.numel() for p in meta_vgg.parameters()) == 143_667_240
    assert all(not m.inplace for m in meta_vgg.modules() if isinstance(m, nn.ReLU))  # pre-ReLU units
    pools = [m for m in meta_vgg.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(m.ceil_mode and m.kernel_size == 2 and m.stride == 2 for m in pools)
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) and m.stride == (1, 1)
               for m in meta_vgg.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(meta_vgg.input_space, CaffeSpace) and meta_vgg.input_size == 224


def test_blob_and_top_shapes_are_the_prototxts(meta_vgg):
    state = meta_vgg.state_dict()
    got = {name: [tuple(state[f"{prefix}.weight"].shape), tuple(state[f"{prefix}.bias"].shape)]
           for name, prefix in VGG19_CAFFE_MAPPING.items()}
    assert got == PROTOTXT_BLOBS
    assert layer_shapes(meta_vgg, list(PROTOTXT_TOPS), (3, 224, 224)) == PROTOTXT_TOPS


@pytest.mark.parametrize("prototxt, layout", [("bvlc_alexnet.prototxt", "bvlc_alexnet"),
                                              ("VGG_ILSVRC_19_layers.prototxt", "vgg19")])
def test_layouts_match_cnnprefs_prototxt_files(prototxt, layout):
    """Every layer with weights in cnnpref's prototxt maps onto a parameter of that shape."""
    path = SHARED / prototxt
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    import _caffe_nets
    from lucent_dgn.convert import CAFFE_LAYOUTS
    expected = _caffe_nets.expected_blob_shapes(path.read_text())
    arch = CAFFE_LAYOUTS[layout]
    with torch.device("meta"):
        state = arch.build().state_dict()
    assert set(expected) == set(arch.mapping)
    for name, (weight, bias) in expected.items():
        prefix = arch.mapping[name]
        assert (tuple(state[f"{prefix}.weight"].shape), tuple(state[f"{prefix}.bias"].shape)) == (weight, bias)


def _caffe_layers(state):
    return [CaffeLayer(name, "Convolution" if name.startswith("conv") else "InnerProduct",
                       [state[f"{prefix}.weight"].numpy(), state[f"{prefix}.bias"].numpy()])
            for name, prefix in VGG19_CAFFE_MAPPING.items()]


def test_a_written_caffemodel_round_trips_through_the_converter(tmp_path):
    """Random weights -> our writer -> reader/converter -> the loading chain gives them back exactly.

    The convolutions are full size; the fully connected layers are narrowed to keep the file at 80 MB
    (the full-size file is checked by the opt-in test below)."""
    torch.manual_seed(0)
    net = CaffeVGG19()
    net.fc6, net.fc7, net.fc8 = nn.Linear(25088, 8), nn.Linear(8, 8), nn.Linear(8, 5)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    layers = _caffe_layers(state)
    layers.insert(1, CaffeLayer("relu1_1", "ReLU"))  # layers without blobs are skipped
    path = write_caffemodel(tmp_path / "vgg.caffemodel", layers)
    converted = caffemodel_to_state_dict(path, VGG19_CAFFE_MAPPING, target=net)
    assert set(converted) == set(state) and all(torch.equal(converted[k], state[k]) for k in state)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.zeros_(module.weight)
    load_vgg19_weights(net, path)
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in state)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LUCENT_DGN_LARGE_TESTS") != "1",
                    reason="writes a 575 MB file and needs about 4 GB of memory; set LUCENT_DGN_LARGE_TESTS=1")
def test_full_size_caffemodel_converts_with_arch_vgg19(tmp_path):
    """The real-size file through ``convert-caffemodel --arch vgg19`` and ``caffe_vgg19(weights=...)``."""
    from lucent_dgn.convert import convert_caffemodel_cli
    torch.manual_seed(1)
    reference = caffe_vgg19()
    src = write_caffemodel(tmp_path / "VGG_ILSVRC_19_layers.caffemodel", _caffe_layers(reference.state_dict()))
    out = tmp_path / "vgg_ilsvrc_19.pt"
    assert convert_caffemodel_cli([str(src), str(out), "--arch", "vgg19"]) == 0
    src.unlink()
    loaded = caffe_vgg19(weights="default", cache_dir=tmp_path)  # finds the converted .pt in the cache
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values()))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_arch_vgg19_rejects_a_file_of_another_shape(tmp_path, capsys):
    from lucent_dgn.convert import convert_caffemodel_cli
    blobs = [np.zeros((64, 3, 5, 5), np.float32), np.zeros(64, np.float32)]
    src = write_caffemodel(tmp_path / "x.caffemodel", [CaffeLayer("conv1_1", "Convolution", blobs)])
    assert convert_caffemodel_cli([str(src), str(tmp_path / "x.pt"), "--arch", "vgg19"]) == 1
    err = capsys.readouterr().err
    assert "(64, 3, 5, 5)" in err and "(64, 3, 3, 3)" in err and "lacks layer 'conv1_2'" in err
    assert not (tmp_path / "x.pt").exists()


def test_default_weights_offline_error(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        caffe_vgg19(weights="default", cache_dir=tmp_path)
    text = str(info.value)
    assert "VGG_ILSVRC_19_layers.caffemodel" in text and "vgg_ilsvrc_19.pt" in text
    assert "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_19_layers.caffemodel" in text
    assert "--arch vgg19" in text


def test_zoo_name():
    assert "vgg_ilsvrc_19" in available_models()
    assert CAFFE_LAYOUT.name == "vgg19"


@pytest.fixture(scope="module")
def torchvision_vgg19():
    torch.manual_seed(0)
    return load_model("vgg19", weights=None)


def test_torchvision_vgg19_accepts_cnnprefs_names(torchvision_vgg19, meta_vgg):
    model = torchvision_vgg19
    assert resolve_layer(model, "conv3_1")[0] == "features.10"
    assert resolve_layer(model, "fc8")[0] == "classifier.6"
    assert resolve_layer(model, "features.10")[0] == "features.10"  # the own names still work
    for name, path in VGG19_TORCHVISION_ALIASES.items():  # each alias names the same kind of layer
        ours, theirs = meta_vgg.get_submodule(name), model.get_submodule(path)
        assert type(ours) is type(theirs), name
        assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()], name
    assert layer_shape(model, "conv3_1", (3, 224, 224)) == (256, 56, 56)


def test_unknown_names_suggest_the_aliases(torchvision_vgg19):
    with pytest.raises(LayerNotFoundError, match="conv3_1"):
        resolve_layer(torchvision_vgg19, "conv3_l")
    bad = nn.Sequential(nn.Linear(2, 2))
    bad.layer_aliases = {"fc1": "classifier.0"}
    with pytest.raises(LayerNotFoundError, match="layer_aliases map it to 'classifier.0'"):
        resolve_layer(bad, "fc1")


@pytest.mark.parametrize("which", ["caffe", "torchvision"])
def test_generate_image_at_conv3_1(which, torchvision_vgg19):
    """cnnpref's call with cnnpref's layer name; the size (224) comes from the model."""
    if which == "caffe":
        torch.manual_seed(0)
        net = CaffeVGG19().eval()
    else:
        net = torchvision_vgg19
    mask = unit_mask((256, 56, 56), 7).numpy()
    img = generate_image(net, "conv3_1", mask, iter_n=2, disp_every=0, seed=0)
    assert img.shape == (224, 224, 3) and img.dtype == np.float32 and np.isfinite(img).all()
    start = generate_image(net, "conv3_1", mask, iter_n=1, lr_start=0.0, lr_end=0.0, decay_start=0.0,
                           decay_end=0.0, image_blur=False, image_jitter=False, disp_every=0, seed=0)
    assert np.abs(img - start).max() > 1.0  # the image changed
