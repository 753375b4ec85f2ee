"""``lucent-dgn train-generator``: train a DeePSiM-style generator for any classifier layer."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, describe
from ..registry import load_model_by_name

__all__ = ["add_train_generator_arguments", "train_generator_command", "load_dataset"]


def add_train_generator_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``train-generator`` options on ``parser``."""
    parser.add_argument("--classifier", default="fashion",
                        help="classifier to invert: fashion (shipped), bvlc_alexnet or a torchvision name")
    parser.add_argument("--classifier-weights", default=None, help="weights file of the classifier")
    parser.add_argument("--layer", required=True, help="layer whose activation becomes the generator code")
    parser.add_argument("--data", default="fashion-mnist",
                        help="fashion-mnist (Debian package dataset-fashion-mnist), a folder of images, or a .pt "
                             "file holding an (N, C, S, S) uint8/float tensor")
    parser.add_argument("--image-size", type=int, default=28, help="image side for a folder dataset")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3), help="channels for a folder dataset")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (checkpointed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    parser.add_argument("--checkpoint-dir", default=None, help="folder for resumable checkpoints")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--out", required=True, help="where to write the generator file (.pt)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="where to train: cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def load_dataset(spec: str, image_size: int = 28, channels: int = 1):
    """Dataset from a CLI spec: ``fashion-mnist``, a folder of images, or a tensor file.

    Args:
        spec: ``"fashion-mnist"`` (or ``"fashion"``), a folder (see
            :class:`~lucent_dgn.datasets.ImageFolder`), or a ``.pt``/``.pth`` file holding an
            (N, C, S, S) tensor, or a dict with ``"images"`` and optional ``"labels"`` (N,).
        image_size: side a folder's images are resized to. Default 28.
        channels: 1 (default) or 3, for a folder.

    Raises:
        ConfigError: ``spec`` is none of these, or the tensor file holds something else.
    """
    from ..datasets import FashionMNIST, ImageFolder, TensorImages
    if spec in ("fashion-mnist", "fashion"):
        return FashionMNIST(train=True)
    path = Path(spec)
    if path.is_dir():
        return ImageFolder(path, size=image_size, channels=channels)
    rule = "'fashion-mnist', a folder of images or a .pt file holding an image tensor (or a dict with 'images')"
    if path.is_file() and path.suffix in (".pt", ".pth"):
        import torch
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a bad file
            raise ConfigError(describe("--data", rule, spec, f"torch.load failed: {exc}")) from exc
        images = data.get("images") if isinstance(data, dict) else data
        if not torch.is_tensor(images):
            raise ConfigError(describe("--data", rule, spec))
        return TensorImages(images, data.get("labels") if isinstance(data, dict) else None)
    raise ConfigError(describe("--data", rule, spec))


def train_generator_command(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    import torch
    from .._io import ensure_writable_dir
    from .generator import save_generator, train_generator
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."), "--out")
    classifier = load_model_by_name(args.classifier, args.classifier_weights)
    dataset = load_dataset(args.data, args.image_size, args.channels)
    run = train_generator(classifier, args.layer, dataset, epochs=args.epochs, batch_size=args.batch_size,
                          seed=args.seed, checkpoint_dir=args.checkpoint_dir, resume=not args.no_resume,
                          max_steps=args.max_steps, progress=not args.quiet, device=args.device)
    save_generator(run.generator, out)
    state = "finished" if run.finished else "stopped early (resume with the same --checkpoint-dir)"
    print(f"generator {state} after {run.step} steps; wrote {out}")
    return 0
