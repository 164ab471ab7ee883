"""Headless Chromium (Debian's, driven by Playwright; nothing downloaded) over a real Studio.

Opens the slide viewer, pans and zooms, toggles an overlay (tiles, then vectors zoomed in),
launches a short training job from the form and waits until it finishes. Screenshots go to
`outputs/studio/` of the source tree for a reviewer.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "outputs" / "studio"
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))


@pytest.fixture()
def server(ctx):
    """The Studio on a free 127.0.0.1 port (real uvicorn), real CLI jobs."""
    import uvicorn

    from autoscope.studio.app import create_app

    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium (apt-get install chromium chromium-driver)")
    from tinydata import make_tiny_dataset

    make_tiny_dataset(ctx.stores.data / "datasets" / "tiny")
    ctx.command = []  # the real CLI
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning")
    )
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


@pytest.fixture()
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        yield pg
        browser.close()


def test_viewer_pan_zoom_overlay(page, server):
    page.goto(f"{server}/slides")
    page.click("a.slide-link")
    page.wait_for_selector('#osd[data-ready="1"]', timeout=30000)
    page.wait_for_timeout(1500)
    zoom0 = page.evaluate("studioViewer.viewer.viewport.getZoom()")
    page.evaluate("""() => { const v = studioViewer.viewer.viewport;
        v.zoomBy(3); v.panBy(new OpenSeadragon.Point(0.05, 0.03)); }""")
    page.wait_for_timeout(800)
    assert page.evaluate("studioViewer.viewer.viewport.getZoom()") > 2 * zoom0
    assert "µm" in page.inner_text("#scalebar")
    cells = "geojson:cells_model/v1:cells.geojson"
    page.check(f'input[data-layer="{cells}"]')
    page.check('input[data-layer="tissue"]')
    page.wait_for_function(f"document.getElementById('osd').dataset.layers.includes('{cells}')")
    page.fill("#opacity", "0.8")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SHOTS / "viewer.png"))
    page.evaluate("""() => { const v = studioViewer.viewer.viewport;
        v.zoomTo(v.imageToViewportZoom(1.0)); }""")
    page.wait_for_function(
        "Number(document.getElementById('osd').dataset.vectors || 0) > 0", timeout=15000
    )
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "viewer_vectors.png"))


def test_launch_training_from_the_form(page, server):
    from tinydata import TINY_TRAIN

    page.goto(f"{server}/experiments")
    page.select_option('select[name="model"]', "tiny_cnn")
    page.fill('input[name="trainer.max_epochs"]', "1")
    page.fill('input[name="overrides"]', " ".join(["++dataset.name=tiny", *TINY_TRAIN]))
    page.click("#launch-btn")
    page.wait_for_url("**/jobs/*")
    page.wait_for_function(
        "['done','failed','interrupted'].includes(document.getElementById('job-status').textContent)",
        timeout=240000,
    )
    page.screenshot(path=str(SHOTS / "job.png"))
    assert page.inner_text("#job-status") == "done", page.inner_text("#job-log")[-2000:]
    page.goto(f"{server}/experiments")
    assert page.locator("table.runs tr").count() >= 2
    page.screenshot(path=str(SHOTS / "experiments.png"), full_page=True)
