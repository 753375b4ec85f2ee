"""Result rows: a measured ratio (or value) next to its target, printed as a table and saved as JSON."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

__all__ = ["Row", "row", "format_table", "skipped"]


@dataclass
class Row:
    """One line of the results table.

    Attributes:
        item: the measured item's number (1-8; see the README's file table).
        key: short identifier, e.g. ``"1.pixel.fc8.b1"``.
        what: what is measured, in words.
        value: the measured ratio or value (NaN when skipped).
        target: the bound as text (``"<= 1.05"``), or ``""`` for report-only rows.
        ok: True / False against the target; None for report-only or skipped rows.
        clock: which clock the ratio uses (``"cpu"``, ``"wall"``, ``"-"``).
        threads: torch threads used.
        detail: medians and quartiles behind the ratio, free-form.
    """

    item: int
    key: str
    what: str
    value: float
    target: str = ""
    ok: Optional[bool] = None
    clock: str = "cpu"
    threads: int = 1
    detail: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if isinstance(self.value, float) and math.isnan(self.value):
            d["value"] = None
        return d


def _check(value: float, target: str) -> Optional[bool]:
    if not target or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    op, bound = target.split()
    bound_f = float(bound)
    return {"<=": value <= bound_f, ">=": value >= bound_f, "<": value < bound_f, ">": value > bound_f}[op]


def row(item: int, key: str, what: str, value: float, target: str = "", *, clock: str = "cpu",
        threads: int = 1, **detail: Any) -> Row:
    """A row with ``ok`` computed from ``target`` (``"<= 1.05"`` style, or ``""`` for report only)."""
    return Row(item, key, what, float(value), target, _check(float(value), target), clock, threads, detail)


def skipped(item: int, key: str, what: str, reason: str) -> Row:
    """A row for a measurement that could not run (e.g. bdpy missing)."""
    return Row(item, key, what, float("nan"), "", None, "-", 0, {"skipped": reason})


def format_table(rows: List[Row]) -> str:
    """Markdown table: item, measurement, value, target, verdict, clock/threads."""
    lines = ["| # | measurement | value | target | met | clock, threads |",
             "|---|---|---:|---|---|---|"]
    for r in rows:
        if "skipped" in r.detail:
            lines.append(f"| {r.item} | {r.what} | skipped | | | {r.detail['skipped']} |")
            continue
        verdict = {True: "yes", False: "**no**", None: "report"}[r.ok]
        lines.append(f"| {r.item} | {r.what} | {r.value:.3g} | {r.target} | {verdict} | {r.clock}, {r.threads} |")
    return "\n".join(lines)
