"""The ``convert-caffemodel`` command: a Caffe ``.caffemodel`` -> a PyTorch state dict file.

Layer names are mapped with ``--map NAME=PREFIX`` pairs, or by a known architecture
(``--arch``), whose mapping is checked against the architecture itself (every tensor present,
every shape right). The architectures are those of :data:`CAFFE_LAYOUTS`, each defined beside
its network: BVLC AlexNet (``bvlc_alexnet``), VGG19 (``vgg19``) and the DeePSiM generators
(``deepsim-fc6``, ``-fc7``, ``-fc8``, ``-pool5``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, Optional, Sequence

import torch

from ._io import save_torch
from .errors import ConfigError, CorruptWeightsError, WeightsNotFoundError, describe
from .caffemodel import CaffeLayout, caffemodel_to_state_dict, read_caffemodel
from .generators.deepsim import CAFFE_LAYOUTS as DEEPSIM_LAYOUTS
from .models.alexnet import CAFFE_LAYOUT as ALEXNET_LAYOUT
from .models.vgg import CAFFE_LAYOUT as VGG19_LAYOUT

__all__ = ["CAFFE_LAYOUTS", "convert_caffemodel_cli"]

#: The architectures ``--arch`` knows, by name.
CAFFE_LAYOUTS: Dict[str, CaffeLayout] = {layout.name: layout for layout in
                                         (ALEXNET_LAYOUT, VGG19_LAYOUT, *DEEPSIM_LAYOUTS)}


def _parse_map(items: Sequence[str]) -> Optional[Dict[str, str]]:
    if not items:
        return None
    mapping = {}
    for item in items:
        name, sep, prefix = item.partition("=")
        if not sep or not name:
            raise ConfigError(describe("--map", "NAME=PREFIX (e.g. conv1=features.0)", item))
        mapping[name] = prefix
    return mapping


def convert_caffemodel_cli(argv: Optional[Sequence[str]] = None) -> int:
    """``convert-caffemodel INPUT.caffemodel [OUTPUT.pt] [--arch NAME] [--map NAME=PREFIX ...] [--list]``.

    With ``--arch``, the architecture is built on PyTorch's ``meta`` device (no memory for its
    weights) only to check the converted tensors' names and shapes.

    Returns:
        0 on success, 1 when the file cannot be read or converted, 2 on a usage error.
    """
    parser = argparse.ArgumentParser(prog="convert-caffemodel",
                                     description="Convert a Caffe .caffemodel to a PyTorch state dict.",
                                     epilog="Put --map after INPUT and OUTPUT: it takes every word after it.")
    parser.add_argument("input", help="binary .caffemodel file")
    parser.add_argument("output", nargs="?", help="PyTorch file to write (torch.save of a state dict)")
    parser.add_argument("--map", nargs="+", action="extend", default=[], metavar="NAME=PREFIX",
                        help="Caffe layer -> module prefix (default: every layer under its own name)")
    parser.add_argument("--list", action="store_true", help="print the layers and their blob shapes")
    parser.add_argument("--arch", choices=sorted(CAFFE_LAYOUTS), default=None,
                        help="map and check against a known architecture")
    try:
        args = parser.parse_args(argv)
        if not args.list and not args.output:
            parser.error("OUTPUT is required unless --list is given")
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        model = read_caffemodel(args.input)
        if args.list:
            for layer in model.layers:
                shapes = " ".join(str(tuple(b.shape)) for b in layer.blobs)
                print(f"{layer.name:24s} {layer.type:16s} {shapes}".rstrip())
            if not args.output:
                return 0
        mapping, target = _parse_map(args.map), None
        if args.arch:
            layout = CAFFE_LAYOUTS[args.arch]
            with torch.device("meta"):
                target = layout.build()
            mapping = {**layout.mapping, **(mapping or {})}
        state = caffemodel_to_state_dict(model, mapping or None, target=target)
        save_torch(state, args.output)
    except (CorruptWeightsError, WeightsNotFoundError, ConfigError, OSError) as err:
        print(f"convert-caffemodel: error: {err}", file=sys.stderr)
        return 1
    count = sum(t.numel() for t in state.values())
    print(f"wrote {len(state)} tensors ({count} values) to {args.output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(convert_caffemodel_cli())
