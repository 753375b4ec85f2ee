"""Train a DeePSiM-style generator that inverts one layer of any classifier.

Losses (Dosovitskiy & Brox 2016): image-space MSE + feature MSE through a *comparator* (layers of
the classifier itself) + a non-saturating adversarial loss from :class:`CodeDiscriminator`, which
sees the image and its code. Adam (2e-4, betas 0.5/0.999) for both networks.

Training is seeded and resumable: a checkpoint (``checkpoint_dir/checkpoint.pt``) with both
networks, both optimizer states, the position (epoch, batch, step), RNG states, the code
statistics and the history is written atomically (temporary file + ``os.replace``) after every
epoch, every ``checkpoint_every`` batches and when ``max_steps`` stops the run. The data order of
epoch ``e`` is drawn from ``seed`` and ``e`` alone, so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from .._asset_io import save_asset
from .._io import save_torch
from ..datasets import load_batch
from ..errors import ConfigError, CorruptWeightsError, describe
from ..generators.small import PERCENTILE_LEVELS, CodeDiscriminator, SmallGenerator
from ..layers import LayerRef, resolve_layer
from ..render.hooks import ActivationCapture, frozen
from ..spaces import UnitSpace, convert
from .classifier import _bar, _check_positive, _steps_per_epoch

__all__ = ["CHECKPOINT_NAME", "GeneratorTraining", "code_statistics", "train_generator", "save_generator"]

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"
_MAX_PERCENTILE_VALUES = 20_000_000  # items x units kept for percentiles (80 MB)
_RESUME_KEYS = ("layer", "comparator_layers", "batch_size", "seed", "generator_config")


@dataclass
class GeneratorTraining:
    """Result of :func:`train_generator`.

    Attributes:
        generator: the trained generator in eval mode, with code statistics and ``meta``.
        history: one dict per finished epoch (mean losses: ``pixel feature adversarial discriminator``).
        step: optimisation steps done in total (also those before a resume).
        finished: False when ``max_steps`` stopped the run early.
    """

    generator: SmallGenerator
    history: List[Dict[str, float]] = field(default_factory=list)
    step: int = 0
    finished: bool = True


def _to_classifier(images: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    space = getattr(classifier, "input_space", None)
    return images if space is None else convert(images, UnitSpace(images.shape[1]), space)


def _capture(classifier: nn.Module, names: Sequence[str], images: torch.Tensor) -> Dict[str, torch.Tensor]:
    with ActivationCapture(classifier, list(names)) as cap:
        cap.run(_to_classifier(images, classifier))
        return dict(cap.features)


@torch.no_grad()
def code_statistics(classifier: nn.Module, layer: LayerRef, dataset: Dataset, batch_size: int = 500,
                    percentile_samples: int = 10000, device: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Per-unit statistics of ``layer``'s activation over ``dataset`` (classifier in eval mode).

    Returns:
        dict with ``mean std min max`` (each of the layer's shape without batch, over all items),
        ``percentiles`` (len(PERCENTILE_LEVELS), *shape) over up to ``percentile_samples`` evenly
        spaced items (fewer for wide layers: at most 2e7 values are kept), and ``count`` (items used).
    """
    name = resolve_layer(classifier, layer)[0]
    n = len(dataset)
    with frozen(classifier):
        units = _capture(classifier, [name], load_batch(dataset, [0])[0].to(device))[name][0].numel()
    percentile_samples = max(1, min(percentile_samples, _MAX_PERCENTILE_VALUES // units))
    stride = max(1, n // percentile_samples)
    total = total_sq = low = high = None
    kept = []
    with frozen(classifier):
        for start in range(0, n, batch_size):
            images = load_batch(dataset, range(start, min(n, start + batch_size)))[0].to(device)
            codes = _capture(classifier, [name], images)[name].double()
            total = codes.sum(0) if total is None else total + codes.sum(0)
            total_sq = (codes ** 2).sum(0) if total_sq is None else total_sq + (codes ** 2).sum(0)
            low = codes.amin(0) if low is None else torch.minimum(low, codes.amin(0))
            high = codes.amax(0) if high is None else torch.maximum(high, codes.amax(0))
            offset = (-start) % stride
            kept.append(codes[offset::stride].float().cpu())
    mean = total / n
    std = (total_sq / n - mean ** 2).clamp_min(0).sqrt()
    return {"mean": mean.float().cpu(), "std": std.float().cpu(), "min": low.float().cpu(),
            "max": high.float().cpu(), "percentiles": _percentiles(torch.cat(kept)[:percentile_samples]), "count": n}


def _percentiles(sample: torch.Tensor) -> torch.Tensor:
    """(S, *shape) -> (len(PERCENTILE_LEVELS), *shape), linear interpolation (numpy's default)."""
    ordered = sample.sort(dim=0).values
    pos = torch.tensor(PERCENTILE_LEVELS, dtype=torch.float64) / 100 * (sample.shape[0] - 1)
    low, frac = pos.floor().long(), (pos - pos.floor()).float()
    high = (low + 1).clamp_max(sample.shape[0] - 1)
    frac = frac.view(-1, *([1] * (sample.dim() - 1)))
    return ordered[low] * (1 - frac) + ordered[high] * frac


def save_generator(generator: SmallGenerator, path: Union[str, Path], half: bool = True) -> Path:
    """Write a generator file (weights, float16 when ``half``; code statistics; ``meta``) atomically."""
    return save_asset(generator, path, generator.config(), meta=generator.meta, half=half)


def _step(batch: torch.Tensor, gen: SmallGenerator, disc: CodeDiscriminator, opts, classifier: nn.Module,
          layer: str, comparators: Sequence[str], weights: Dict[str, float]) -> Dict[str, float]:
    with torch.no_grad():
        real = _capture(classifier, [layer, *comparators], batch)
    code = real[layer].detach()
    fake = gen(code)
    ones, zeros = torch.ones(len(batch), device=batch.device), torch.zeros(len(batch), device=batch.device)
    losses: Dict[str, torch.Tensor] = {}
    if weights["adversarial"] > 0:
        d_loss = (F.binary_cross_entropy_with_logits(disc(batch, code), ones)
                  + F.binary_cross_entropy_with_logits(disc(fake.detach(), code), zeros))
        opts[1].zero_grad(set_to_none=True)
        d_loss.backward()
        opts[1].step()
        losses["discriminator"] = d_loss.detach()
        losses["adversarial"] = F.binary_cross_entropy_with_logits(disc(fake, code), ones)
    losses["pixel"] = F.mse_loss(fake, batch)
    if comparators and weights["feature"] > 0:
        feats = _capture(classifier, comparators, fake)
        losses["feature"] = sum(F.mse_loss(feats[c], real[c]) for c in comparators) / len(comparators)
    g_loss = sum(weights[k] * v for k, v in losses.items() if k != "discriminator")
    opts[0].zero_grad(set_to_none=True)
    g_loss.backward()
    opts[0].step()
    return {k: float(v.detach()) for k, v in losses.items()}


def _load_checkpoint(path: Path, settings: Dict[str, Any], device) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a bad file
        raise CorruptWeightsError(describe("checkpoint_dir", "a folder with a readable checkpoint", str(path),
                                           f"Delete it or pass resume=False. ({exc})")) from exc
    if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
        raise CorruptWeightsError(describe("checkpoint_dir", "a folder with a lucent_dgn training checkpoint",
                                           str(path), "Delete it or pass resume=False."))
    for key in _RESUME_KEYS:
        if state["settings"].get(key) != settings.get(key):
            raise ConfigError(describe(key, f"the checkpoint's value {state['settings'].get(key)!r} to resume",
                                       settings.get(key), "Pass resume=False or use another checkpoint_dir."))
    return state


def train_generator(classifier: nn.Module, layer: LayerRef, dataset: Dataset, *, epochs: int = 1,
                    batch_size: int = 64, seed: int = 0, checkpoint_dir: Union[str, Path, None] = None,
                    resume: bool = True, comparator_layers: Optional[Sequence[LayerRef]] = None,
                    pixel_weight: float = 1.0, feature_weight: float = 0.05, adversarial_weight: float = 0.005,
                    lr: float = 2e-4, generator_kwargs: Optional[Dict[str, Any]] = None,
                    checkpoint_every: Optional[int] = None, max_steps: Optional[int] = None,
                    progress: bool = True, device: Union[str, torch.device] = "cpu") -> GeneratorTraining:
    """Train a :class:`SmallGenerator` that maps ``layer``'s activation back to the input image.

    Args:
        classifier: frozen during training; takes images in its ``input_space`` (default: the
            dataset's [0, 1] values unchanged).
        layer: the layer to invert (module, dotted path or Lucent name); its activation is the code.
        dataset: items ``(image (C, S, S) in [0, 1], label)``, S a multiple of 4, C 1 or 3.
        epochs: passes over the data (a later call with more epochs continues). Default 1.
        batch_size: images per step (the last smaller batch is dropped). Default 64.
        seed: seeds the initial weights and the data order. Default 0.
        checkpoint_dir: folder for ``checkpoint.pt``; None writes no checkpoints.
        resume: continue from an existing checkpoint (settings must match). Default True.
        comparator_layers: classifier layers for the feature loss; default ``[layer]``.
        pixel_weight, feature_weight, adversarial_weight: loss weights (1, 0.05, 0.005).
        lr: Adam learning rate of both networks. Default 2e-4.
        generator_kwargs: ``width``, ``hidden``, ``output`` of :class:`SmallGenerator`.
        checkpoint_every: also checkpoint every this many steps. Default: once per epoch.
        max_steps: stop (with a checkpoint) once this many steps are done in total.
        progress: tqdm bar. device: where to train.

    Returns:
        :class:`GeneratorTraining` with the generator (eval mode, code statistics and ``meta`` set).

    Raises:
        ConfigError: a non-positive ``epochs``/``batch_size``/``lr``, a batch larger than the
            dataset, or a checkpoint whose settings differ (with ``resume``).
        CorruptWeightsError: an unreadable checkpoint file.
    """
    _check_positive(epochs=epochs, batch_size=batch_size, lr=lr)
    _check_positive(**{k: v for k, v in (("checkpoint_every", checkpoint_every), ("max_steps", max_steps))
                       if v is not None})
    steps_per_epoch = _steps_per_epoch(dataset, batch_size)
    name = resolve_layer(classifier, layer)[0]
    comparators = [resolve_layer(classifier, c, arg="comparator_layers")[0] for c in (comparator_layers or [name])]
    sample = load_batch(dataset, [0])[0]
    with frozen(classifier):
        code_shape = tuple(_capture(classifier.to(device), [name], sample.to(device))[name].shape[1:])
    torch.manual_seed(seed)
    gen = SmallGenerator(code_shape, sample.shape[-1], sample.shape[1], **(generator_kwargs or {})).to(device)
    disc = CodeDiscriminator(code_shape, sample.shape[-1], sample.shape[1]).to(device)
    opts = [torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999)) for m in (gen, disc)]
    weights = {"pixel": pixel_weight, "feature": feature_weight, "adversarial": adversarial_weight}
    settings = {"layer": name, "comparator_layers": comparators, "batch_size": batch_size, "seed": seed,
                "generator_config": gen.config(), "loss_weights": weights, "lr": lr, "epochs": epochs,
                "optimizer": "Adam(betas=(0.5, 0.999))", "dataset_size": len(dataset)}
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    state = _load_checkpoint(ckpt_path, settings, device) if ckpt_path is not None and resume else None
    if state is None:
        stats, history, epoch, batch, step = code_statistics(classifier, name, dataset, device=device), [], 0, 0, 0
    else:
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        for opt, opt_state in zip(opts, state["optimizers"]):
            opt.load_state_dict(opt_state)
        torch.set_rng_state(state["torch_rng"])
        stats, history = state["stats"], state["history"]
        epoch, batch, step = state["epoch"], state["batch"], state["step"]
        log.info("resuming generator training at epoch %d, batch %d (step %d)", epoch, batch, step)
    gen.set_code_stats(stats)
    gen.meta = {"layer": name, "classifier": type(classifier).__name__, "code_shape": list(code_shape),
                "input_space": repr(getattr(classifier, "input_space", "dataset values unchanged")),
                "percentile_levels": list(PERCENTILE_LEVELS), "settings": settings}

    def checkpoint() -> None:
        if ckpt_path is not None:
            save_torch({"generator": gen.state_dict(), "discriminator": disc.state_dict(),
                         "optimizers": [o.state_dict() for o in opts], "epoch": epoch, "batch": batch,
                         "step": step, "torch_rng": torch.get_rng_state(), "stats": stats, "running": dict(sums),
                         "history": history, "settings": settings}, ckpt_path)

    sums: Dict[str, float] = dict(state.get("running", {})) if state is not None else {}
    bar = _bar(epochs * steps_per_epoch, progress, "generator")
    bar.update(min(step, epochs * steps_per_epoch))
    finished = True
    with frozen(classifier):
        gen.train()
        disc.train()
        while epoch < epochs:
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            while batch < steps_per_epoch:
                if max_steps is not None and step >= max_steps:
                    finished = False
                    break
                images = load_batch(dataset, order[batch * batch_size:(batch + 1) * batch_size])[0].to(device)
                for key, value in _step(images, gen, disc, opts, classifier, name, comparators, weights).items():
                    sums[key] = sums.get(key, 0.0) + value
                batch, step = batch + 1, step + 1
                bar.update(1)
                bar.set_postfix(pixel=f"{sums['pixel'] / batch:.4f}", refresh=False)
                if checkpoint_every and step % checkpoint_every == 0 and batch < steps_per_epoch:
                    checkpoint()
            if not finished:
                break
            history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}})
            log.info("generator epoch %d: %s", epoch + 1, history[-1])
            epoch, batch, sums = epoch + 1, 0, {}
            checkpoint()
    bar.close()
    if not finished:
        checkpoint()
    gen.meta["history"] = list(history)
    return GeneratorTraining(gen.eval(), history, step, finished)
