"""The demo's page in a real browser (headless Chromium through Playwright): it loads, shows
lintorch's first evaluation, and a Step moves the loss and the lines; the MLP steps too.

With LINTORCH_DEMO_SCREENSHOT=path the last screenshot is also saved there (that is how
experiments/figures/demo.png is made)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from lintorch import demo

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python")
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and os.path.exists(p)), None)
if CHROMIUM is None:
    pytest.skip("needs a chromium executable (Debian: apt-get install chromium)",
                allow_module_level=True)
# The machine has no internet: Chromium must not try to reach it in the background.
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def url():
    server = demo.make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def evaluations(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.evaluations || 0)"))


def act(page, action) -> None:
    """Do ``action`` and wait for the evaluation it brings back from the server."""
    before = evaluations(page)
    action()
    page.wait_for_function(f"Number(document.body.dataset.evaluations || 0) > {before}",
                           timeout=20_000)


def test_the_page_steps_the_linear_classifier_and_the_mlp(url, tmp_path):
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto(url)
            page.wait_for_function("Number(document.body.dataset.evaluations || 0) >= 1",
                                   timeout=20_000)
            act(page, lambda: page.click("[data-preset=separable]"))
            loss = page.inner_text("#total-loss")
            lines = json.loads(page.get_attribute("#plane", "data-lines"))
            w00 = page.input_value("#editor input[data-k='0'][data-j='0']")
            assert float(loss) > 0 and len(lines) == 3

            act(page, lambda: page.click("#step"))
            assert page.inner_text("#total-loss") != loss
            assert json.loads(page.get_attribute("#plane", "data-lines")) != lines
            assert page.input_value("#editor input[data-k='0'][data-j='0']") != w00
            assert page.inner_text("#step-count") == "step 1"
            for _ in range(7):
                act(page, lambda: page.click("#step"))
            page.click("#check")
            page.wait_for_selector("#grad .headline")
            assert "largest relative error" in page.inner_text("#grad")
            assert "error" not in (page.get_attribute("#status", "class") or "")
            page.screenshot(path=str(tmp_path / "linear.png"))
            if os.environ.get("LINTORCH_DEMO_SCREENSHOT"):
                target = Path(os.environ["LINTORCH_DEMO_SCREENSHOT"])
                target.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(target))

            act(page, lambda: page.select_option("#model", "mlp"))
            loss = page.inner_text("#total-loss")
            assert json.loads(page.get_attribute("#plane", "data-lines")) == []  # regions only
            act(page, lambda: page.click("#step"))
            assert page.inner_text("#total-loss") != loss
            page.screenshot(path=str(tmp_path / "mlp.png"))
        finally:
            browser.close()
    assert errors == []
