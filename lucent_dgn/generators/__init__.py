"""Generator networks: DeePSiM (fc6, fc7, fc8, pool5) built from spec tables, weight loading, and
the small generator of the shipped Fashion-MNIST models. Caffe files are read by
:mod:`lucent_dgn.caffemodel`.
"""
from __future__ import annotations

from .deepsim import (DeePSiMGenerator, Reshape, build_generator, caffe_layer_mapping, deepsim_generator,
                      load_generator_weights, normalize_generator_state_dict)
from .small import SmallGenerator, fashion_generator, load_generator
from .specs import DEEPSIM_SPECS, LAYER_KINDS, GeneratorSpec, LayerSpec, deepsim_spec

__all__ = [
    "SmallGenerator",
    "fashion_generator",
    "load_generator",
    "DEEPSIM_SPECS",
    "LAYER_KINDS",
    "GeneratorSpec",
    "LayerSpec",
    "deepsim_spec",
    "DeePSiMGenerator",
    "Reshape",
    "build_generator",
    "caffe_layer_mapping",
    "deepsim_generator",
    "load_generator_weights",
    "normalize_generator_state_dict",
]
