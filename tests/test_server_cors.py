"""A page on another origin reads every reply of its notebook server, errors included, for real.

One jupyter server started by the local spawner with ``culling.SERVE`` (as on AWS) and the operator's
origin listed. The clients of a Thebe page poll ``GET api/kernels`` while they start a kernel; on a
busy server jupyter_server answered that poll 500, and its error replies carried no
``Access-Control-Allow-Origin``, so Chromium reported "blocked by CORS policy" (seen in CI).
"""

from __future__ import annotations

import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.backends.local import LocalSpawner
from chalicelib.config import Settings
from tests.test_culling import Server
from tests.test_local_backend import wait_for

PAGE = "http://127.0.0.1:5173"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server-cors")
    spawner = LocalSpawner(Settings(backend="local", local_dir=str(root / "local"), cors_origins=(PAGE,)), grace=0.5)
    launched, = spawner.start({"path": str(root), "python": sys.executable}, ["cors"], "cors", "k" * 48)
    started = Server(spawner, launched.handle, launched.token or "")
    wait_for(lambda: started.state().status == "running", timeout=60)
    yield started
    spawner.stop_all()


def ask(server: Server, method: str, path: str, *, origin: str = PAGE, token: str | None = None,
        body: bytes | None = None) -> tuple[int, str | None]:
    """The status and ``Access-Control-Allow-Origin`` of a request as a page of ``origin`` sends it."""
    headers = {"Origin": origin, "Authorization": f"token {server.token if token is None else token}"}
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers)
    try:
        with NO_PROXY.open(request, timeout=30) as response:
            return response.status, response.headers.get("Access-Control-Allow-Origin")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Access-Control-Allow-Origin")


def test_polling_kernels_while_kernels_start_always_gets_a_readable_list(server: Server) -> None:
    replies: list[tuple[int, str | None]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            replies.append(ask(server, "GET", "api/kernels"))

    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for poller in pollers:
        poller.start()
    try:
        started = [ask(server, "POST", "api/kernels", body=b'{"name": "python3"}') for _ in range(8)]
    finally:
        done.set()
        for poller in pollers:
            poller.join()
    assert started == [(201, PAGE)] * 8
    assert len(replies) > 50  # the polls overlapped the starts (without the fix: about 2 in 100 were 500s)
    assert [reply for reply in replies if reply != (200, PAGE)] == []


@pytest.mark.parametrize(("method", "path", "token", "status"), [
    ("GET", "api/kernels/00000000-0000-0000-0000-000000000000", None, 404),  # a kernel that is gone
    ("GET", "api/kernels", "not-the-token", 403),  # a stale token in the page
])
def test_error_replies_are_readable_by_the_listed_page_only(server: Server, method: str, path: str,
                                                            token: str | None, status: int) -> None:
    assert ask(server, method, path, token=token) == (status, PAGE)
    refused: Any = ask(server, method, path, token=token, origin="http://127.0.0.1:6666")
    assert refused[1] is None  # a page of another origin still cannot read anything
