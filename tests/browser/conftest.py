"""Browser tests: headless Chromium (the Debian ``chromium`` package) driven by Playwright for Python,
against the whole system started as processes, with axe-core checking every page and a screenshot
of every page saved under docs/screenshots/.

Set-up installs what is missing: ``apt-get install chromium`` (as root, or with password-less sudo)
and axe-core from the npm registry (``npm ci`` in tests/browser, pinned by package-lock.json). The
tests skip, saying why, only when Chromium cannot be installed at all. Playwright's own browser
download is not used (it does not work on a closed network).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse

from services.launcher import System, free_port
from tests.conftest import EXAMPLES
from tests.servers import ThreadedServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium's own connections are refused by a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
# Where the quick exit goes in these tests: a neutral page on a server of the tests' own (the network is
# closed; answering it by intercepting requests in the browser missed the redirect's first attempt).
NEUTRAL_PORT = free_port()
EXIT_URL = f"http://localhost:{NEUTRAL_PORT}/weather"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
FAILING_IMPACTS = {"serious", "critical"}

EHR_KEY = "pw_sample_ehr_client"
PROVIDER_KEY = "pw_sample_aire_valley_da"


def install_chromium() -> str | None:
    """Install Debian's chromium when absent; the reason it cannot be, or None when it is there."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return "Chromium is not installed and there is no apt-get to install it (Debian package 'chromium')."
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "Chromium is not installed and installing it needs root (apt-get install chromium)."
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "fonts-dejavu-core"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:  # the package lists may be missing or stale
        subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900, check=False)
    if not CHROMIUM.exists():
        return f"Chromium could not be installed with apt-get: {(result.stderr or result.stdout)[-500:]}"
    return None


def install_axe() -> None:
    """axe-core from the npm registry, at the version package-lock.json pins."""
    if AXE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install axe-core for the browser tests (tests/browser/package.json)")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=HERE,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0 or not AXE.exists():
        pytest.fail(f"npm ci in tests/browser failed: {result.stderr[-1000:]}")


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for all the browser tests (started after the tools are in place)."""
    reason = install_chromium()
    if reason:
        pytest.skip(reason)
    install_axe()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def neutral_site() -> FastAPI:
    app = FastAPI()

    @app.get("/weather", response_class=HTMLResponse)
    async def weather() -> str:
        return "<!doctype html><html lang=en><title>Weather</title><h1>Weather forecast</h1></html>"

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    return app


@pytest.fixture(scope="package")
def system(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The whole system as processes, with the sample directory, its keys, and the quick exit pointed at
    a neutral page of the tests' own."""
    neutral = ThreadedServer(neutral_site(), NEUTRAL_PORT)
    neutral.__enter__()
    ports = {name: free_port() for name in ("intake", "router", "directory", "notify", "nats", "nats_monitor")}
    running = System(data_dir=tmp_path_factory.mktemp("browser") / ".data", ports=ports,
                     extra_env={"PATHWAYS_WEB_EXIT_URL": EXIT_URL})
    running.start(timeout=120)
    yield running
    running.stop()
    neutral.__exit__()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies, no history) and page; console errors fail the test (a blocked
    script or style shows up there)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-GB")
    tab = context.new_page()
    errors: list[tuple[str, str]] = []
    # Pages answered on purpose with an error status (a withdrawn handoff is 410) are not failures; a
    # missing asset or a blocked script or style is.
    error_pages: set[str] = set()
    tab.on("response", lambda response: error_pages.add(response.url)
           if response.request.is_navigation_request() and response.status >= 400 else None)
    tab.on("console", lambda message: errors.append((message.text, message.location.get("url", "")))
           if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append((str(error), "")))
    yield tab
    context.close()
    unexpected = [f"{text} ({url})" for text, url in errors
                  if not (text.startswith("Failed to load resource") and url in error_pages)]
    assert not unexpected, f"browser console errors: {unexpected}"


def check_accessibility(page: Any) -> list[dict[str, Any]]:
    """Run axe-core in the page; the serious and critical violations (with where they are)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # through DevTools, so the pages' CSP does not apply to it
    results = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results["violations"] if v["impact"] in FAILING_IMPACTS
    ]


@pytest.fixture
def check_page() -> Callable[[Any, str], None]:
    """``check_page(page, name)``: axe-core finds no serious or critical violation, and the page is saved as
    docs/screenshots/<name>.png (the README shows them)."""

    def check(page: Any, name: str) -> None:
        page.wait_for_load_state("load")
        violations = check_accessibility(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        assert not violations, f"{name}: accessibility violations:\n{json.dumps(violations, indent=2)}"

    return check


def refer(system: System, identifier: str, example: str = "gp-referral.json") -> str:
    """A referral as an EHR sends it (a new business identifier each time); the case id."""
    bundle = json.loads((EXAMPLES / example).read_text())
    bundle["identifier"]["value"] = identifier
    response = httpx.post(f"{system.url('intake')}/fhir/Bundle", json=bundle,
                          headers={"Authorization": f"Bearer {EHR_KEY}", "Content-Type": "application/fhir+json"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def tab_to(page: Any, text: str, limit: int = 40) -> None:
    """Press Tab until the focused control says ``text`` (as a keyboard user moves through a page)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("(document.activeElement.innerText || document.activeElement.value || '').trim()")
        if focused.startswith(text):
            # The focus is visible: the focused control is drawn with an outline.
            assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
            return
    raise AssertionError(f"'{text}' cannot be reached with the Tab key")


def sign_in_by_keyboard(page: Any, url: str, key: str) -> None:
    """Open a sign-in page and sign in with the keyboard alone: skip link, past the quick exit, the key."""
    page.goto(url)
    tab_to(page, "Skip to main content")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the quick exit, into the key field
    page.keyboard.type(key)
    page.keyboard.press("Enter")
