"""Package errors.

Every error raised on bad user input derives from :class:`LucentDGNError` and from the
builtin exception a user would naturally catch (``ValueError``, ``KeyError`` ...), so both
``except LucentDGNError`` and ``except ValueError`` work.

Messages follow one template, built by :func:`describe`:
``"<arg> must be <rule>; got <value>. <hint>"``.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "LucentDGNError",
    "LayerNotFoundError",
    "AmbiguousLayerError",
    "MaskError",
    "ShapeError",
    "ConfigError",
    "BoundsError",
    "WeightsError",
    "WeightsNotFoundError",
    "ChecksumError",
    "CorruptWeightsError",
    "NonFiniteLossError",
    "describe",
]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    if isinstance(value, str):  # names and paths are shown whole (up to a sane length)
        limit = 300
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(arg: str, rule: str, got: Any, hint: str = "", *, raw: bool = False) -> str:
    """Format an error message: ``"<arg> must be <rule>; got <got>. <hint>"``.

    Args:
        arg: name of the offending argument, as the user wrote it.
        rule: what was expected.
        got: what came (``repr``-ed and shortened unless ``raw`` is True).
        hint: optional advice on how to fix it.
        raw: insert ``got`` as given (already formatted text).
    """
    got_text = str(got) if raw else _short(got)
    message = f"`{arg}` must be {rule}; got {got_text}."
    if hint:
        message += f" {hint}"
    return message


class LucentDGNError(Exception):
    """Base class of every error raised by lucent_dgn."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class LayerNotFoundError(LucentDGNError, KeyError):
    """A layer reference names no module of the model."""


class AmbiguousLayerError(LucentDGNError, KeyError):
    """A Lucent-style underscore name maps to more than one module."""


class MaskError(LucentDGNError, ValueError):
    """A unit mask has the wrong shape, dtype or values."""


class ShapeError(LucentDGNError, ValueError):
    """A tensor or array has the wrong shape."""


class ConfigError(LucentDGNError, ValueError):
    """An argument has a value outside what is allowed (steps <= 0, unknown names ...)."""


class BoundsError(LucentDGNError, ValueError):
    """Box bounds are inconsistent (lower > upper, wrong length, unreadable file)."""


class WeightsError(LucentDGNError, OSError):
    """A weights file cannot be used."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights file was found in any of the places searched."""


class ChecksumError(WeightsError):
    """A file's sha256 differs from the expected one."""


class CorruptWeightsError(WeightsError):
    """A weights file is truncated, of the wrong format, or lacks needed entries."""


class NonFiniteLossError(LucentDGNError, FloatingPointError):
    """The objective became NaN or infinite during a render."""
