"""Activation curves of a unit as an SVG (matplotlib, object API: no pyplot state is touched)."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

from .._io import atomic_write_bytes

__all__ = ["CurvePlotter"]

Curve = Tuple[str, Sequence[int], Sequence[Optional[float]]]


class CurvePlotter:
    """Draws ``(label, steps, activations)`` curves into one reused figure and saves SVGs.

    Use :meth:`session` around many :meth:`save` calls: it sets matplotlib's SVG options once
    (fixed ids, text as text) and restores them afterwards. The SVGs are deterministic (no date),
    and a file whose content would not change is not written again.

    Raises:
        ImportError: matplotlib is missing (``pip install 'lucent-dgn[sweep]'``).
    """

    def __init__(self, size: Tuple[float, float] = (5.6, 2.6)) -> None:
        try:
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover - matplotlib is part of the sweep extra
            raise ImportError("the atlas's plots need matplotlib: pip install 'lucent-dgn[sweep]'") from None
        self.figure = Figure(figsize=size, dpi=100)
        self.figure.subplots_adjust(left=0.11, right=0.98, top=0.96, bottom=0.18)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self._labels: Optional[Tuple[str, ...]] = None
        self._lines: list = []

    @contextlib.contextmanager
    def session(self) -> Iterator["CurvePlotter"]:
        """matplotlib's SVG settings for the plots, restored on exit."""
        import matplotlib
        with matplotlib.rc_context({"svg.hashsalt": "lucent-dgn", "svg.fonttype": "none"}):
            yield self

    def save(self, path: Path, curves: Sequence[Curve]) -> None:
        """Plot ``curves`` (None values are gaps) and write ``path`` atomically.

        Successive plots with the same curve labels reuse the axes, legend and lines (about half
        the time of a fresh plot).
        """
        ax = self.axes
        labels = tuple(label for label, _, _ in curves)
        if labels != self._labels:
            ax.clear()
            self._lines = [ax.plot([], [], label=label, linewidth=1.4)[0] for label in labels]
            ax.set_xlabel("step", labelpad=1)
            ax.set_ylabel("activation")
            ax.grid(True, alpha=0.3)
            if labels:
                ax.legend(fontsize=8, frameon=False)
            self._labels = labels
        for line, (_, steps, values) in zip(self._lines, curves):
            line.set_data(list(steps), [float("nan") if v is None else v for v in values])
        ax.relim()
        ax.autoscale_view()
        buf = io.BytesIO()
        self.figure.savefig(buf, format="svg", metadata={"Date": None})
        data = buf.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.read_bytes() == data:
            return
        atomic_write_bytes(path, lambda fh: fh.write(data), durable=False)  # made again from the dataset
