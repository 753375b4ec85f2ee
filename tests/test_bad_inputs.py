"""The bad-input matrix: every case raises a package error naming the argument, the rule and what came.

One parametrised table. Each case is a function of ``tmp_path`` that triggers the error; the test
checks the error type, the message (a regex) and, for renders, that the error came before any
optimisation step and left no hook on the model. Earlier single checks live in
test_masked_units.py, test_render_loop.py and test_parameterizations.py.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn import weights as W
from lucent_dgn._io import ensure_writable_dir
from lucent_dgn.cnnpref.presets import prefer_img_gd
from lucent_dgn.errors import (AmbiguousLayerError, BoundsError, ChecksumError, ConfigError, CorruptWeightsError,
                               LayerNotFoundError, LucentDGNError, MaskError, ShapeError, WeightsNotFoundError)
from lucent_dgn.caffemodel import (CaffeLayer, caffemodel_to_state_dict, read_caffemodel,
                                              write_caffemodel)
from lucent_dgn.layers import layer_shape, resolve_layer
from lucent_dgn.objectives import as_bool_mask, masked_units, unit_mask, unit_masks
from lucent_dgn.parameterizations import DGNImage, PixelImage, code_bounds
from lucent_dgn.render.gd import MomentumGD
from lucent_dgn.render.optimizers import make_optimizer
from lucent_dgn.runs import render_units, save_units
from lucent_dgn.spaces import UnitSpace
from lucent_dgn.viz import save_png

from _tiny import TinyCaffeNet, TinyGenerator

CONV1 = (4, 14, 14)  # TinyCaffeNet conv1 at 32 px
STEPS: List[Any] = []  # callbacks of the renders below record every finished step here
LAST: Dict[str, nn.Module] = {}  # the model of the last render


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def run(model: nn.Module, objective: Any, param: Any = None, optimizer: Any = None, steps: Any = 3, **kw: Any):
    """Render with a callback that records steps (none may run when the input is bad)."""
    LAST["model"] = model
    param = PixelImage(32, seed=0) if param is None else param
    optimizer = MomentumGD(lr=1.0) if optimizer is None else optimizer
    return ld.render(model, objective, param, optimizer, steps, progress=False, callbacks=[STEPS.append], **kw)


def conv1(channel: int = 0, **kw: Any):
    return masked_units("conv1", unit_mask(CONV1, channel), **kw)


def a_file(tmp_path: Path) -> Path:
    """A regular file; paths below it can never be created (also not by root)."""
    path = tmp_path / "file"
    path.write_text("not a directory")
    return path


def ambiguous_net() -> nn.Module:
    """Lucent's name 'x_y_z' stands for both 'x.y_z' and 'x_y.z'."""
    return nn.Sequential(OrderedDict(x=nn.Sequential(OrderedDict(y_z=nn.ReLU())),
                                     x_y=nn.Sequential(OrderedDict(z=nn.ReLU()))))


def plain_rgb_net() -> nn.Module:
    """A model without ``input_space``: Conv2d(3, 2, 3) only."""
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 2, 3)))


def caffemodel(tmp_path: Path, layers: List[str] = ("conv1",)) -> Path:
    blobs = {"conv1": [np.zeros((4, 3, 5, 5), np.float32), np.zeros(4, np.float32)],
             "fc8": [np.zeros((10, 196), np.float32), np.zeros(10, np.float32)]}
    kinds = {"conv1": "Convolution", "fc8": "InnerProduct"}
    return write_caffemodel(tmp_path / "net.caffemodel", [CaffeLayer(n, kinds[n], blobs[n]) for n in layers])


def truncated_caffemodel(tmp_path: Path) -> None:
    data = caffemodel(tmp_path, ["conv1", "fc8"]).read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) // 2])
    read_caffemodel(cut)


def not_a_caffemodel(tmp_path: Path) -> None:
    path = tmp_path / "notes.caffemodel"
    path.write_text("These are my notes, not a network.\n" * 4)
    read_caffemodel(path)


def truncated_state_dict(tmp_path: Path) -> None:
    torch.save(TinyCaffeNet().state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    W.load_state_dict_file(tmp_path / "cut.pt")


def sha256_mismatch(tmp_path: Path) -> None:
    def fake_fetch(url, out, progress=True, timeout=60.0):  # never the network
        out.write(b"weights from a server that changed them")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(W, "fetch_url", fake_fetch)
        W.download_file("https://example.invalid/w.pt", tmp_path / "cache" / "w.pt", sha256="0" * 64,
                        progress=False)


def bounds_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fc6.txt"
    path.write_text(text)
    return path


def wrong_weight_shape(tmp_path: Path) -> None:
    state = TinyCaffeNet().state_dict()
    state["conv1.weight"] = torch.zeros(4, 3, 3, 3)
    W.load_into(TinyCaffeNet(), state, "tiny.pt")


def save_units_into(tmp_path: Path) -> None:
    result = run(TinyCaffeNet(), conv1(), steps=1)
    STEPS.clear()
    save_units(a_file(tmp_path) / "sub", {"gd": result}, "conv1", [0])


def inference_pixel() -> PixelImage:
    with torch.inference_mode():
        return PixelImage(32, seed=0)


def per_item_mask_with_empty_item() -> torch.Tensor:
    masks = unit_masks(CONV1, [0, 1])
    masks[1] = False
    return masks


Trigger = Callable[[Path], Any]
# (id, trigger, error type, regex the message must match)
TABLE = [
    # ------------------------------------------------------------------------------------- layers
    ("layer-unknown", lambda p: resolve_layer(TinyCaffeNet(), "conv2"), LayerNotFoundError,
     r"`layer` must be a layer of TinyCaffeNet; got 'conv2'\. Did you mean 'conv1'"),
    ("layer-unknown-in-render", lambda p: run(TinyCaffeNet(), masked_units("fc9", unit_mask((10,), 0))),
     LayerNotFoundError, r"got 'fc9'\. Did you mean 'fc8'"),
    ("layer-unknown-shape", lambda p: layer_shape(TinyCaffeNet(), "pool2", (3, 32, 32)), LayerNotFoundError,
     r"got 'pool2'\. Did you mean 'pool1'"),
    ("layer-ambiguous", lambda p: resolve_layer(ambiguous_net(), "x_y_z"), AmbiguousLayerError,
     r"`layer` must be a layer name that names one module; got 'x_y_z'.*'x\.y_z', 'x_y\.z'"),
    ("layer-module-of-another-model", lambda p: resolve_layer(TinyCaffeNet(), nn.Conv2d(3, 4, 5)),
     LayerNotFoundError, r"`layer` must be a submodule of the model; got 'Conv2d'"),
    # -------------------------------------------------------------------------------------- masks
    ("mask-wrong-shape", lambda p: run(TinyCaffeNet(), masked_units("conv1", unit_mask((4, 15, 15), 0).numpy())),
     MaskError, r"`mask` must be the feature shape of layer 'conv1', \(4, 14, 14\).*got shape \(4, 15, 15\)\. "
                r"The map's height and width follow the input size.*fixed_image_size"),
    ("mask-builder-other-channel-count", lambda p: run(TinyCaffeNet(), masked_units("conv1", unit_mask((5, 15, 15), 0))),
     MaskError, r"got shape \(5, 15, 15\) from unit_mask\(\(5, 15, 15\), channel=0\)\. It selects among 5 channels "
                r"and the layer has 4"),
    ("mask-builder-absolute-position-resized", lambda p: run(TinyCaffeNet(), masked_units("conv1", unit_mask((4, 15, 15), 0, y=2))),
     MaskError, r"Its y is given in absolute positions of the 15x15 map, and the map here is 14x14.*relative=True"),
    ("mask-wrong-batch", lambda p: run(TinyCaffeNet(), masked_units("conv1", unit_masks(CONV1, [0, 1, 2])),
                                       PixelImage(32, batch=2)),
     MaskError, r"\(2, 4, 14, 14\) \(batch size 2\); got shape \(3, 4, 14, 14\)"),
    ("mask-dtype-complex", lambda p: as_bool_mask(torch.ones(3, dtype=torch.complex64)), MaskError,
     r"`mask` must be boolean or real-valued; got torch\.complex64"),
    ("mask-dtype-string", lambda p: masked_units("conv1", np.array(["yes", "no"])), MaskError,
     r"`mask` must be a tensor or array of 0/1 values"),
    ("mask-non-binary", lambda p: masked_units("conv1", [0.0, 0.5, 1.0]), MaskError,
     r"`mask` must be binary .*got values such as \[0\.5\]\. Unit weights belong in `weight`"),
    ("mask-empty", lambda p: masked_units("conv1", torch.zeros(CONV1, dtype=torch.bool)), MaskError,
     r"`mask` must be a mask selecting at least one unit; got an empty mask"),
    ("mask-empty-item", lambda p: run(TinyCaffeNet(), masked_units("conv1", per_item_mask_with_empty_item()),
                                      PixelImage(32, batch=2)),
     MaskError, r"at least one unit of every batch item; got no unit for item\(s\) \[1\]"),
    ("mask-nan", lambda p: masked_units("conv1", [1.0, float("nan")]), MaskError,
     r"`mask` must be finite .*; got NaN or infinite values"),
    ("mask-channel-out-of-range", lambda p: unit_mask(CONV1, 4), MaskError,
     r"`channel` must be in \[0, 3\]; got 4"),
    # ------------------------------------------------------------------------------------ weights
    ("weight-wrong-shape", lambda p: run(TinyCaffeNet(), conv1(weight=torch.ones(3))), ShapeError,
     r"`weight` must be a scalar or an array broadcastable to the feature shape \(4, 14, 14\) of layer "
     r"'conv1'; got shape \(3,\)"),
    ("weight-nan", lambda p: conv1(weight=float("nan")), ConfigError, r"`weight` must be finite everywhere"),
    # ---------------------------------------------------------------------------- images vs model
    ("image-wrong-size", lambda p: run(TinyCaffeNet(), conv1(), PixelImage(20)), ShapeError,
     r"`param` must be images the model accepts \(the model's input_size is 32\); got shape \(1, 3, 20, 20\)\. "
     r"The model's forward pass failed"),
    ("image-wrong-channels", lambda p: run(TinyCaffeNet(), conv1(),
                                           PixelImage(32, space="gray", model_space=UnitSpace(1))),
     ShapeError, r"`param` must be images \(N, 3, H, W\) for the model; got shape \(1, 1, 32, 32\)"),
    ("image-wrong-channels-undeclared", lambda p: run(plain_rgb_net(), masked_units("conv", unit_mask((2,), 0)),
                                                      PixelImage(8, space="gray"), preprocess=False),
     ShapeError, r"`param` must be images the model accepts; the model declares no input_space, so it got "
                 r"UnitSpace\(channels=1\) images.*; got shape \(1, 1, 8, 8\)"),
    # --------------------------------------------------------------------- devices and dtypes
    ("generator-dtype", lambda p: run(TinyCaffeNet().double(), conv1(), DGNImage(TinyGenerator(), input_size=32)),
     ConfigError, r"`generator` must be of the model's dtype torch\.float64; got torch\.float32 \(fc\.weight\)"),
    ("param-dtype", lambda p: run(TinyCaffeNet(), conv1(), PixelImage(32).double()), ConfigError,
     r"`param` must be of the model's dtype torch\.float32; got torch\.float64 \(variable\)"),
    ("generator-device", lambda p: run(TinyCaffeNet(), conv1(), DGNImage(TinyGenerator().to("meta"), input_size=32)),
     ConfigError, r"`param` must be on device cpu; got 'meta'\. Move the model and the parameterization"),
    # ------------------------------------------------------------------------------ code bounds
    ("bounds-lower-above-upper", lambda p: code_bounds(5.0, 1.0, (16,)), BoundsError,
     r"`lower` must be <= upper for every code unit; got lower 5 > upper 1 at unit \(0,\)"),
    ("bounds-wrong-length", lambda p: DGNImage(TinyGenerator(), upper=np.ones(15)), BoundsError,
     r"`upper` must be a scalar or 16 values \(one per code unit\); got 15 values"),
    ("bounds-nan", lambda p: code_bounds(np.full(16, np.nan), None, (16,)), BoundsError,
     r"`lower` must be numbers \(use inf for no bound\)"),
    ("bounds-file-wrong-count", lambda p: code_bounds(0.0, bounds_file(p, "1 2 3"), (16,)), BoundsError,
     r"`bounds file` must be 16 values \(one per code unit\); got 3 values in .*fc6\.txt"),
    ("bounds-file-non-numeric", lambda p: code_bounds(0.0, bounds_file(p, "1.0 2.0 n/a"), (3,)), BoundsError,
     r"`bounds file` must be whitespace-separated numbers; got .*fc6\.txt .*n/a"),
    ("bounds-file-missing", lambda p: code_bounds(0.0, p / "absent.txt", (3,)), BoundsError,
     r"`bounds file` must be an existing text file; got .*absent\.txt"),
    # --------------------------------------------------------------------- initial code / image
    ("initial-code-wrong-shape", lambda p: DGNImage(TinyGenerator(), batch=2, init=np.zeros(15)), ShapeError,
     r"`initial code` must be shape \(16,\) or \(2, 16\); got \(15,\)"),
    ("initial-image-wrong-size", lambda p: PixelImage(32, init=np.zeros((30, 32, 3))), ShapeError,
     r"`init` must be an RGB image of shape \(32, 32, 3\) .*; got \(1, 30, 32, 3\)"),
    ("initial-image-wrong-channels", lambda p: PixelImage(32, init=np.zeros((32, 32, 1))), ShapeError,
     r"`init` must be an RGB image .*; got \(1, 32, 32, 1\)"),
    ("initial-image-wrong-count", lambda p: PixelImage(32, batch=2, init=np.zeros((3, 32, 32, 3))), ShapeError,
     r"`init` must be 1 or 2 images; got 3"),
    ("initial-unknown-kind", lambda p: DGNImage(TinyGenerator(), init="uniform"), ConfigError,
     r"`init` must be 'cnnpref', 'normal', 'zeros', 'stats' or an array; got 'uniform'"),
    # ----------------------------------------------------------------------------------- steps
    ("steps-zero", lambda p: run(TinyCaffeNet(), conv1(), steps=0), ConfigError,
     r"`steps` must be a positive integer; got 0"),
    ("steps-negative-preset", lambda p: prefer_img_gd(TinyCaffeNet(), "conv1", unit_mask(CONV1, 0), iter_n=-5,
                                                      progress=False),
     ConfigError, r"`steps` must be a positive integer; got -5"),
    ("steps-float", lambda p: run(TinyCaffeNet(), conv1(), steps=2.5), ConfigError,
     r"`steps` must be a positive integer; got 2\.5"),
    # ----------------------------------------------------------------------------------- names
    ("optimizer-unknown", lambda p: run(TinyCaffeNet(), conv1(), optimizer="adamw"), ConfigError,
     r"`optimizer` must be one of \['gd', 'adam', 'lbfgs', 'lbfgsb', 'scipy-lbfgsb'\]; got 'adamw'\. "
     r"Did you mean 'adam'"),
    ("optimizer-unknown-factory", lambda p: make_optimizer("bfgs"), ConfigError,
     r"`optimizer` must be one of .*; got 'bfgs'"),
    ("variant-unknown", lambda p: render_units(TinyCaffeNet(), "conv1", [0], "dgn-gd"), ConfigError,
     r"`variant` must be one of \['gd', 'lbfgs', 'dgn_gd', 'dgn_lbfgs'\]; got 'dgn-gd'\. Did you mean 'dgn_gd'"),
    ("variant-needs-generator", lambda p: render_units(TinyCaffeNet(), "conv1", [0], "dgn_lbfgs"), ConfigError,
     r"`generator` must be a generator module for variant 'dgn_lbfgs'; got None"),
    ("solver-unknown", lambda p: ld.recipe("lbfgs", "conv1", unit_mask(CONV1, 0), solver="fortran"), ConfigError,
     r"`solver` must be one of 'torch', 'scipy'; got 'fortran'"),
    ("reduction-unknown", lambda p: conv1(reduction="max"), ConfigError,
     r"`reduction` must be one of 'sum', 'mean'; got 'max'"),
    ("generator-without-code-shape", lambda p: DGNImage(nn.Linear(4, 4)), ConfigError,
     r"`generator` must be a generator module with a `code_shape` attribute; got 'Linear'"),
    # ----------------------------------------------------------- extreme values, grad contexts
    ("seed-beyond-64-bits", lambda p: run(TinyCaffeNet(), conv1(), seed=2**70), ConfigError,
     r"`seed` must be None or an integer in \[0, 2\*\*64 - 1\]; got 1180591620717411303424"),
    ("seed-negative-pixel", lambda p: PixelImage(32, seed=-3), ConfigError, r"`seed` must be None or an integer"),
    ("code-bound-nan-scalar", lambda p: DGNImage(TinyGenerator(), upper=float("nan")), BoundsError,
     r"`upper` must be numbers \(use inf for no bound\); got 'NaN'"),
    ("code-bound-not-a-number", lambda p: DGNImage(TinyGenerator(), lower="zero"), BoundsError,
     r"`bounds file` must be an existing text file; got 'zero'"),
    ("param-made-in-inference-mode", lambda p: run(TinyCaffeNet(), conv1(), inference_pixel()), ConfigError,
     r"`param` must be built outside torch\.inference_mode\(\); got inference tensors"),
    ("recipe-unknown-option", lambda p: ld.recipe("dgn_gd", "conv1", unit_mask(CONV1, 0), TinyGenerator(),
                                                  maxiter=3), ConfigError,
     r"`maxiter` must be an option of variant 'dgn_gd'; got 'maxiter'\. Did you mean 'iter_n'\?"),
    ("preset-render-option-unknown", lambda p: prefer_img_gd(TinyCaffeNet(), "conv1", unit_mask(CONV1, 0),
                                                             steps=3), ConfigError,
     r"`steps` must be an option of variant 'gd'"),
    # ------------------------------------------------------------------------ weight files
    ("caffemodel-truncated", truncated_caffemodel, CorruptWeightsError,
     r"`.*cut\.caffemodel` must be a binary Caffe \.caffemodel \(NetParameter\); got malformed data at byte \d+"),
    ("caffemodel-not-a-caffemodel", not_a_caffemodel, CorruptWeightsError,
     r"`.*notes\.caffemodel` must be a binary Caffe \.caffemodel"),
    ("caffemodel-missing-layer", lambda p: caffemodel_to_state_dict(caffemodel(p), {"conv1": "conv1", "fc8": "fc8"},
                                                                    target=TinyCaffeNet()),
     CorruptWeightsError, r"must be a match for the mapping; got caffemodel lacks layer 'fc8' needed for 'fc8'"),
    ("caffemodel-missing-file", lambda p: read_caffemodel(p / "absent.caffemodel"), WeightsNotFoundError,
     r"`path` must be an existing \.caffemodel file; got '/.*Check the path"),
    ("weights-file-truncated", truncated_state_dict, CorruptWeightsError,
     r"`weights file` must be a complete PyTorch state dict; got .*cut\.pt.*truncated"),
    ("weights-wrong-shape", wrong_weight_shape, CorruptWeightsError,
     r"`conv1\.weight in tiny\.pt` must be of shape \(4, 3, 5, 5\); got \(4, 3, 3, 3\)"),
    ("sha256-mismatch", sha256_mismatch, ChecksumError,
     r"`sha256 of https://example\.invalid/w\.pt` must be 0{64}; got '[0-9a-f]{64}'\. .*nothing was saved"),
    # --------------------------------------------------------------------------- output folders
    ("out-dir-below-a-file", lambda p: ensure_writable_dir(a_file(p) / "sub", "out_dir"), ConfigError,
     r"`out_dir` must be a directory that can be created; got '.*file/sub'"),
    ("out-dir-is-a-file", lambda p: ensure_writable_dir(a_file(p), "--out"), ConfigError,
     r"`--out` must be a directory that can be created; got '.*file'"),
    ("png-below-a-file", lambda p: save_png(a_file(p) / "sub" / "unit.png", np.zeros((4, 4, 3))), ConfigError,
     r"`path` must be a directory that can be created"),
    ("save-units-below-a-file", save_units_into, ConfigError, r"`out_dir` must be a directory that can be created"),
]


@pytest.mark.parametrize("trigger, error, message", [pytest.param(*row[1:], id=row[0]) for row in TABLE])
def test_bad_input(tmp_path: Path, trigger: Trigger, error: type, message: str) -> None:
    STEPS.clear()
    LAST.clear()
    with pytest.raises(error, match=message) as info:
        trigger(tmp_path)
    err = info.value
    assert isinstance(err, LucentDGNError)
    text = str(err)
    assert text.startswith("`") and " must be " in text and "; got " in text, text  # describe()'s template
    assert STEPS == []  # raised before any optimisation step
    if "model" in LAST:
        assert hook_count(LAST["model"]) == 0


def test_table_is_large_and_ids_are_unique() -> None:
    ids = [row[0] for row in TABLE]
    assert len(ids) >= 25 and len(set(ids)) == len(ids)


def test_no_file_is_left_by_the_bad_inputs(tmp_path: Path) -> None:
    """A failed checksum or an unwritable folder leaves nothing behind."""
    with pytest.raises(ChecksumError):
        sha256_mismatch(tmp_path)
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(ConfigError):
        save_png(a_file(tmp_path) / "sub" / "unit.png", np.zeros((4, 4, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "file"]
