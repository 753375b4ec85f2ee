"""Small Fashion-MNIST classifiers shipped with the package, and the weight-file format they use.

* :class:`FashionCNN` -- the default target network: conv3x3(32)-ReLU-pool-conv3x3(64)-ReLU-pool-
  fc(256)-ReLU-dropout-fc(10); about 0.82 M parameters. Layers: ``conv1 relu1 pool1 conv2 relu2
  pool2 flatten fc1 relu3 dropout fc2`` (``fc2`` = logits). ReLUs are not in-place, so hooks on
  ``conv1``, ``conv2``, ``fc1`` see pre-ReLU values.
* :class:`FashionMLP` -- an independent *judge* (different architecture and seed) used to measure
  whether synthesised images look like a class: 784-256-128-10 MLP.

Both take (N, 1, 28, 28) images with values in [0, 1] (``input_space = UnitSpace(1)``) and
standardise inside. Both carry their tuned render settings: ``model.render_settings(variant,
generator)`` gives :func:`fashion_settings` (the demo's and ``lucent-dgn render``'s defaults). :func:`fashion_classifier` / :func:`fashion_judge` load the shipped weights
from :data:`ASSETS_DIR` (``python -m lucent_dgn.training.make_assets`` re-creates them).

Weight files are ``torch.save``-d dicts ``{"format", "arch", "config", "state_dict", "meta"}``;
floating tensors may be stored as float16 and are loaded as float32.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import nn

from ..datasets import FASHION_MNIST_CLASSES
from .._io import atomic_write_bytes
from ..errors import ConfigError, CorruptWeightsError, ShapeError, WeightsNotFoundError, describe
from ..spaces import UnitSpace
from ..weights import read_torch_file

__all__ = [
    "ASSETS_DIR",
    "FASHION_MEAN",
    "FASHION_STD",
    "FashionCNN",
    "FashionMLP",
    "fashion_classifier",
    "fashion_judge",
    "fashion_settings",
    "atomic_save",
    "save_asset",
    "load_asset",
]

#: Folder of the shipped weight files.
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
#: Pixel mean and standard deviation of the Fashion-MNIST training images on the 0-1 scale.
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
ASSET_FORMAT = "lucent_dgn.asset/1"


def _class_names(num_classes: int) -> tuple:
    return FASHION_MNIST_CLASSES if num_classes == 10 else tuple(str(i) for i in range(num_classes))


class _Standardise(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ShapeError(describe("input", "a tensor of shape (N, 1, H, W) in [0, 1]", tuple(x.shape)))
        return (x - self.mean) / self.std


class FashionCNN(nn.Module):
    """conv3x3(width)-ReLU-pool-conv3x3(2·width)-ReLU-pool-fc(hidden)-ReLU-dropout-fc(10).

    Args:
        width: channels of ``conv1`` (``conv2`` has twice as many). Default 32.
        hidden: units of ``fc1``. Default 256.
        dropout: dropout probability before ``fc2``. Default 0.5.
        num_classes: outputs of ``fc2``. Default 10.

    Input (N, 1, 28, 28) in [0, 1]; output logits (N, num_classes).
    """

    def __init__(self, width: int = 32, hidden: int = 256, dropout: float = 0.5, num_classes: int = 10) -> None:
        super().__init__()
        self.input_space = UnitSpace(channels=1)
        self.input_size = 28
        self.classes = _class_names(num_classes)
        self.standardise = _Standardise(FASHION_MEAN, FASHION_STD)
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def render_settings(self, variant: str, generator: Optional[nn.Module] = None) -> Dict[str, Any]:
        """This model's tuned recipe options for ``variant`` (:func:`fashion_settings`)."""
        return fashion_settings(generator).get(variant, {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(self.standardise(x))))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.fc2(self.dropout(x))


class FashionMLP(nn.Module):
    """Multi-layer perceptron 784-hidden1-hidden2-10 (the independent judge).

    Layers ``flatten fc1 relu1 dropout fc2 relu2 fc3`` (``fc3`` = logits).
    Input (N, 1, 28, 28) in [0, 1]; output logits (N, num_classes).
    """

    def __init__(self, hidden1: int = 256, hidden2: int = 128, dropout: float = 0.2, num_classes: int = 10) -> None:
        super().__init__()
        self.input_space = UnitSpace(channels=1)
        self.input_size = 28
        self.classes = _class_names(num_classes)
        self.standardise = _Standardise(FASHION_MEAN, FASHION_STD)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, hidden1)
        self.relu1 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden1, hidden2)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden2, num_classes)

    def render_settings(self, variant: str, generator: Optional[nn.Module] = None) -> Dict[str, Any]:
        """This model's tuned recipe options for ``variant`` (:func:`fashion_settings`)."""
        return fashion_settings(generator).get(variant, {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu1(self.fc1(self.flatten(self.standardise(x)))))
        return self.fc3(self.relu2(self.fc2(x)))


_ARCHS = {"FashionCNN": FashionCNN, "FashionMLP": FashionMLP}


def atomic_save(obj: Any, path: Union[str, Path]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it onto ``path``.

    A failure part-way leaves any previous ``path`` intact and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch.save into an open file object keeps the archive's inner name fixed (reproducible bytes)
    atomic_write_bytes(path, lambda handle: torch.save(obj, handle))
    return path


def save_asset(model: nn.Module, path: Union[str, Path], config: Dict[str, Any], meta: Optional[Dict[str, Any]] = None,
               half: bool = True) -> Path:
    """Write ``model``'s weights with its constructor ``config`` and ``meta`` (atomically).

    With ``half`` (default) parameters are stored as float16; buffers keep their dtype.
    """
    params = {name for name, _ in model.named_parameters()}
    state = {k: (v.detach().cpu().half() if half and k in params and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    blob = {"format": ASSET_FORMAT, "arch": type(model).__name__, "config": dict(config),
            "state_dict": state, "meta": dict(meta or {})}
    return atomic_save(blob, path)


def check_asset(blob: Any, archs: Mapping[str, type], path: str) -> type:
    """Validate a loaded weight file before anything real is built; returns its architecture class.

    Checks, in order: the dict layout (``format``, ``arch`` among ``archs``, ``config`` a dict of
    the constructor's keyword arguments, ``state_dict`` a dict of tensors, ``meta`` a dict); no
    number in ``config`` exceeds the number of values the file stores (a dimension can never
    be larger); the architecture built on the ``meta`` device (no memory) accepts the config; and
    its parameter and buffer names and shapes equal the file's. A file that passes therefore
    builds a model no larger than the weights it holds.

    Raises:
        CorruptWeightsError: the first check that fails, naming ``path``.
    """
    def bad(rule: str, hint: str = "") -> CorruptWeightsError:
        return CorruptWeightsError(describe("path", rule, path, hint))

    if not isinstance(blob, dict) or blob.get("format") != ASSET_FORMAT or blob.get("arch") not in archs:
        raise bad(f"a {ASSET_FORMAT} file of a known architecture ({sorted(archs)})")
    model_cls = archs[blob["arch"]]
    config, state, meta = blob.get("config"), blob.get("state_dict"), blob.get("meta", {})
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v)
                                                           for k, v in state.items()):
        raise bad("a file whose state_dict maps names to tensors")
    if not isinstance(meta, dict):
        raise bad("a file whose meta is a dict", f"Its meta is a {type(meta).__name__}.")
    params = inspect.signature(model_cls.__init__).parameters
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise bad(f"a file whose config is a dict of {model_cls.__name__}'s arguments")
    unknown = sorted(k for k in config if k not in params or k == "self")
    if unknown:
        raise bad(f"a file whose config holds {model_cls.__name__}'s arguments",
                  f"Unknown: {unknown}; known: {sorted(k for k in params if k != 'self')}.")
    stored = sum(int(v.numel()) for v in state.values())
    numbers = [v for v in _config_numbers(config.values())]
    if any(abs(v) > stored for v in numbers):
        raise bad("a file whose config fits its weights",
                  f"The config holds {max(numbers, key=abs)!r}, more than the {stored} values stored.")
    try:
        with torch.device("meta"):
            skeleton = model_cls(**config)
    except Exception as exc:  # noqa: BLE001 - any constructor failure means a config it does not take
        raise bad(f"a file whose config builds a {model_cls.__name__}",
                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]]
        key = diff[0]
        raise bad(f"weights matching the {model_cls.__name__} its config describes",
                  f"First difference: {key} is {expected.get(key, 'absent')} in the architecture and "
                  f"{found.get(key, 'absent')} in the file.")
    return model_cls


def _config_numbers(values: Any) -> List[float]:
    """Every int/float inside a config's values (lists and tuples are searched)."""
    out: List[float] = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out += _config_numbers(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(value)
    return out


def load_asset(path: Union[str, Path], archs: Optional[Dict[str, type]] = None) -> nn.Module:
    """Build the model a weight file describes and load its weights (as float32), in eval mode.

    The file's ``meta`` dict is attached as ``model.meta``.

    Raises:
        WeightsNotFoundError: no file at ``path``.
        CorruptWeightsError: unreadable file, unknown architecture or mismatched weights.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(describe(
            "path", "an existing weight file", str(path),
            "Re-create the shipped files with `python -m lucent_dgn.training.make_assets`."))
    blob = read_torch_file(path, "path")
    model_cls = check_asset(blob, dict(_ARCHS, **(archs or {})), str(path))
    model = model_cls(**blob["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptWeightsError(describe("path", "weights matching the stored config", str(path), str(exc))) from exc
    model.meta = blob.get("meta", {})
    return model.eval()


def _load_shipped(name: str, model_cls: type, pretrained: bool, path: Union[str, Path, None]) -> nn.Module:
    if not pretrained:
        return model_cls().eval()
    model = load_asset(path or ASSETS_DIR / name)
    if not isinstance(model, model_cls):
        raise CorruptWeightsError(describe("path", f"a {model_cls.__name__} weight file", type(model).__name__))
    return model


def fashion_classifier(pretrained: bool = True, path: Union[str, Path, None] = None) -> FashionCNN:
    """The default Fashion-MNIST target network (:class:`FashionCNN`), in eval mode.

    Args:
        pretrained: load the shipped weights (``assets/fashion_classifier.pt``) or another
            ``path``; False gives a randomly initialised network.
        path: optional weight file written by :func:`save_asset`.
    """
    return _load_shipped("fashion_classifier.pt", FashionCNN, pretrained, path)


def fashion_judge(pretrained: bool = True, path: Union[str, Path, None] = None) -> FashionMLP:
    """The independent judge classifier (:class:`FashionMLP`), in eval mode; see :func:`fashion_classifier`."""
    return _load_shipped("fashion_judge.pt", FashionMLP, pretrained, path)


def fashion_settings(generator: Optional[nn.Module] = None, steps: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """Recipe options tuned for the shipped Fashion-MNIST models, per variant (their render defaults).

    Pixel variants work in grey [0, 1] space (decay towards black, the dataset's background).
    DGN variants start from the generator's code statistics, are bounded to
    ``generator.code_bounds(k=1)`` (DGN-AM's "1x" bounds; "3x" gave less natural images here) and
    take a learning rate of 0.2 times the mean code standard deviation. A generator without code
    statistics (or none) gets the DGN variants' code start and bounds from the recipe defaults.

    Args:
        generator: the generator of the DGN variants (e.g. ``fashion_generator()``), or None.
        steps: override every variant's iterations (``iter_n`` / ``maxiter``); default 200 / 100.

    Returns:
        ``{"gd": {...}, "lbfgs": {...}, "dgn_gd": {...}, "dgn_lbfgs": {...}}``, fresh dicts.
    """
    dgn_gd: Dict[str, Any] = dict(iter_n=200, momentum=0.9, decay=0.01)
    dgn_lbfgs: Dict[str, Any] = dict(maxiter=100)
    try:
        lower, upper = generator.code_bounds(k=1.0)  # type: ignore[union-attr]
        lr_dgn = 0.2 * float(generator.code_stats["std"].mean())  # type: ignore[union-attr]
    except (AttributeError, ConfigError):  # no generator, or one without code statistics
        pass
    else:
        dgn_gd = dict(init="stats", lower=lower, upper=upper, clip_initial=True, iter_n=200, lr=(lr_dgn, 0.0),
                      momentum=0.9, decay=0.01)
        dgn_lbfgs = dict(init="stats", lower=lower, upper=upper, maxiter=100)
    settings = {
        "gd": dict(space="gray", init="gray", iter_n=200, lr=(0.02, 0.0), momentum=0.9, decay=0.01, jitter_size=1,
                   blur_sigma=(1.0, 0.5), bounded=True),
        "lbfgs": dict(space="gray", init="gray", maxiter=100),
        "dgn_gd": dgn_gd,
        "dgn_lbfgs": dgn_lbfgs,
    }
    if steps is not None:
        for name, options in settings.items():
            options["maxiter" if "lbfgs" in name else "iter_n"] = int(steps)
    return settings
