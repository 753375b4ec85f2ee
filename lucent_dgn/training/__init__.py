"""Training: small classifiers and DeePSiM-style generators for any classifier layer.

* :func:`train_classifier`, :func:`evaluate_classifier`, :func:`predict` -- Adam + one-cycle.
* :func:`train_generator` -- image MSE + comparator feature loss + adversarial loss; seeded,
  resumable, atomic checkpoints. :func:`save_generator` writes the shippable file,
  :func:`code_statistics` the per-unit statistics stored with it.
* ``python -m lucent_dgn.training.make_assets`` re-creates the shipped Fashion-MNIST files.
"""
from __future__ import annotations

from .classifier import evaluate_classifier, predict, train_classifier
from .generator import CHECKPOINT_NAME, GeneratorTraining, code_statistics, save_generator, train_generator

__all__ = [
    "train_classifier",
    "evaluate_classifier",
    "predict",
    "train_generator",
    "GeneratorTraining",
    "code_statistics",
    "save_generator",
    "CHECKPOINT_NAME",
]
