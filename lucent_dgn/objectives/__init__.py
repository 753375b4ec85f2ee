"""Objectives for preferred images: masked units (cnnpref's loss), mask builders, regularisers.

Every objective is a ``lucent.optvis.objectives.Objective``: it composes with Lucent's own
objectives (``+ - *``) and runs under Lucent's ``render_vis`` as well as lucent_dgn's render loop.
Values are losses to minimise (negated activations), as in Lucent.

The mask builders (``unit_mask``, ``unit_masks``, ``channel_mask``, ``region_mask``) record how a
mask was defined (a :class:`MaskSpec`), so ``masked_units`` resolves it against the feature map the
objective actually sees when the input size, and with it the map's height and width, changes.
"""
from __future__ import annotations

from ._access import item_objective, read_activation, report_activation
from .masked import masked_units
from .masks import (MaskSpec, as_bool_mask, channel_mask, every_nth_channel, region_mask, resolve_mask, unit_mask,
                    unit_masks)
from .regularizers import p_norm, total_variation, tv_map

__all__ = [
    "masked_units",
    "unit_mask",
    "unit_masks",
    "channel_mask",
    "region_mask",
    "every_nth_channel",
    "as_bool_mask",
    "MaskSpec",
    "resolve_mask",
    "p_norm",
    "total_variation",
    "tv_map",
    "read_activation",
    "item_objective",
    "report_activation",
]
