"""A Thebe page on another origin, in a real browser, launches a server and runs code on it.

The page (tests/browser/page.js, bundled with esbuild) is served from a second port, so it is
cross-origin to both the API and the notebook servers, as a Thebe page on a docs site is. It
POSTs a launch, waits for the location, and runs ``print(6*7)`` with the real client libraries
(@jupyterlab/services, and thebe-core on top of it); headless Chromium (Debian's) runs it through
Playwright. Each client goes both ways: cold (202, poll for the location) and from the pool (201).
The same page from an origin the operator did not list is refused by the API (403) before anything starts.

Needs /usr/bin/chromium, node and npm; without them the tests skip, unless
BINDERLESS_REQUIRE_BROWSER=1 (CI sets it), where they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.local_mode import LocalMode, local_mode, wait_for
from tests.local_repo import make_repository
from tests.npm import missing, npm_installed, run

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
BUNDLE = BROWSER_DIR / "dist" / "page.js"
SERVED = frozenset({"/index.html", "/dist/page.js"})
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync",
                 # Nothing but this machine: a stray request to the internet fails at once instead of hanging.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
ADMIN = "browser-admin-" + secrets.token_hex(16)
PAGE_TIMEOUT_MS = 60_000
EXTRA_INFO_WAIT = 5.0  # seconds
CLIENTS = ("services", "thebe")


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The page's script: ``npm ci`` when node_modules is missing or stale, then esbuild when the bundle is."""
    npm = npm_installed(BROWSER_DIR, "to bundle the Jupyter client libraries")
    installed = BROWSER_DIR / "node_modules" / ".package-lock.json"
    sources = [BROWSER_DIR / "page.js", BROWSER_DIR / "package.json", installed]
    if not BUNDLE.exists() or BUNDLE.stat().st_mtime < max(path.stat().st_mtime for path in sources):
        run([npm, "run", "--silent", "build"], BROWSER_DIR, timeout=300)
    return BUNDLE


class PageHandler(SimpleHTTPRequestHandler):
    """The page and its script, nothing else of tests/browser (node_modules stays unserved)."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path not in SERVED:
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(bundle: Path) -> Iterator[int]:
    """The page's own web server: another port, so another origin. Yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(PageHandler, directory=str(BROWSER_DIR)))
    thread = threading.Thread(target=server.serve_forever, name="page-site", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page_origin(site: int) -> str:
    return f"http://127.0.0.1:{site}"


@pytest.fixture(scope="module")
def local(page_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    """Local mode that lists the page's origin, as an operator developing a Thebe page would."""
    with local_mode(tmp_path_factory.mktemp("browser-local"), ADMIN, BINDERLESS_CORS_ORIGINS=page_origin) as mode:
        yield mode


@pytest.fixture(scope="module")
def environment(local: LocalMode, tmp_path_factory: pytest.TempPathFactory) -> str:
    repository = tmp_path_factory.mktemp("browser-repositories") / "answer"
    make_repository(repository)
    return local.build_and_stage(repository)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, origin: str, api: str, env: str, client: str, **query: str) -> dict[str, Any]:
    """Load the page from ``origin`` and wait for its outcome: what it printed or its error, its timings,
    the status of its launch request as the browser saw it (even one the page may not read) and its console."""
    context = browser.new_context()
    page = context.new_page()
    console: list[str] = []
    failed: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("requestfailed", lambda request: failed.append(f"{request.method} {request.url}: {request.failure}"))
    page.on("response", lambda response: failed.append(f"{response.request.method} {response.url}: {response.status}")
            if response.status >= 500 else None)  # a server error the page could still read
    # The status as it came over the wire: Playwright reports no response at all for a reply the
    # browser withheld from the page (no Access-Control-Allow-Origin), but DevTools still sees it.
    devtools = context.new_cdp_session(page)
    launch_requests: set[str] = set()
    launches: list[int] = []
    devtools.on("Network.requestWillBeSent", lambda event: launch_requests.add(event["requestId"])
                if event["request"]["method"] == "POST" and "/deployments/" in event["request"]["url"] else None)
    devtools.on("Network.responseReceivedExtraInfo", lambda event: launches.append(event["statusCode"])
                if event["requestId"] in launch_requests else None)
    devtools.send("Network.enable")
    try:
        started = time.monotonic()
        page.goto(f"{origin}/index.html?{urlencode({'api': api, 'env': env, 'client': client, **query})}")
        page.wait_for_function("document.getElementById('output').textContent"
                               " || document.getElementById('error').textContent", timeout=PAGE_TIMEOUT_MS)
        seconds = time.monotonic() - started
        timings = page.text_content("#timings") or "{}"
        # DevTools may tell a launch's status after the page has already shown what came of it (ExtraInfo
        # events are not ordered with the fetch's outcome): give each launch request a moment to be heard.
        deadline = time.monotonic() + EXTRA_INFO_WAIT
        while len(launches) < len(launch_requests) and time.monotonic() < deadline:
            page.wait_for_timeout(50)  # Playwright's wait, during which the DevTools events are delivered
        return {"output": page.text_content("#output"), "error": page.text_content("#error"), "seconds": seconds,
                "timings": json.loads(timings), "launches": launches, "failed": list(failed), "console": console[-30:]}
    finally:
        context.close()


def assert_printed_42(outcome: dict[str, Any], launch_status: int) -> None:
    details = json.dumps({k: v for k, v in outcome.items() if k != "output"}, indent=1)
    assert outcome["output"] == "42", details
    assert outcome["failed"] == [], details  # nothing refused, and nothing fetched from beyond this machine
    assert outcome["timings"]["launchStatus"] == launch_status, details


def report(path: str, client: str, outcome: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    timings = outcome["timings"]
    with capsys.disabled():
        print(f"\n  browser, {path:6} {client:8}: POST -> 42 in {timings['output'] / 1000:.2f} s "
              f"(location {timings['location'] / 1000:.2f} s, kernel {timings['kernel'] / 1000:.2f} s; "
              f"page load to 42: {outcome['seconds']:.2f} s)")


@pytest.mark.parametrize("client", CLIENTS)
def test_a_page_on_another_origin_launches_cold_and_runs_code(browser: Any, page_origin: str, local: LocalMode,
                                                             environment: str, client: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    outcome = open_page(browser, page_origin, local.base, environment, client)
    assert_printed_42(outcome, 202)
    report("cold", client, outcome, capsys)


@pytest.fixture(scope="module")
def pool(local: LocalMode, environment: str) -> str:
    """A pool of 2 ready servers, one for each client's launch (after the cold tests, which must miss it)."""
    assert local.api("PUT", f"/pools/{environment}", {"size": len(CLIENTS)}).status == 200
    wait_for(lambda: local.api("GET", f"/pools/{environment}").body["available"] == len(CLIENTS), 60,
             "the pool's servers are ready")
    return environment


@pytest.mark.parametrize("client", CLIENTS)
def test_a_page_on_another_origin_gets_a_pooled_server_and_runs_code(browser: Any, page_origin: str,
                                                                    local: LocalMode, pool: str, client: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    wait_for(lambda: local.api("GET", f"/pools/{pool}").body["available"] >= 1, 60, "a pooled server is ready")
    outcome = open_page(browser, page_origin, local.base, pool, client)
    assert_printed_42(outcome, 201)
    report("pooled", client, outcome, capsys)


def test_a_page_from_an_unlisted_origin_is_refused_before_anything_starts(browser: Any, site: int,
                                                                          local: LocalMode, environment: str) -> None:
    running = local.api("GET", f"/pools/{environment}").body["running"]
    unlisted = f"http://localhost:{site}"  # the same page, but localhost is not the origin the operator listed
    outcome = open_page(browser, unlisted, local.base, environment, "services")
    assert outcome["launches"] == [403], outcome  # refused by the API, not merely hidden from the page
    assert outcome["output"] == "" and "Failed to fetch" in outcome["error"], outcome
    assert local.api("GET", f"/pools/{environment}").body["running"] == running
