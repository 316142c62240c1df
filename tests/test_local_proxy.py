"""`make run` with configurable-http-proxy in front, end to end (issue 14): every server on the API's own
origin under ``/user/<name>/``, its kernels' websockets through the proxy, a page for gone servers, a
restarted proxy healed by the next tick, and servers culled from the proxy's activity.

Local mode runs in its own process with the pinned proxy (proxy/package.json); without node these
tests skip, unless BINDERLESS_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from chalicelib.local_proxy import PROXY_DIR
from tests.local_mode import OPENER, LocalMode, alive, call, local_mode, wait_for
from tests.local_repo import make_repository
from tests.npm import npm_installed
from tests.test_local_e2e import execute

ADMIN = "proxy-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    npm_installed(PROXY_DIR, "to run configurable-http-proxy")
    with local_mode(tmp_path_factory.mktemp("local-proxy"), ADMIN) as mode:
        yield mode


@pytest.fixture(scope="module")
def environment(local: LocalMode, tmp_path_factory: pytest.TempPathFactory) -> str:
    repository: Path = tmp_path_factory.mktemp("repositories") / "analysis"
    make_repository(repository)
    return local.build_and_stage(repository)


def get(url: str, accept: str = "application/json") -> tuple[int, str, dict[str, str]]:
    """(status, body, headers by lower-case name) of a GET."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with OPENER.open(request, timeout=30) as reply:
            return reply.status, reply.read().decode(), {k.lower(): v for k, v in reply.headers.items()}
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(), {k.lower(): v for k, v in error.headers.items()}


def answers(url: str) -> bool:
    try:
        return call("GET", url).status == 200
    except OSError:  # nobody listens on the port while the proxy restarts
        return False


def launch(local: LocalMode, environment: str) -> tuple[str, str]:
    """(server id, location) of a launch, once it has a location."""
    launched = local.api("POST", f"/deployments/{environment}")
    assert launched.status in (201, 202), launched.body
    server_id = launched.body["id"]
    location = launched.body.get("location") or wait_for(
        lambda: local.api("GET", f"/deployments/{environment}/{server_id}").body.get("location"), 30,
        "the server gets a location")
    return server_id, location


def test_the_banner_names_the_proxy(local: LocalMode) -> None:
    assert "proxy        configurable-http-proxy" in local.output()
    assert local.proxy() is not None


def test_a_cold_server_is_on_the_apis_origin_and_runs_code_through_the_proxy(local: LocalMode,
                                                                            environment: str) -> None:
    server_id, location = launch(local, environment)
    base_url, token = location.split("?token=")
    assert re.fullmatch(rf"{re.escape(local.base)}/user/[0-9a-f]{{32}}/", base_url)  # the API's origin, not a port
    assert server_id not in location  # the id reads the token back (GET /deployments/{env}/{id}): never in a URL
    status = call("GET", f"{base_url}api/status?token={token}")
    assert status.status == 200 and "kernels" in status.body
    kernel = call("POST", f"{base_url}api/kernels?token={token}", {"name": "python3"})
    assert kernel.status == 201, kernel.body
    assert execute(base_url, token, kernel.body["id"], "print(6*7)") == "42\n"  # ws:// through the proxy
    assert local.api("GET", "/health").status == 200  # the API answers on the same origin


def test_a_pooled_server_is_handed_out_behind_the_proxy(local: LocalMode, environment: str) -> None:
    assert local.api("POST", f"/pools/{environment}", {"size": 1}).status == 200
    wait_for(lambda: local.api("GET", f"/pools/{environment}").body["available"] == 1, 30, "the pool fills")
    claimed = local.api("POST", f"/deployments/{environment}")
    assert claimed.status == 201, claimed.body
    base_url, token = claimed.body["location"].split("?token=")
    assert base_url.startswith(f"{local.base}/user/")
    assert call("GET", f"{base_url}api/status?token={token}").status == 200  # ready the moment it is handed out
    assert local.api("POST", f"/pools/{environment}", {"size": 0}).status == 200


def test_requests_that_close_their_connection_never_meet_a_hang_up(local: LocalMode) -> None:
    """urllib (and many clients) send ``Connection: close``; the proxy passes it on to the API but pools its
    own connections to it: unless the API says it closes, the proxy's next request meets a closed socket
    and its client a 503 (seen: 1 HEAD in a few hundred)."""
    statuses = [local.api(method, "/api/health").status for _ in range(150) for method in ("GET", "HEAD")]
    assert [status for status in statuses if status != 200 and status != 405] == []


def test_a_deleted_server_answers_the_gone_page(local: LocalMode, environment: str) -> None:
    server_id, location = launch(local, environment)
    base_url, token = location.split("?token=")
    assert call("GET", f"{base_url}api/status?token={token}").status == 200
    assert local.api("DELETE", f"/deployments/{environment}/{server_id}").status == 202

    status, page, headers = get(f"{base_url}lab/tree/analysis.ipynb?token={token}", "text/html")
    assert status == 410 and headers["content-type"].startswith("text/html")
    assert "This Jupyter server has ended" in page and "deleted through the API" in page
    assert token not in page and server_id not in page  # neither the token nor the deployment's id
    # Launch it again: the environment's /v2/ link, relative to the reader's path, back at the API's root.
    assert 'href="../../../../v2/git/' in page
    relaunch = page.split('href="../../../../', 1)[1].split('"', 1)[0]
    assert get(f"{local.base}/{relaunch}", "text/html")[0] == 200

    status, text, _ = get(f"{base_url}api/kernels?token={token}")
    assert status == 410 and json.loads(text)["error"] == "Gone" and token not in text
    posted = call("POST", f"{base_url}api/kernels?token={token}", {"name": "python3"})
    assert posted.status == 410 and posted.body["error"] == "Gone"
    never = get(f"{local.base}/user/{secrets.token_hex(16)}/lab", "text/html")
    assert never[0] == 410 and "it has ended, or it never existed" in never[1]


def test_a_restarted_proxy_has_every_route_back_within_a_tick(local: LocalMode, environment: str) -> None:
    _, location = launch(local, environment)
    base_url, token = location.split("?token=")
    proxy = local.proxy()
    assert proxy is not None
    proxy.send_signal(signal.SIGKILL)
    wait_for(lambda: not alive(proxy), 10, "the proxy dies")
    started = time.monotonic()
    wait_for(lambda: (p := local.proxy()) is not None and p.pid != proxy.pid, 15, "local mode starts it again")
    wait_for(lambda: answers(f"{base_url}api/status?token={token}"), 15, "the server's route is back")
    healed = time.monotonic() - started
    print(f"\nroutes back {healed:.2f} s after the proxy died (local tick 2 s)")
    assert healed < 2 * 2.0 + 3  # the restart pause and one tick (2 s), with room for a busy machine


@pytest.fixture(scope="module")
def culling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalMode, str]]:
    """Local mode whose schedule culls servers nobody opens within 4 s, or leaves idle for 6 s."""
    npm_installed(PROXY_DIR, "to run configurable-http-proxy")
    work = tmp_path_factory.mktemp("local-culling")
    with local_mode(work, ADMIN, BINDERLESS_NEVER_OPENED_TIMEOUT="4", BINDERLESS_IDLE_TIMEOUT="6",
                    BINDERLESS_LOCAL_TICK="1") as mode:
        repository = work / "repositories" / "analysis"
        make_repository(repository)
        yield mode, mode.build_and_stage(repository)


def test_unopened_and_idle_servers_are_culled_from_the_proxys_activity(culling: tuple[LocalMode, str]) -> None:
    local, environment = culling
    unopened, _ = launch(local, environment)
    opened, location = launch(local, environment)
    time.sleep(1.5)  # a request within a second of the route's adding counts as the adding itself
    assert get(location, "text/html")[0] == 200  # a reader opens it once (a page, not an API call)

    def ended(server_id: str) -> dict[str, str]:
        reply = local.api("GET", f"/deployments/{environment}/{server_id}")
        return reply.body if reply.status == 410 or reply.body["status"] in ("stopping", "stopped") else {}

    first = wait_for(lambda: ended(unopened), 20, "the unopened server is culled")
    assert "not opened within 4 seconds" in json.dumps(first), first
    assert not ended(opened)  # opened: the idle rule applies, 6 s after its last request
    second = wait_for(lambda: ended(opened), 20, "the idle server is culled")
    assert "no activity for 6 seconds" in json.dumps(second), second


def test_without_node_18_local_mode_says_why_and_serves_servers_directly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An old node first on PATH (a script that says it is 16), then none at all: one line says why, and
    servers keep their own ports (BINDERLESS_ROUTER=direct)."""
    from contextlib import ExitStack

    from chalicelib import local_proxy
    from chalicelib.local import plan_proxy

    old = tmp_path / "bin" / "node"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho v16.20.2\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BINDERLESS_ROUTER", "chp")  # recorded, so what plan_proxy sets is undone
    assert "node v16.20.2 is too old" in local_proxy.unavailable_reason()
    with ExitStack() as cleanup:
        assert plan_proxy("127.0.0.1", 8000, cleanup) is None
    assert "no proxy: node v16.20.2 is too old" in capsys.readouterr().err
    assert os.environ["BINDERLESS_ROUTER"] == "direct"

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert local_proxy.unavailable_reason().startswith("node is not installed")
