"""The atlas, opened from file:// in headless Chromium (Debian's chromium + chromium-driver) via Selenium.

Set ``LUCENT_DGN_ATLAS_SCREENSHOTS=DIR`` to keep the screenshots (the README's come from here).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from lucent_dgn.atlas import build_atlas
from lucent_dgn.datasets import fashion_mnist_available
from lucent_dgn.sweeps import read_rows, sweep

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.path.exists(p)), None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver")
                                                else None)
pytestmark = [pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="no Chromium/chromedriver installed"),
              pytest.mark.subprocess]  # a real headless browser
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A sweep of the shipped classifier (every unit of conv1 and fc2, GD and DGN-GD) and its atlas."""
    from lucent_dgn.generators.small import fashion_generator
    from lucent_dgn.models.fashion import fashion_classifier
    from lucent_dgn.sweeps.presets import variant_options
    root = tmp_path_factory.mktemp("atlas") / "sweep"
    options = variant_options(["gd", "dgn_gd"], model=fashion_classifier(), generator=fashion_generator(), steps=30)
    sweep("fashion", ["conv1", "fc2"], "all", options, generator="fashion", out_dir=root, progress=False,
          examples="fashion-mnist" if fashion_mnist_available() else None, top_k=6)
    return root, build_atlas(root)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="atlas-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1100,760")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    driver.get_log("browser")  # start each page with an empty log


def _broken_images(driver):
    """Scroll every image into view (they load lazily), wait for them, return those that failed."""
    script = "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]);"
    for index in range(len(driver.execute_script(script))):
        driver.execute_script("document.images[arguments[0]].scrollIntoView();", index)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        images = driver.execute_script(script)
        if all(done for _, done, _ in images):
            break
        time.sleep(0.05)
    driver.execute_script("window.scrollTo(0, 0);")
    return images, [src for src, done, width in images if not (done and width > 0)]


def _errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _screenshot(driver, name: str, tmp_path: Path, height: int = 760) -> None:
    driver.set_window_size(1100, height)
    driver.save_screenshot(str(tmp_path / name))
    driver.set_window_size(1100, 760)
    keep = os.environ.get("LUCENT_DGN_ATLAS_SCREENSHOTS")
    if keep:
        shutil.copy(tmp_path / name, Path(keep) / name)


def test_index_lists_the_layers_and_its_images_load(site, browser):
    root, index = site
    _open(browser, index)
    images, broken = _broken_images(browser)
    assert len(images) >= 8 and broken == []
    layers = [a.text for a in browser.find_elements("css selector", "table a") if a.text in ("conv1", "fc2")]
    assert layers == ["conv1", "fc2"]
    assert _errors(browser) == []


def test_layer_grid_switches_variant_and_sorts(site, browser, tmp_path):
    root, index = site
    _open(browser, index.parent / "layer" / "fc2.html")
    units = browser.find_elements("css selector", "#grid .unit")
    assert [int(u.get_attribute("data-unit")) for u in units] == list(range(10))
    assert all("/gd/" in u.find_element("tag name", "img").get_attribute("src") for u in units)

    browser.find_element("css selector", 'button[data-variant="dgn_gd"]').click()
    browser.find_element("css selector", "#sort option[value='desc']").click()
    units = browser.find_elements("css selector", "#grid .unit")
    assert all("/dgn_gd/" in u.find_element("tag name", "img").get_attribute("src") for u in units)
    shown = [(int(u.get_attribute("data-unit")), float(u.get_attribute("data-act"))) for u in units]
    rows = [r for r in read_rows(root) if r["layer"] == "fc2" and r["variant"] == "dgn_gd"]
    expected = sorted(((r["unit"], r["final_activation"]) for r in rows), key=lambda p: (-p[1], p[0]))
    assert [u for u, _ in shown] == [u for u, _ in expected]
    assert [a for _, a in shown] == pytest.approx([a for _, a in expected])
    assert browser.find_element("css selector", 'button[data-variant="dgn_gd"]').get_attribute("aria-pressed") == "true"
    images, broken = _broken_images(browser)
    assert len(images) == 10 and broken == []

    browser.find_element("css selector", "#sort option[value='asc']").click()
    acts = [float(u.get_attribute("data-act")) for u in browser.find_elements("css selector", "#grid .unit")]
    assert acts == sorted(acts)
    assert _errors(browser) == []

    _open(browser, index.parent / "layer" / "conv1.html")
    browser.find_element("css selector", 'button[data-variant="dgn_gd"]').click()
    browser.find_element("css selector", "#sort option[value='desc']").click()
    assert len(browser.find_elements("css selector", "#grid .unit")) == 32
    assert _broken_images(browser)[1] == [] and _errors(browser) == []
    _screenshot(browser, "atlas_screenshot.png", tmp_path)


def test_unit_page_shows_variants_curves_and_examples(site, browser, tmp_path):
    root, index = site
    _open(browser, index.parent / "unit" / "fc2" / "7.html")
    images, broken = _broken_images(browser)
    assert broken == []
    sources = [src for src, _, _ in images]
    assert any("/units/fc2/gd/seed0/00007.png" in s for s in sources)
    assert any("/units/fc2/dgn_gd/seed0/00007.png" in s for s in sources)
    assert any("/curves/fc2/7-" in s and s.endswith(".svg") for s in sources)
    if json.loads((root / "sweep.json").read_text())["examples"]:
        assert sum("/examples/images/" in s for s in sources) == 6
    assert _errors(browser) == []
    _screenshot(browser, "atlas_unit_screenshot.png", tmp_path, height=900)


def _synthetic_sweep(root: Path, units: int, side: int) -> None:
    """A sweep directory of ``units`` fc units (one variant, no curves), all showing one image."""
    import numpy as np
    from lucent_dgn.sweeps.dataset import make_row
    from lucent_dgn.sweeps.work import UnitOutput
    from lucent_dgn.viz import save_png
    settings = {"format": "lucent_dgn.sweep/1", "model": {"source": "synthetic"}, "generator": None,
                "layers": [{"name": "fc6", "shape": [units], "units": list(range(units))}],
                "variants": {"gd": {}}, "seeds": [0], "batch": {"gd": 8}, "examples": None}
    root.mkdir()
    (root / "sweep.json").write_text(json.dumps(settings))
    image = np.random.default_rng(0).random((side, side, 3)).astype(np.float32)
    lines = []
    for unit in range(units):
        row = make_row("fc6", "gd", 0, UnitOutput(unit, image=image, history=np.zeros(0, np.float32),
                                                  final_activation=float(unit % 7)), 8, {}, "w")
        path = root / row["png"]
        if unit == 0:
            save_png(path, image)
        else:
            os.link(root / "units/fc6/gd/seed0/00000.png", path)
        lines.append(json.dumps(row))
    (root / "index.jsonl").write_text("\n".join(lines) + "\n")


def test_a_large_layer_is_paged_with_thumbnails(tmp_path, browser):
    _synthetic_sweep(tmp_path / "big", 250, 100)
    index = build_atlas(tmp_path / "big", per_page=100)
    page = index.parent / "layer" / "fc6.html"
    assert page.stat().st_size < 100_000 and len(list((index.parent / "unit" / "fc6").iterdir())) == 250
    _open(browser, page)
    assert browser.find_element("id", "page").text == "page 1 of 3"
    units = browser.find_elements("css selector", "#grid .unit")
    assert len(units) == 100 and units[0].find_element("tag name", "img").get_attribute("loading") == "lazy"
    assert "/atlas/thumbs/fc6/gd/seed0/" in units[0].find_element("tag name", "img").get_attribute("src")
    browser.find_element("id", "next").click()
    browser.find_element("id", "next").click()
    assert browser.find_element("id", "page").text == "page 3 of 3"
    assert [int(u.get_attribute("data-unit")) for u in browser.find_elements("css selector", "#grid .unit")] == \
        list(range(200, 250))
    assert _broken_images(browser)[1] == [] and _errors(browser) == []
