"""The shipped Fashion-MNIST classifier, judge and generator; the dataset readers."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.datasets import (FASHION_MNIST_CLASSES, FashionMNIST, FashionMNISTNotFoundError, ImageFolder,
                                 TensorImages, fashion_mnist_available, load_batch, read_idx)
from lucent_dgn.errors import CorruptWeightsError, ShapeError, WeightsNotFoundError
from lucent_dgn.generators.small import SmallGenerator, fashion_generator
from lucent_dgn.layers import resolve_layer
from lucent_dgn.models.fashion import ASSETS_DIR, FashionCNN, FashionMLP, fashion_classifier, fashion_judge, load_asset
from lucent_dgn.spaces import UnitSpace
from lucent_dgn.training.classifier import evaluate_classifier
from lucent_dgn.training.make_assets import TEST_SUBSET, reconstruction_mse, sha256

torch.set_num_threads(1)
needs_data = pytest.mark.skipif(not fashion_mnist_available(), reason="install dataset-fashion-mnist")
#: Measured when the assets were made: 0.0285 on this subset (0.0289 on the whole test split).
RECONSTRUCTION_MSE_BOUND = 0.032


@pytest.fixture(scope="module")
def test_set():
    return FashionMNIST(train=False)


def test_asset_files_match_their_metadata() -> None:
    info = json.loads((ASSETS_DIR / "fashion_assets.json").read_text())
    for kind in ("classifier", "judge", "generator"):
        path = ASSETS_DIR / info[kind]["file"]
        assert sha256(path) == info[kind]["sha256"]
        assert path.stat().st_size == info[kind]["bytes"] < 4_500_000
    assert info["classifier"]["test_accuracy"] >= 0.88
    assert info["generator"]["layer"] == "relu3"


def test_classifier_api() -> None:
    model = fashion_classifier()
    assert isinstance(model, FashionCNN) and not model.training
    assert isinstance(model.input_space, UnitSpace) and model.input_space.channels == 1
    assert model.input_size == 28 and model.classes == FASHION_MNIST_CLASSES and len(model.classes) == 10
    for name in ("conv1", "conv2", "fc1", "fc2", "relu3", "pool2"):
        assert resolve_layer(model, name)[1] is getattr(model, name)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model.fc1.weight.dtype == torch.float32
    with pytest.raises(ShapeError):
        model(torch.zeros(2, 3, 28, 28))
    judge = fashion_judge()
    assert isinstance(judge, FashionMLP) and judge(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert judge.meta["settings"]["seed"] != model.meta["settings"]["seed"]


def test_generator_api_and_bounds() -> None:
    gen = fashion_generator()
    assert isinstance(gen, SmallGenerator) and not gen.training
    assert gen.code_shape == (256,) and gen.image_size == 28 and gen.output_space.channels == 1
    assert gen.inverted_layer == "relu3" and gen.meta["settings"]["comparator_layers"] == ["pool1", "pool2"]
    assert gen.meta["percentile_levels"] == [1.0, 5.0, 50.0, 95.0, 99.0]
    assert set(gen.code_stats) == {"mean", "std", "min", "max", "p1", "p5", "p50", "p95", "p99"}
    lower, upper = gen.code_bounds()
    assert lower.shape == upper.shape == (256,)
    assert torch.equal(lower, torch.zeros(256))  # post-ReLU layer: never negative
    assert torch.allclose(upper, gen.code_mean + gen.code_std)
    assert torch.equal(upper[gen.code_max == 0], torch.zeros(int((gen.code_max == 0).sum())))
    assert torch.all(gen.code_bounds(3.0)[1] >= upper)
    image = gen(upper.expand(3, -1))
    assert image.shape == (3, 1, 28, 28) and image.min() >= 0 and image.max() <= 1


@needs_data
def test_classifier_and_judge_accuracy(test_set) -> None:
    assert evaluate_classifier(fashion_classifier(), test_set, TEST_SUBSET) >= 0.87
    assert evaluate_classifier(fashion_judge(), test_set, TEST_SUBSET) >= 0.85


@needs_data
def test_generator_reconstructs_test_images(test_set) -> None:
    mse = reconstruction_mse(fashion_generator(), fashion_classifier(), test_set, TEST_SUBSET)
    assert mse < RECONSTRUCTION_MSE_BOUND


@needs_data
def test_generator_statistics_match_the_training_data() -> None:
    gen, clf = fashion_generator(), fashion_classifier()
    train = FashionMNIST(train=True)
    images = load_batch(train, range(0, 60000, 60))[0]
    codes = torch.relu(clf.fc1(clf.flatten(clf.pool2(clf.relu2(clf.conv2(clf.pool1(clf.relu1(clf.conv1(
        clf.standardise(images)))))))))).detach()
    assert torch.all(codes.max(0).values <= gen.code_max + 1e-4)
    # 1000 of 60000 images: the sample mean lies within a few standard errors (std / 31.6).
    assert torch.all((codes.mean(0) - gen.code_mean).abs() <= 0.2 * gen.code_std + 1e-3)


def test_missing_dataset_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FashionMNISTNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST(root=tmp_path)
    assert not fashion_mnist_available(tmp_path)


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def test_idx_reader_and_fashion_dataset_on_small_files(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 7]), False)
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    data = FashionMNIST(train=False, root=tmp_path)
    assert len(data) == 2 and data[1][1] == 7
    assert torch.equal(data[0][0], torch.from_numpy(images[0]).float().div(255).unsqueeze(0))
    (tmp_path / "bad").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(ShapeError, match="truncated"):
        read_idx(tmp_path / "bad")


def test_tensor_and_folder_datasets(tmp_path: Path) -> None:
    from PIL import Image

    data = TensorImages(torch.full((3, 4, 4), 255, dtype=torch.uint8), [0, 1, 2])
    images, labels = data.get_batch([2, 0])
    assert images.shape == (2, 1, 4, 4) and torch.all(images == 1) and labels.tolist() == [2, 0]
    for i, cls in enumerate(("b_bag", "a_shoe")):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((10, 10), 50 * i, dtype=np.uint8)).save(tmp_path / cls / "x.png")
    folder = ImageFolder(tmp_path, size=8)
    assert folder.classes == ["a_shoe", "b_bag"] and len(folder) == 2
    image, label = folder[0]
    assert image.shape == (1, 8, 8) and label == 0 and torch.allclose(image, torch.full((1, 8, 8), 50 / 255))


def test_weight_file_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="make_assets"):
        fashion_classifier(path=tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CorruptWeightsError):
        load_asset(tmp_path / "bad.pt")
    with pytest.raises(CorruptWeightsError):
        fashion_judge(path=ASSETS_DIR / "fashion_classifier.pt")
    assert isinstance(fashion_classifier(pretrained=False), nn.Module)
