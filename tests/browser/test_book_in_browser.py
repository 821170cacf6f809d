"""The built book as a reader meets it: served on localhost, opened in headless Chromium.

Checks, on the intro and on chapter pages: equations rendered by the vendored MathJax, every
image loaded, a correct Colab launch link, exercise solutions that toggle, no console errors.
Screenshots go to ``_build/screenshots/``. Skipped (with a message) when the book is not built
or Chromium/chromedriver are not installed (``make test`` installs them where it can). Under
``CI=true`` those are failures, not skips, wherever Chromium can be installed (root or
passwordless sudo with apt-get): a CI run must not pass without looking at the book.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")



def _can_install_chromium() -> bool:
    if not shutil.which("apt-get"):
        return False
    if os.geteuid() == 0:
        return True
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def _missing() -> str | None:
    if not (HTML / "index.html").exists():
        return "book not built: run `make book` first"
    if not (CHROMIUM and DRIVER):
        return "Chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true" and (reason.startswith("book") or _can_install_chromium()):
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def _chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f for f in files if (ROOT / f"{f}.ipynb").exists()]


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, url: str):
    browser.get(url)
    deadline = time.time() + 20
    while time.time() < deadline:  # wait for MathJax to typeset (or for a page without math)
        done = browser.execute_script(
            "return document.readyState === 'complete' && (!window.MathJax || !MathJax.startup || "
            "MathJax.startup.promise === undefined || document.querySelectorAll('mjx-container').length > 0 || "
            "document.querySelectorAll('.math').length === 0)")
        if done:
            break
        time.sleep(0.25)
    time.sleep(0.5)


def _severe_console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_intro_renders(server, browser):
    _open(browser, f"{server}/book/intro.html")
    assert "Transfer Learning" in browser.title
    images_ok = browser.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert images_ok, "an image failed to load"
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "intro.png"))
    assert _severe_console_errors(browser) == []


@pytest.mark.parametrize("page", _chapters())
def test_chapter_page(server, browser, page):
    _open(browser, f"{server}/{page}.html")
    html = browser.page_source
    name = Path(page).name
    if name.startswith("01"):  # the top of a chapter with its first figure (used in the README)
        browser.execute_script("document.querySelector('.cell_output img').scrollIntoView({block: 'center'})")
        time.sleep(0.3)
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / f"{name}_figure.png"))
    # math typeset by MathJax (vendored: no network needed)
    if 'class="math' in html:
        rendered = browser.execute_script("return document.querySelectorAll('mjx-container').length")
        assert rendered > 0, "math not rendered"
    # every image (figures are embedded PNGs) loaded
    broken = browser.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
    assert broken == [], f"images failed to load: {broken}"
    # the Colab launch button points at this notebook in the repository
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{repo}/blob/main/{page}.ipynb"
    links = browser.execute_script("return [...document.querySelectorAll('a')].map(a => a.href)")
    assert colab in links, f"no Colab link {colab}"
    # exercise solutions are hidden and toggle open on click
    toggles = browser.find_elements(
        "css selector", ".solution .toggle-button, details.solution summary, .solution.dropdown button")
    if toggles:
        solution = browser.find_elements("css selector", ".solution")[0]
        hidden_before = "toggle-hidden" in (solution.get_attribute("class") or "") or not solution.find_elements(
            "css selector", "section, .solution-content, p")[-1].is_displayed()
        browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", toggles[0])
        time.sleep(0.5)
        hidden_after = "toggle-hidden" in (solution.get_attribute("class") or "")
        assert hidden_before and not hidden_after, "exercise solution did not toggle"
    if name.startswith(("01", "00")):
        browser.save_screenshot(str(SHOTS / f"{name}.png"))
    assert _severe_console_errors(browser) == []
