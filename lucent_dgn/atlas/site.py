"""The atlas: a static site (plain HTML/CSS, one small script) built from a sweep's dataset.

Pages, relative to ``<sweep>/atlas/``::

    index.html                      the layers: shape, units, failures, the strongest units
    layer/<layer>.html              the units of a layer as a grid: variant and seed switch, sorting
                                    by final activation, pages of PER_PAGE units (data embedded in
                                    the page: browsers forbid reading local JSON from file://)
    unit/<layer>/<unit>.html        one unit: variants side by side, activation curves, dataset
                                    examples, settings
    thumbs/..., curves/...          thumbnails (images larger than THUMB px) and curve plots (SVG)

Every image tag is ``loading="lazy"``; a layer page holds only its own units' data, so a
10,000-unit sweep gives pages of a few hundred kilobytes. Files are written atomically; a
thumbnail or plot that is already up to date is not written again.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._io import atomic_write_bytes
from ..errors import ConfigError, describe
from ..sweeps.dataset import ATLAS_DIR, SETTINGS_FILE, read_rows
from .plots import CurvePlotter

__all__ = ["build_atlas", "PER_PAGE", "THUMB"]

#: Units per page of a layer's grid.
PER_PAGE = 240
#: Side (pixels) above which grid images get a thumbnail.
THUMB = 96
STATIC = Path(__file__).resolve().parent / "static"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.4g}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, lambda fh: fh.write(data), durable=False)  # made again from the dataset


def _page(title: str, crumbs: Sequence[Tuple[str, Optional[str]]], body: str, css: str, script: str = "") -> str:
    nav = " › ".join(f'<a href="{_e(h)}">{_e(t)}</a>' if h else _e(t) for t, h in crumbs)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f'<link rel="icon" href="data:,">\n<link rel="stylesheet" href="{_e(css)}">\n</head>\n<body>\n'
            f'<header><nav>{nav}</nav><h1>{_e(title)}</h1></header>\n<main>\n{body}\n</main>\n{script}</body>\n</html>\n')


class _Site:
    def __init__(self, sweep: Path, out: Path, per_page: int) -> None:
        self.sweep, self.out, self.per_page = sweep, out, per_page
        self.settings = json.loads((sweep / SETTINGS_FILE).read_text())
        self.rows = read_rows(sweep)
        from ..recipes import variant_names
        order = {v: i for i, v in enumerate(variant_names())}  # sweep.json's keys are sorted by name
        self.variants: List[str] = sorted(self.settings["variants"], key=lambda v: (order.get(v, len(order)), v))
        self.seeds: List[int] = list(self.settings["seeds"])
        self.layers = self.settings["layers"]
        self.by_key: Dict[Tuple[str, str, int, int], Dict[str, Any]] = {
            (r["layer"], r["variant"], r["seed"], r["unit"]): r for r in self.rows}

    # -- paths -------------------------------------------------------------------------------
    def rel(self, target: Path, page: Path) -> str:
        return Path(os.path.relpath(target, page.parent)).as_posix()

    def thumb(self, row: Dict[str, Any], page: Path) -> str:
        """Grid image of a unit: its PNG, or a thumbnail of it when larger than THUMB px."""
        src = self.sweep / row["png"]
        side = _png_side(src)
        if side <= THUMB:
            return self.rel(src, page)
        dst = self.out / "thumbs" / Path(row["png"]).relative_to("units")
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            _thumbnail(src, dst)
        return self.rel(dst, page)

    def unit_page(self, layer: str, unit: int) -> Path:
        return self.out / "unit" / _slug(layer) / f"{unit}.html"

    def layer_page(self, layer: str) -> Path:
        return self.out / "layer" / f"{_slug(layer)}.html"

    # -- pages -------------------------------------------------------------------------------
    def build(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("atlas.css", "atlas.js"):
            _write(self.out / name, (STATIC / name).read_text())
        with CurvePlotter().session() as plotter:
            for layer in self.layers:
                self.write_layer(layer)
                units = layer["units"]
                for i, unit in enumerate(units):
                    prev_u = units[i - 1] if i > 0 else None
                    next_u = units[i + 1] if i + 1 < len(units) else None
                    self.write_unit(layer, unit, prev_u, next_u, plotter)
        index = self.out / "index.html"
        _write(index, self.index_html(index))
        return index

    def index_html(self, page: Path) -> str:
        s = self.settings
        first = self.variants[0]
        rows = []
        for layer in self.layers:
            name = layer["name"]
            ok = [self.by_key.get((name, v, sd, u)) for v in self.variants for sd in self.seeds for u in layer["units"]]
            done = sum(r is not None for r in ok)
            failed = sum(r is not None and r["status"] != "ok" for r in ok)
            top = sorted((r for r in (self.by_key.get((name, first, self.seeds[0], u)) for u in layer["units"])
                          if r is not None and r["status"] == "ok" and r["final_activation"] is not None),
                         key=lambda r: (-r["final_activation"], r["unit"]))[:8]
            strip = "".join(f'<a href="{_e(self.rel(self.unit_page(name, r["unit"]), page))}" '
                            f'title="unit {r["unit"]}: {_fmt(r["final_activation"])}"><img loading="lazy" '
                            f'src="{_e(self.thumb(r, page))}" alt="unit {r["unit"]}"></a>' for r in top)
            rows.append(f'<tr><td><a href="{_e(self.rel(self.layer_page(name), page))}">{_e(name)}</a></td>'
                        f'<td>{_e(tuple(layer["shape"]))}</td><td>{len(layer["units"])}</td>'
                        f'<td>{done} of {len(ok)}{f" ({failed} failed)" if failed else ""}</td>'
                        f'<td><div class="strip">{strip}</div></td></tr>')
        model = s["model"]
        gen = s.get("generator")
        body = (f'<p class="muted">Model <b>{_e(model["source"])}</b>'
                + (f', generator <b>{_e(gen["source"])}</b>' if gen else "")
                + f'; variants {_e(", ".join(self.variants))}; seeds {_e(", ".join(map(str, self.seeds)))}; '
                  f'{len(self.rows)} unit results.</p>\n'
                  f'<h2>Layers</h2>\n<table><tr><th>layer</th><th>shape</th><th>units</th><th>results</th>'
                  f'<th>strongest units ({_e(first)})</th></tr>\n' + "\n".join(rows) + "\n</table>\n"
                + self.settings_html())
        return _page("lucent-dgn atlas", [("atlas", None)], body, self.rel(self.out / "atlas.css", page))

    def settings_html(self) -> str:
        s = {k: v for k, v in self.settings.items() if k != "layers"}
        return (f'<h2>Settings</h2>\n<details><summary>sweep.json</summary><pre>'
                f'{_e(json.dumps(s, indent=1, sort_keys=True))}</pre></details>\n')

    def write_layer(self, layer: Dict[str, Any]) -> None:
        name = layer["name"]
        page = self.layer_page(name)
        units = []
        for unit in layer["units"]:
            cells = {}
            for v in self.variants:
                for sd in self.seeds:
                    r = self.by_key.get((name, v, sd, unit))
                    if r is None:
                        continue
                    ok = r["status"] == "ok"
                    cells[f"{v}/{sd}"] = {"src": self.thumb(r, page) if ok else None, "act": r["final_activation"],
                                          "error": None if ok else r["error"]}
            units.append({"u": unit, "href": self.rel(self.unit_page(name, unit), page), "cells": cells})
        data = {"variants": self.variants, "seeds": self.seeds, "perPage": self.per_page, "units": units}
        buttons = "".join(f'<button type="button" data-variant="{_e(v)}">{_e(v)}</button>' for v in self.variants)
        seeds = "".join(f'<option value="{sd}">seed {sd}</option>' for sd in self.seeds)
        hidden = "" if len(self.seeds) > 1 else ' hidden'
        links = " ".join(f'<a href="{_e(u["href"])}">{u["u"]}</a>' for u in units)
        body = (f'<p class="muted">{len(units)} units, feature shape {_e(tuple(layer["shape"]))}. '
                f'Click a unit for its page.</p>\n'
                f'<div class="controls"><span>variant</span> {buttons}\n'
                f'<label{hidden}>seed <select id="seed">{seeds}</select></label>\n'
                f'<label>sort <select id="sort"><option value="unit">by unit</option>'
                f'<option value="desc">final activation, high to low</option>'
                f'<option value="asc">final activation, low to high</option></select></label>\n'
                f'<button type="button" id="prev">previous</button><span id="page"></span>'
                f'<button type="button" id="next">next</button></div>\n'
                f'<div class="grid" id="grid"></div>\n<noscript><p>Units: {links}</p></noscript>\n')
        payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        script = (f'<script type="application/json" id="atlas-data">{payload}</script>\n'
                  f'<script src="{_e(self.rel(self.out / "atlas.js", page))}"></script>\n')
        crumbs = [("atlas", self.rel(self.out / "index.html", page)), (name, None)]
        _write(page, _page(f"layer {name}", crumbs, body, self.rel(self.out / "atlas.css", page), script))

    def write_unit(self, layer: Dict[str, Any], unit: int, prev_u: Optional[int], next_u: Optional[int],
                   plotter: CurvePlotter) -> None:
        name = layer["name"]
        page = self.unit_page(name, unit)
        cells, curves = [], []
        for sd in self.seeds:
            figures = []
            for v in self.variants:
                r = self.by_key.get((name, v, sd, unit))
                if r is None:
                    figures.append(f'<figure><div class="failed">not rendered</div><figcaption>{_e(v)}</figcaption></figure>')
                    continue
                if r["status"] != "ok":
                    figures.append(f'<figure><div class="failed">{_e(r["error"])}</div>'
                                   f'<figcaption>{_e(v)}: failed</figcaption></figure>')
                    continue
                if r["curve_steps"]:
                    curves.append((f"{v}" + (f" seed {sd}" if len(self.seeds) > 1 else ""), r["curve_steps"],
                                   r["activation_curve"]))
                figures.append(f'<figure><a href="{_e(self.rel(self.sweep / r["png"], page))}"><img loading="lazy" '
                               f'src="{_e(self.rel(self.sweep / r["png"], page))}" alt="{_e(v)}"></a>'
                               f'<figcaption><b>{_e(v)}</b> final {_fmt(r["final_activation"])}<br>'
                               f'{r["steps"]} steps, {r["evaluations"]} evaluations, {r["wall_time_s"]:.2f} s</figcaption>'
                               f'</figure>')
            label = f"<h2>seed {sd}</h2>\n" if len(self.seeds) > 1 else ""
            cells.append(f'{label}<div class="variants">{"".join(figures)}</div>')
        body = "\n".join(cells)
        if curves:
            digest = hashlib.sha256(json.dumps(curves).encode()).hexdigest()[:12]
            svg = self.out / "curves" / _slug(name) / f"{unit}-{digest}.svg"  # drawn once per content
            if not svg.is_file():
                for old in svg.parent.glob(f"{unit}-*.svg"):
                    old.unlink()
                plotter.save(svg, curves)
            panels = (f'<section><h2>Activation during the render</h2>\n<img class="curves" loading="lazy" '
                      f'src="{_e(self.rel(svg, page))}" alt="activation curves"></section>')
        else:
            panels = ""
        panels += self.examples_html(name, unit, page)
        body += f'\n<div class="panels">{panels}</div>\n' + self.unit_settings_html(name, unit)
        nav = []
        if prev_u is not None:
            nav.append(f'<a href="{_e(self.rel(self.unit_page(name, prev_u), page))}">‹ unit {prev_u}</a>')
        if next_u is not None:
            nav.append(f'<a href="{_e(self.rel(self.unit_page(name, next_u), page))}">unit {next_u} ›</a>')
        body = f'<p>{" · ".join(nav)}</p>\n' + body
        crumbs = [("atlas", self.rel(self.out / "index.html", page)),
                  (name, self.rel(self.layer_page(name), page)), (f"unit {unit}", None)]
        _write(page, _page(f"{name} unit {unit}", crumbs, body, self.rel(self.out / "atlas.css", page)))

    def examples_html(self, layer: str, unit: int, page: Path) -> str:
        row = next((self.by_key.get((layer, v, sd, unit)) for v in self.variants for sd in self.seeds
                    if self.by_key.get((layer, v, sd, unit)) is not None), None)
        examples = row.get("examples") if row else None
        if not examples:
            return ""
        source = (self.settings.get("examples") or {}).get("source", "")
        figs = "".join(f'<figure><img loading="lazy" src="{_e(self.rel(self.sweep / ex["file"], page))}" '
                       f'alt="image {ex["index"]}"><figcaption>#{ex["index"]}<br>{_fmt(ex["activation"])}'
                       f'</figcaption></figure>' for ex in examples)
        return (f'<section><h2>Dataset examples</h2>\n<p class="muted">The {len(examples)} images of {_e(source)} '
                f'that drive this unit most<br>(image number and activation below each).</p>\n'
                f'<div class="examples">{figs}</div></section>')

    def unit_settings_html(self, layer: str, unit: int) -> str:
        parts = []
        for v in self.variants:
            runs = [self.by_key.get((layer, v, sd, unit)) for sd in self.seeds]
            record = {"options": self.settings["variants"][v], "batch": self.settings["batch"].get(v),
                      "runs": [{k: r[k] for k in ("seed", "status", "final_activation", "activation_initial",
                                                   "activation_max", "steps", "evaluations", "wall_time_s",
                                                   "worker", "error")} for r in runs if r is not None]}
            parts.append(f"<h3>{_e(v)}</h3><pre>{_e(json.dumps(record, indent=1))}</pre>")
        versions = next((r["versions"] for r in self.rows if r.get("versions")), {})
        return (f'\n<h2>Settings</h2>\n<details><summary>options and runs</summary>{"".join(parts)}'
                f'<h3>software</h3><pre>{_e(json.dumps(versions, indent=1))}</pre></details>\n')


def _png_side(path: Path) -> int:
    """Larger side of a PNG, read from its header."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    return max(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))


def _thumbnail(src: Path, dst: Path) -> None:
    from PIL import Image
    from ..viz import save_png
    with Image.open(src) as img:
        img = img.convert("RGB")
        img.thumbnail((THUMB, THUMB), Image.LANCZOS)
        save_png(dst, np.asarray(img))


def build_atlas(sweep_dir: Any, out_dir: Any = None, per_page: int = PER_PAGE) -> Path:
    """Write the atlas of a sweep directory; returns the path of its ``index.html``.

    Args:
        sweep_dir: a directory written by :func:`lucent_dgn.sweep` (finished or not).
        out_dir: where to write the site; default ``<sweep_dir>/atlas``.
        per_page: units per page of a layer grid (default 240).

    Raises:
        ConfigError: ``sweep_dir`` holds no sweep, or ``per_page`` is not positive.
    """
    sweep = Path(sweep_dir)
    if not (sweep / SETTINGS_FILE).is_file():
        raise ConfigError(describe("sweep_dir", f"a sweep directory (with {SETTINGS_FILE})", str(sweep)))
    if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page <= 0:
        raise ConfigError(describe("per_page", "a positive integer", per_page))
    out = Path(out_dir) if out_dir is not None else sweep / ATLAS_DIR
    return _Site(sweep, out, per_page).build()
