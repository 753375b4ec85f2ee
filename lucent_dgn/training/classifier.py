"""Train and evaluate small image classifiers (Adam, one-cycle learning rate, horizontal flips)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import Dataset

from ..datasets import load_batch
from ..errors import ConfigError, describe

__all__ = ["train_classifier", "evaluate_classifier", "predict"]

log = logging.getLogger(__name__)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(describe(name, "a positive number", value))


def _steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Full batches per pass over ``dataset`` (ConfigError when there is none)."""
    steps = len(dataset) // batch_size
    if steps < 1:
        raise ConfigError(describe("batch_size", f"at most the dataset size ({len(dataset)})", batch_size))
    return steps


def train_classifier(model: nn.Module, dataset: Dataset, *, epochs: int = 6, batch_size: int = 128,
                     lr: float = 3e-3, weight_decay: float = 0.0, flips: bool = True, seed: int = 0,
                     progress: bool = True, device: Union[str, torch.device] = "cpu") -> List[Dict[str, float]]:
    """Train ``model`` with cross-entropy, Adam and a one-cycle schedule peaking at ``lr``.

    Args:
        model: classifier taking (B, C, H, W) images in the dataset's range; returns logits (B, K).
        dataset: items ``(image (C, H, W) float, label int)``; see :mod:`lucent_dgn.datasets`.
        epochs: passes over the data. Default 6.
        batch_size: images per step (the last smaller batch is dropped). Default 128.
        lr: peak learning rate. Default 3e-3.
        weight_decay: Adam's L2 penalty. Default 0.
        flips: flip half of each batch horizontally. Default True.
        seed: seeds data order, flips and dropout. Default 0.
        progress: show a tqdm bar. Default True.
        device: where to train.

    Returns:
        one dict per epoch: ``{"epoch", "loss", "accuracy"}`` (training loss and accuracy).
        The model is left in eval mode.
    """
    _check_positive(epochs=epochs, batch_size=batch_size, lr=lr)
    steps_per_epoch = _steps_per_epoch(dataset, batch_size)
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history = []
    bar = _bar(epochs * steps_per_epoch, progress, "classifier")
    for epoch in range(epochs):
        order = torch.randperm(len(dataset), generator=rng)
        total_loss, correct, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            images, labels = load_batch(dataset, order[step * batch_size:(step + 1) * batch_size])
            if flips:
                flip = torch.rand(images.shape[0], generator=rng) < 0.5
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = nn.functional.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * labels.shape[0]
            correct += int((logits.argmax(1) == labels).sum())
            seen += labels.shape[0]
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        history.append({"epoch": epoch + 1, "loss": total_loss / seen, "accuracy": correct / seen})
        log.info("classifier epoch %d: loss %.4f, accuracy %.4f", epoch + 1, total_loss / seen, correct / seen)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, indices: Optional[Sequence[int]] = None, batch_size: int = 500,
            device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """Predicted class (argmax of the logits) for each item: (len(indices),) long tensor.

    The model's train/eval mode is restored afterwards; predictions are made in eval mode.
    """
    indices = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        out = [model(load_batch(dataset, indices[i:i + batch_size])[0].to(device)).argmax(1).cpu()
               for i in range(0, len(indices), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def evaluate_classifier(model: nn.Module, dataset: Dataset, indices: Optional[Sequence[int]] = None,
                        batch_size: int = 500, device: Union[str, torch.device] = "cpu") -> float:
    """Accuracy in [0, 1] of ``model`` on ``dataset`` (or the items at ``indices``)."""
    indices = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    labels = load_batch(dataset, indices)[1]
    return float((predict(model, dataset, indices, batch_size, device) == labels).float().mean())


def _bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)
