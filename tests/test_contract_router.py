"""The Router contract: what the schedule and the services will rely on, whatever stands in front of the
servers. One suite (``RouterContract``), run against ``DirectRouter`` (no proxy) and against ``ChpRouter``
driving a real configurable-http-proxy process (proxy/package.json's pin) with a tiny HTTP server as the
route's target and another as the proxy's default target (where the page for gone servers will be).

configurable-http-proxy needs node and npm (``npm ci`` in proxy/ when proxy/node_modules is missing or
stale); without them the CHP tests skip, unless BINDERLESS_REQUIRE_BROWSER=1 (CI sets it), where they fail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backends.base import Router
from chalicelib.backends.routers import ChpRouter, DirectRouter
from chalicelib.errors import BackendError, Unavailable
from chalicelib.local_proxy import CHP, PROXY_DIR, end
from tests.local_mode import OPENER, free_port, wait_for
from tests.npm import npm_installed

TOKEN = secrets.token_hex(24)
HOST = "127.0.0.1"


class Answer(BaseHTTPRequestHandler):
    """Says who answered and which path it was asked for: ``<server name> <path>``."""

    def do_GET(self) -> None:
        body = f"{self.server.name} {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(name: str, status: int) -> Iterator[str]:
    server = ThreadingHTTPServer((HOST, 0), Answer)
    server.name, server.status = name, status  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A server's origin: it answers 200 to every path."""
    yield from serve("server", 200)


@pytest.fixture(scope="module")
def gone() -> Iterator[str]:
    """The proxy's default target: 410 for every path no route serves."""
    yield from serve("gone", 410)


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class RouterContract:
    """Every Router. Subclasses provide the ``router`` fixture (an empty table) and ``reader_base``."""

    def reader_base(self, router: Router, target: str) -> str:
        """Where a reader's URL for a route starts: the proxy's public URL, or the server's own origin."""
        raise NotImplementedError

    def test_the_table_is_empty_at_first(self, router: Router) -> None:
        assert router.get_all_routes() == {}

    def test_an_added_route_is_listed_with_its_target_and_data(self, router: Router, target: str) -> None:
        router.add_route("/user/s-1/", target, {"environment": "env-a", "server": "s-1"})
        (route,) = router.get_all_routes().values()
        assert list(router.get_all_routes()) == ["/user/s-1/"]
        assert route.target == target and dict(route.data) == {"environment": "env-a", "server": "s-1"}
        assert route.last_activity is None or route.last_activity.tzinfo is not None

    def test_adding_a_prefix_again_replaces_its_route(self, router: Router, target: str) -> None:
        router.add_route("/user/s-1/", "http://10.0.0.1:8888", {"state": "available", "pool": "env-a"})
        router.add_route("/user/s-1/", target, {"state": "running"})
        routes = router.get_all_routes()
        assert list(routes) == ["/user/s-1/"]
        assert routes["/user/s-1/"].target == target and dict(routes["/user/s-1/"].data) == {"state": "running"}

    def test_deleting_removes_the_route_and_deleting_again_is_fine(self, router: Router, target: str) -> None:
        router.add_route("/user/s-1/", target, {})
        router.delete_route("/user/s-1/")
        assert router.get_all_routes() == {}
        router.delete_route("/user/s-1/")
        router.delete_route("/user/never-added/")
        assert router.get_all_routes() == {}

    def test_routes_of_other_prefixes_are_untouched(self, router: Router, target: str) -> None:
        router.add_route("/user/s-1/", target, {"n": "1"})
        router.add_route("/user/s-10/", target, {"n": "10"})  # s-1 is a string prefix of it, not a path prefix
        router.add_route("/user/s-1/", target, {"n": "one"})
        router.delete_route("/user/s-2/")
        assert {prefix: dict(route.data) for prefix, route in router.get_all_routes().items()} == {
            "/user/s-1/": {"n": "one"}, "/user/s-10/": {"n": "10"}}
        router.delete_route("/user/s-1/")
        assert list(router.get_all_routes()) == ["/user/s-10/"]

    def test_a_prefix_is_one_route_with_or_without_its_trailing_slash(self, router: Router, target: str) -> None:
        router.add_route("/user/s-1", target, {})
        assert list(router.get_all_routes()) == ["/user/s-1/"]
        router.delete_route("/user/s-1/")
        assert router.get_all_routes() == {}

    @pytest.mark.parametrize("prefix", ["user/s-1/", "/", "/user/../s-1/", "/user/s 1/", "/user/s-1/?x=1", ""])
    def test_a_prefix_that_is_not_a_server_path_is_refused(self, router: Router, target: str, prefix: str) -> None:
        with pytest.raises(ValueError, match="prefix"):
            router.add_route(prefix, target, {})
        assert router.get_all_routes() == {}

    def test_a_target_with_a_path_or_reserved_data_is_refused(self, router: Router, target: str) -> None:
        with pytest.raises(ValueError, match="origin"):
            router.add_route("/user/s-1/", target + "/user/s-1/", {})
        with pytest.raises(ValueError, match="target"):
            router.add_route("/user/s-1/", target, {"target": "http://elsewhere:1"})
        assert router.get_all_routes() == {}

    def test_a_reader_opens_the_prefix(self, router: Router, target: str) -> None:
        assert router.url_for("/user/s-1", target) == self.reader_base(router, target) + "/user/s-1/"


class TestDirectRouter(RouterContract):
    @pytest.fixture
    def router(self) -> DirectRouter:
        return DirectRouter()

    def reader_base(self, router: Router, target: str) -> str:
        return target

    def test_nothing_measures_activity(self, router: DirectRouter, target: str) -> None:
        router.add_route("/user/s-1/", target, {})
        assert router.get_all_routes()["/user/s-1/"].last_activity is None


@pytest.fixture(scope="module")
def chp_command() -> Path:
    """configurable-http-proxy, pinned in proxy/: ``npm ci`` when proxy/node_modules is missing or stale."""
    npm_installed(PROXY_DIR, "to run configurable-http-proxy")
    assert CHP.exists(), f"npm ci in proxy/ installed no {CHP}"
    return CHP


@pytest.fixture(scope="module")
def proxy(chp_command: Path, gone: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running configurable-http-proxy: (its API's URL, its public URL). The token is in its environment only."""
    api, public = f"http://{HOST}:{free_port()}", f"http://{HOST}:{free_port()}"
    log_path = tmp_path_factory.mktemp("chp") / "chp.log"
    command = [str(chp_command), "--ip", HOST, "--port", public.rsplit(":", 1)[1], "--api-ip", HOST,
               "--api-port", api.rsplit(":", 1)[1], "--default-target", gone, "--log-level", "warn"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": TOKEN},  # noqa: S603
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: answers(process, ChpRouter(api, TOKEN, public)), 30, "configurable-http-proxy's API answers")
        yield api, public
    except BaseException:
        print(log_path.read_text()[-3000:])
        raise
    finally:
        end(process, 10)


def answers(process: subprocess.Popen[bytes], router: ChpRouter) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"configurable-http-proxy exited with code {process.returncode}")
    try:
        router.get_all_routes()
    except Unavailable:
        return False
    return True


class TestChpRouter(RouterContract):
    @pytest.fixture
    def router(self, proxy: tuple[str, str]) -> ChpRouter:
        """The proxy's table emptied of every route but its default one, through the raw API."""
        api, public = proxy
        for path in raw(api, "GET"):
            if path != "/":
                raw(api, "DELETE", path)
        return ChpRouter(api, TOKEN, public)

    def reader_base(self, router: Router, target: str) -> str:
        assert isinstance(router, ChpRouter)
        return router.public_url

    def test_a_request_through_the_proxy_reaches_the_target_and_moves_last_activity(
            self, router: ChpRouter, target: str) -> None:
        router.add_route("/user/s-1/", target, {})
        added = router.get_all_routes()["/user/s-1/"].last_activity
        assert added is not None and abs(datetime.now(UTC) - added) < timedelta(seconds=30)
        time.sleep(0.02)  # CHP's clock has milliseconds
        assert get(router.url_for("/user/s-1/", target) + "api/status") == (200, "server /user/s-1/api/status")
        wait_for(lambda: (router.get_all_routes()["/user/s-1/"].last_activity or added) > added, 5,
                 "last_activity moves after a request")

    def test_a_path_no_route_serves_reaches_the_default_target(self, router: ChpRouter, target: str) -> None:
        router.add_route("/user/s-1/", target, {})
        router.delete_route("/user/s-1/")
        assert get(router.url_for("/user/s-1/", target) + "lab") == (410, "gone /user/s-1/lab")

    def test_routes_no_router_added_are_not_listed(self, router: ChpRouter, target: str) -> None:
        raw(router.api_url, "POST", "/user/someone-else", {"target": target})
        assert router.get_all_routes() == {}  # nor the default route, "/"

    def test_a_wrong_token_is_refused_without_the_token_in_the_message(
            self, router: ChpRouter, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        wrong = "wrong-" + secrets.token_hex(16)
        intruder = ChpRouter(router.api_url, wrong, router.public_url)
        for attempt in (intruder.get_all_routes, lambda: intruder.add_route("/user/s-1/", "http://a:1", {}),
                        lambda: intruder.delete_route("/user/s-1/")):
            with pytest.raises(BackendError, match="refused our token") as refused:
                attempt()
            assert wrong not in str(refused.value) and TOKEN not in str(refused.value)
        assert wrong not in caplog.text and wrong not in repr(intruder) and router.get_all_routes() == {}

    def test_a_proxy_that_is_down_is_unavailable(self) -> None:
        down = ChpRouter(f"http://{HOST}:{free_port()}", TOKEN, "http://unused")
        for attempt in (down.get_all_routes, lambda: down.delete_route("/user/s-1/"),
                        lambda: down.add_route("/user/s-1/", "http://a:1", {})):
            with pytest.raises(Unavailable, match="cannot be reached") as unavailable:
                attempt()
            assert TOKEN not in str(unavailable.value)

    def test_a_proxy_that_does_not_answer_is_unavailable_within_the_timeout(self) -> None:
        with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
            silent.bind((HOST, 0))
            silent.listen(8)
            hanging = ChpRouter(f"http://{HOST}:{silent.getsockname()[1]}", TOKEN, "http://unused", timeout=0.3)
            started = time.monotonic()
            with pytest.raises(Unavailable):
                hanging.get_all_routes()
            assert time.monotonic() - started < 3

    def test_a_proxy_api_that_fails_or_answers_nonsense_is_reported(self, target: str, gone: str) -> None:
        with contextlib.contextmanager(serve)("failing", 500) as failing, pytest.raises(Unavailable, match="500"):
            ChpRouter(failing, TOKEN, failing).get_all_routes()
        with pytest.raises(BackendError, match="not JSON"):
            ChpRouter(target, TOKEN, target).get_all_routes()  # "server /api/routes"
        with pytest.raises(BackendError, match="answered 410"):
            ChpRouter(gone, TOKEN, gone).delete_route("/user/s-1/")

    def test_what_a_request_through_the_proxy_costs(self, router: ChpRouter, target: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
        router.add_route("/user/s-1/", target, {})
        urls = {"direct": target + "/user/s-1/api/status", "through CHP": router.url_for("/user/s-1/", target)
                + "api/status"}
        samples: dict[str, list[float]] = {name: [] for name in urls}
        for turn in range(55):  # taking turns, so both meet the machine in the same state; 5 turns to warm up
            for name, url in urls.items():
                started = time.perf_counter()
                assert get(url)[0] == 200  # a new connection each time, as a reader's first request
                if turn >= 5:
                    samples[name].append((time.perf_counter() - started) * 1000)
        with capsys.disabled():
            print("".join(f"\n  GET {name}: median {statistics.median(ms):.2f} ms, "
                          f"p95 {statistics.quantiles(ms, n=20)[-1]:.2f} ms ({len(ms)} requests)"
                          for name, ms in samples.items()))


def raw(api: str, method: str, path: str = "", body: dict[str, Any] | None = None) -> Any:
    """A call of the proxy's API not made by a Router (what another client of the proxy would do)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api}/api/routes{path}", data=data, method=method,
                                     headers={"Authorization": f"token {TOKEN}"})
    with OPENER.open(request, timeout=10) as reply:
        return json.loads(reply.read() or b"null")
