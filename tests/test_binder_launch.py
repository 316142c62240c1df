"""BinderHub's launch protocol, spoken to by its real clients: thebe-core's Binder flow in Chromium (a
page on another origin, the API as its ``binderUrl``) and an EventSource-style client that
reconnects with ``Last-Event-ID``. Local mode, a real git repository, real jupyter servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.event_source import NO_PROXY
from tests.event_source import events as read_events
from tests.local_mode import LocalMode, local_mode, wait_for
from tests.local_repo import make_repository
from tests.test_browser import (  # noqa: F401 (fixtures, shared with the v2 API's browser test)
    ADMIN,
    browser,
    bundle,
    open_page,
    page_origin,
    site,
)

# With an API token by default (as a script would), so these tests do not use up the anonymous test
# pages' share of servers.
events = partial(read_events, token=ADMIN)
FINAL = ("ready", "failed")


@pytest.fixture(scope="module")
def local(page_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:  # noqa: F811
    # The pages here are all one anonymous client (127.0.0.1): room for all their servers; the
    # limits themselves are tested elsewhere (test_quotas, test_local_load).
    with local_mode(tmp_path_factory.mktemp("binder-local"), ADMIN, BINDERLESS_CORS_ORIGINS=page_origin,
                    BINDERLESS_DEFAULT_ENVIRONMENT="tmpnb", BINDERLESS_MAX_SERVERS_PER_CLIENT="50",
                    BINDERLESS_LAUNCH_RATE_LIMIT="0") as mode:
        yield mode


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("binder-repositories") / "answer"
    make_repository(path)
    return path.as_uri()  # file:///...: local mode takes local repositories


def build_url(local: LocalMode, repository: str, ref: str = "HEAD", prefix: str = "") -> str:
    """What thebe-core builds for ``repoProvider: "git"``: the repository URL-escaped, then the ref."""
    return f"{local.base}{prefix}/build/git/{quote(repository, safe='')}/{ref}"


def test_thebe_core_launches_through_the_build_stream_cold_then_from_a_pool(
        browser: Any, page_origin: str, local: LocalMode, repository: str,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's acceptance: thebe-core 0.5 pointed at the API as its Binder runs print(6*7) and sees
    42, first through a build and a cold start, then from a pool of the same environment."""
    cold = open_page(browser, page_origin, local.base, "", "binder", repo=repository, ref="HEAD")
    assert cold["output"] == "42", json.dumps(cold, indent=1)

    _, launched = events(build_url(local, repository))  # a second launch: the environment is staged now
    environment = launched[-1]["_id"].split("/")[1]
    assert local.api("PUT", f"/pools/{environment}", {"size": 1}).status == 200
    wait_for(lambda: local.api("GET", f"/pools/{environment}").body["available"] == 1, 60, "the pool is ready")

    pooled = open_page(browser, page_origin, local.base, "", "binder", repo=repository, ref="HEAD")
    assert pooled["output"] == "42", json.dumps(pooled, indent=1)
    assert local.api("GET", f"/pools/{environment}").body["running"] >= 1  # the pooled server went to the page
    with capsys.disabled():
        for name, outcome in (("cold (build)", cold), ("pooled", pooled)):
            print(f"\n  thebe-core binder {name:12}: page load -> ready {outcome['timings']['location'] / 1000:.2f} s, "
                  f"-> 42 {outcome['timings']['output'] / 1000:.2f} s")


def test_the_stream_tells_binderhubs_phases_and_a_ready_event_thebe_can_use(local: LocalMode,
                                                                            repository: str) -> None:
    headers, told = events(build_url(local, repository))
    assert headers["Content-Type"].startswith("text/event-stream")
    phases = [event["phase"] for event in told]
    assert phases[0] == "waiting" and phases[-1] == "ready" and "launching" in phases, phases
    ready = told[-1]
    assert ready["url"].startswith("http://127.0.0.1:") and ready["url"].endswith("/")
    assert ready["token"] and ready["repo_url"] == repository
    status = urllib.request.Request(ready["url"] + "api/status", headers={"Authorization": f"token {ready['token']}"})
    with NO_PROXY.open(status, timeout=10) as answered:
        assert answered.status == 200


def handed_out(local: LocalMode, environment: str) -> int:
    """Servers of the environment handed to someone (a pool refilling meanwhile adds idle ones)."""
    return sum(1 for server in local.api("GET", f"/deployments/{environment}").body if server["status"] == "running")


def test_a_reconnect_with_last_event_id_follows_the_same_server_and_never_starts_another(
        local: LocalMode, repository: str) -> None:
    _, first = events(build_url(local, repository))
    ready = first[-1]
    assert ready["phase"] == "ready", first
    environment = ready["_id"].split("/")[1]
    servers_before = handed_out(local, environment)

    for _ in range(3):  # EventSource reconnects whenever the stream ends, with the last id it saw
        _, again = events(build_url(local, repository), last_event_id=ready["_id"])
        assert [event["phase"] for event in again][-1] == "ready"
        assert (again[-1]["url"], again[-1]["token"]) == (ready["url"], ready["token"])

    assert handed_out(local, environment) == servers_before


def test_a_repository_that_cannot_be_fetched_ends_in_a_failed_event(local: LocalMode, tmp_path: Path) -> None:
    started = time.monotonic()
    _, told = events(build_url(local, (tmp_path / "nothing-here").as_uri()))
    assert told[-1]["phase"] == "failed" and told[-1]["message"], told
    assert "ready" not in [event["phase"] for event in told]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("path, status", [("/build/svn/some/thing", 400), ("/build/gh/no-repo", 400)])
def test_a_spec_no_provider_can_read_is_a_failed_event_with_its_status(local: LocalMode, path: str,
                                                                      status: int) -> None:
    _, told = events(local.base + path, token=None)
    assert [event["phase"] for event in told] == ["failed"]
    assert told[0]["status_code"] == status and told[0]["message"]


def test_the_stream_answers_under_api_too(local: LocalMode, repository: str) -> None:
    _, told = events(build_url(local, repository, prefix="/api"))
    assert told[-1]["phase"] == "ready"


def test_the_page_origin_may_read_the_stream_and_another_may_not(local: LocalMode, page_origin: str,  # noqa: F811
                                                                 repository: str) -> None:
    request = urllib.request.Request(build_url(local, repository), headers={"Origin": page_origin})
    with NO_PROXY.open(request, timeout=120) as response:
        assert response.headers["Access-Control-Allow-Origin"] == page_origin
        response.read()
    stranger = urllib.request.Request(build_url(local, repository), headers={"Origin": "http://evil.invalid"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        NO_PROXY.open(stranger, timeout=30)
    assert refused.value.code == 403


def test_every_route_answers_at_the_root_under_api_and_with_a_trailing_slash(local: LocalMode) -> None:
    versions = local.api("GET", "/versions")  # a reply that does not change while pools refill
    assert versions.status == 200
    for path in ("/api/versions", "/api/versions/", "/versions/"):
        assert (local.api("GET", path).status, local.api("GET", path).body) == (200, versions.body), path
    assert local.api("GET", "/api/pools/").status == local.api("GET", "/pools").status == 200
    assert local.api("GET", "/api/openapi.json").body["openapi"].startswith("3.1")
    assert local.api("GET", "/api/no-such-thing").status == 404


def test_tmpnb_spawn_in_local_mode_hands_out_a_pooled_server_then_says_full(local: LocalMode) -> None:
    # Local mode's image: a directory, served with local mode's own python (registered, not built).
    assert local.api("POST", "/builds/images", {"image-name": "tmpnb", "image": "tests/fixtures"}).status in (200, 201)
    assert local.api("POST", "/stagings", {"image-name": "tmpnb", "environment-name": "tmpnb"}).status in (200, 201)
    assert local.api("PUT", "/pools/tmpnb", {"size": 1}).status == 200
    wait_for(lambda: local.api("GET", "/api/stats").body.get("available") == 1, 60, "the default pool is ready")

    spawned = local.api("POST", "/api/spawn/", admin=False)  # tmpnb's own path, trailing slash and all
    assert spawned.status == 200 and "?token=" in spawned.body["url"]
    with NO_PROXY.open(spawned.body["url"], timeout=10) as page:
        assert page.status == 200
    full = local.api("POST", "/api/spawn/", admin=False)
    assert full.status == 429 and full.body["status"] == "full"


def test_the_launch_page_lands_the_reader_on_the_server_at_the_path_asked(browser: Any, local: LocalMode,  # noqa: F811
                                                                         repository: str) -> None:
    """"Launch as a user hits a URL": /v2/... follows the stream, then opens url + urlpath + ?token=."""
    for _ in range(2):  # the page's headers are the same every time (Chalice's server pops from the dict it gets)
        with NO_PROXY.open(f"{local.base}/v2/git/{quote(repository, safe='')}/HEAD", timeout=10) as served:
            assert served.headers["Content-Type"] == "text/html; charset=utf-8"
    context = browser.new_context()
    page = context.new_page()
    try:
        link = f"{local.base}/v2/git/{quote(repository, safe='')}/HEAD?urlpath=api/contents/hello.py"
        page.goto(link)
        page.wait_for_url("**/api/contents/hello.py?token=*", timeout=60_000)
        assert page.url.startswith("http://127.0.0.1:") and "/user/" in page.url
        assert json.loads(page.text_content("body") or "{}")["name"] == "hello.py"  # the server, past its token
    finally:
        context.close()


@pytest.fixture(scope="module")
def repository_with_requirements(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository whose build makes a virtualenv (its requirements are installed here already: no download)."""
    path = tmp_path_factory.mktemp("binder-repositories") / "with-requirements"
    make_repository(path, {"requirements.txt": "pydantic\n", "hello.py": "print('hello')\n"})
    return path.as_uri()


@pytest.mark.parametrize(("kind", "query", "lands_on", "shows"), [
    # BinderHub's labpath=X is lab/tree/X: the reader sees the notebook open in JupyterLab.
    ("plain", "labpath=analysis.ipynb", "**/lab/tree/analysis.ipynb?token=*", ".jp-NotebookPanel"),
    # A build with a virtualenv still has JupyterLab and the classic tree (the host's, as an image has its own).
    ("requirements", "urlpath=lab", "**/lab?token=*", ".jp-DirListing-item[title*='hello.py']"),
    ("requirements", "urlpath=tree", "**/tree?token=*", ".jp-DirListing-item[title*='hello.py']"),
])
def test_a_launch_link_lands_in_a_notebook_ui(browser: Any, local: LocalMode, repository: str,  # noqa: F811
                                              repository_with_requirements: str, kind: str, query: str,
                                              lands_on: str, shows: str) -> None:
    launched = repository if kind == "plain" else repository_with_requirements
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{local.base}/v2/git/{quote(launched, safe='')}/HEAD?{query}")
        page.wait_for_url(lands_on, timeout=120_000)
        page.wait_for_selector(shows, timeout=60_000)  # the UI drew itself: its page, scripts and server extension
    finally:
        context.close()


def test_the_launch_page_says_what_failed_and_what_to_do(browser: Any, local: LocalMode,  # noqa: F811
                                                         tmp_path: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{local.base}/v2/git/{quote((tmp_path / 'missing').as_uri(), safe='')}/HEAD")
        page.wait_for_selector("#failure:not([hidden])", timeout=60_000)
        assert page.text_content("#phase") == "The launch failed"
        assert "Reload this page" in (page.text_content("#failure") or "")
    finally:
        context.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", "launch", *args], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1], check=False)


def test_the_cli_launches_a_local_repository_and_prints_its_servers_url(local: LocalMode, repository: str) -> None:
    done = run_cli(repository.removeprefix("file://"), "--api", local.base)  # a path, as a reader types it
    assert done.returncode == 0, done.stderr
    location = done.stdout.strip()
    assert location.startswith("http://127.0.0.1:") and "?token=" in location
    with NO_PROXY.open(location, timeout=10) as page:
        assert page.status == 200
    assert "[######] ready" in done.stderr  # the progress line reached the last phase


def test_the_cli_says_what_failed(local: LocalMode, tmp_path: Path) -> None:
    done = run_cli((tmp_path / "missing").as_uri(), "--api", local.base)
    assert done.returncode == 1 and done.stdout == ""
    assert "error: " in done.stderr
    refused = run_cli("https://example.org/repo", "--api", "file:///etc/passwd")
    assert refused.returncode == 1 and "--api must be an http(s):// URL" in refused.stderr
