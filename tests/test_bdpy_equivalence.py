"""icnn_gd / icnn_dgn_gd against bdpy's ``bdpy.recon.torch.icnn.reconstruct`` (the PyPI package,
a test extra): with the same encoder, generator, targets, initial image or code and settings
(jitter off), the loss histories and images agree within float32 noise.

The encoder is the shipped Fashion-MNIST classifier (grey 0-1 input); the pixel variant stores
its image in Caffe's net space (icnn's default), so bdpy gets cnnpref's ``img_preprocess`` as
``preproc`` and an encoder that converts net space to grey first (bdpy's own ``encoder_preproc``
replaces the optimised tensor by a non-leaf and then fails on its missing gradient).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lucent_dgn as ld
from lucent_dgn.generators.small import fashion_generator
from lucent_dgn.models.fashion import fashion_classifier
from lucent_dgn.spaces import CaffeSpace, convert, img_preprocess

icnn = pytest.importorskip("bdpy.recon.torch.icnn", reason="bdpy (test extra) is not installed")

LAYERS = ["conv1", "relu3"]
STEPS = 30


@pytest.fixture(scope="module")
def setup():
    model, gen = fashion_classifier(), fashion_generator()
    rng = np.random.RandomState(0)
    with torch.no_grad():  # a natural-looking original: a generated garment
        original = gen(torch.from_numpy(gen.code_bounds(k=1.0)[1].numpy() * rng.uniform(0, 1, (1, 256)))
                       .float())
    targets = ld.features_of(model, original, LAYERS)
    return model, gen, targets, rng


class _NetSpaceEncoder(nn.Module):
    """The classifier behind a Caffe net space -> grey 0-1 conversion (ours: PixelImage does it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(convert(x, CaffeSpace(), self.model.input_space))


def _bdpy(features, encoder, tmp_path, prefix="", **kwargs):
    """bdpy's reconstruct on a copy of the encoder (it leaves gradients on the weights)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return icnn.reconstruct({k: v.numpy() for k, v in features.items()}, copy.deepcopy(encoder),
                                layer_mapping={k: prefix + k for k in features}, n_iter=STEPS, save_snapshot=False,
                                output_dir=str(tmp_path), disp_interval=10 ** 9, return_loss=True, device="cpu",
                                **kwargs)


def _icnn_script_weights(features):
    """icnn's example scripts: 1 / ||t||^2 per layer, normalised to sum to 1."""
    norms = np.array([np.linalg.norm(features[k].numpy()) for k in features], dtype="float32")
    weights = 1.0 / norms ** 2
    return dict(zip(features, weights / weights.sum()))


def test_pixel_gd_matches_bdpy(setup, tmp_path):
    model, _, targets, rng = setup
    init = rng.randint(0, 256, (28, 28, 3)).astype(np.float32)
    bx, bloss = _bdpy(targets, _NetSpaceEncoder(model), tmp_path, "model.", initial_image=init,
                      preproc=img_preprocess, image_size=(28, 28, 3), lr=(2.0, 1e-10), momentum=(0.9, 0.9),
                      decay=(0.2, 1e-10), blurring=True, sigma=(2.0, 0.5), jittering=False,
                      layer_weights=_icnn_script_weights(targets))
    # icnn_gd's defaults are these settings: net space, blur 2 -> 0.5, decay 0.2 -> 1e-10, 1/||t||^2 weights
    ours = ld.invert(model, targets, "icnn_gd", init=init, iter_n=STEPS, progress=False)
    np.testing.assert_allclose(ours.loss_history, bloss, rtol=2e-5)
    np.testing.assert_allclose(ours.raw[0], bx, atol=2e-4 * np.abs(bx).max())
    assert ours.loss_history[-1] < 0.75 * ours.loss_history[0]


@pytest.mark.parametrize("faithful", [True, False])
def test_generator_gd_matches_bdpy(setup, tmp_path, faithful):
    model, gen, targets, rng = setup
    code = rng.normal(0, 1, (256,)).astype(np.float32)
    lower, upper = gen.code_bounds(k=3.0)
    bx, bloss, bcode = _bdpy(targets, model, tmp_path, generator=copy.deepcopy(gen), initial_feature=code,
                             feature_size=(256,), image_size=(28, 28, 1), lr=(2.0, 1e-10), momentum=(0.9, 0.9),
                             decay=(0.01, 0.01), feature_lower_bound=lower.numpy(), feature_upper_bound=upper.numpy(),
                             return_z=True)  # layer_weights=None: bdpy's 1/L
    ours = ld.invert(model, targets, "icnn_dgn_gd", gen, init=code, iter_n=STEPS, lower=lower, upper=upper,
                     layer_weights="equal", progress=False, return_pre_update_image=faithful)
    np.testing.assert_allclose(ours.loss_history, bloss, rtol=2e-5)
    assert ours.loss_history[-1] < 0.5 * ours.loss_history[0]
    # bdpy's returned code is a numpy view of the optimised tensor: the code after the last SGD
    # step, before decay and clipping (it does not generate bdpy's returned image).
    final = np.clip((1 - 0.01) * bcode, lower.numpy(), upper.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(gen(ours.final_params).numpy(), ours.model_input, atol=1e-6)
    if faithful:  # bdpy's image is generated by the code from before the last update
        np.testing.assert_allclose(ours.model_input[0], bx, atol=1e-5)
        assert not np.allclose(ours.raw[0], final, atol=1e-3)
    else:  # ours: the final code (the one bdpy would use next) and its image
        np.testing.assert_allclose(ours.raw[0], final, atol=1e-5 * np.abs(final).max())
        assert not np.allclose(ours.model_input[0], bx, atol=1e-3)
