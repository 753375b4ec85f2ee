"""Interoperability with other libraries (Captum)."""
from __future__ import annotations

from .captum import as_neuron_selector, mask_from_attribution, module_for, to_hwc

__all__ = ["as_neuron_selector", "module_for", "to_hwc", "mask_from_attribution"]
