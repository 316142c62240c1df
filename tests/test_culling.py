"""Culling, for real: jupyter servers started by the local spawner with ``culling.SERVE``, as on AWS.

A server never used waits (it may be pooled); a used one stops itself once idle and its process
exits, which is how the platform learns it stopped. The servers start together (a module fixture:
jupyter_server takes seconds to import) with timeouts of 2 s, so jupyter checks every second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket

from chalicelib.backends.base import TaskState
from chalicelib.backends.culling import SERVE, check_interval, culling_arguments
from chalicelib.backends.local import LocalSpawner
from chalicelib.config import Settings
from tests.test_local_backend import alive, wait_for

TIMEOUT = 2  # seconds, both idle_timeout and kernel_idle_timeout


@dataclass
class Server:
    spawner: LocalSpawner
    handle: dict[str, str]
    token: str

    @property
    def url(self) -> str:
        return self.handle["url"]

    @property
    def pid(self) -> int:
        return int(self.handle["id"])

    def state(self) -> TaskState:
        """What the platform sees: describe() polls ``GET api/status`` with the token."""
        state, = self.spawner.describe([self.handle])
        return state

    def get(self, path: str, *, token: bool = True) -> tuple[int, Any]:
        headers = {"Authorization": f"token {self.token}"} if token else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, None

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def status(self) -> dict[str, Any]:
        """``GET api/status?token=``: the other form of the readiness check; it reports kernels too."""
        code, model = self.get(f"api/status?token={self.token}", token=False)
        assert code == 200
        return dict(model)

    def exited(self) -> bool:
        return self.state().status == "stopped" and not alive(self.pid)


def no_kernels(server: Server) -> bool:
    try:
        return bool(server.status()["kernels"] == 0)
    except OSError:  # refused: the server has stopped, and its kernels with it
        return not alive(server.pid)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("culling")
    culled = LocalSpawner(Settings(backend="local", local_dir=str(root / "culled"), idle_timeout=TIMEOUT,
                                   kernel_idle_timeout=TIMEOUT), grace=0.5)
    uncullable = LocalSpawner(Settings(backend="local", local_dir=str(root / "uncullable"), idle_timeout=0,
                                       kernel_idle_timeout=0), grace=0.5)
    # Subscribed as in local mode: a server that answers is opened once at its location (a head start
    # for its first page), which must not count as its reader's use.
    culled.subscribe(lambda task: True)
    environment = {"path": str(root)}  # the test's own interpreter, as for an operator's image
    started = {spawner: spawner.start(environment, names, "culling", "k" * 48)
               for spawner, names in ((culled, ["unused", "used", "kernel"]), (uncullable, ["never"]))}
    servers = {launched.server_id: Server(spawner, launched.handle, launched.token or "")
               for spawner, batch in started.items() for launched in batch}
    for server in servers.values():
        wait_for(lambda server=server: server.state().status == "running", timeout=60)
    yield servers
    culled.stop_all()
    uncullable.stop_all()


def test_settings_become_jupyters_own_options() -> None:
    assert culling_arguments(Settings(idle_timeout=600, kernel_idle_timeout=1200)) == [
        "--ServerApp.shutdown_no_activity_timeout=600", "--MappingKernelManager.cull_idle_timeout=1200",
        "--TerminalManager.cull_inactive_timeout=1200", "--MappingKernelManager.cull_interval=60",
        "--MappingKernelManager.cull_connected=True", "--TerminalManager.cull_interval=60"]
    assert culling_arguments(Settings(idle_timeout=0, kernel_idle_timeout=0)) == [
        "--ServerApp.shutdown_no_activity_timeout=0", "--MappingKernelManager.cull_idle_timeout=0",
        "--TerminalManager.cull_inactive_timeout=0"]  # 0 given, so an image's config cannot turn them on
    assert [check_interval(t) for t in (1, 2, 3, 60, 600, 7200)] == [1, 1, 1, 30, 60, 60]
    assert Settings.from_env({"BINDERLESS_IDLE_TIMEOUT": "0"}).idle_timeout == 0
    assert Settings().idle_timeout == Settings().kernel_idle_timeout == 600


def test_a_server_nobody_used_waits_however_often_the_platform_checks_it(servers: dict[str, Server]) -> None:
    server = servers["unused"]
    deadline = time.monotonic() + 2.5 * TIMEOUT
    while time.monotonic() < deadline:  # the readiness checks, and strangers without the token
        assert server.state().status == "running"
        assert server.status()["kernels"] == 0
        assert server.get("api/contents", token=False)[0] == 403
        time.sleep(0.25)
    assert alive(server.pid)


def test_a_used_server_stops_itself_once_idle_and_its_process_exits(servers: dict[str, Server]) -> None:
    server = servers["used"]
    assert server.get("api/contents")[0] == 200  # the user opens it: one authenticated request
    used = time.monotonic()
    wait_for(server.exited, timeout=10 * TIMEOUT, every=0.1)
    idle = time.monotonic() - used
    assert TIMEOUT <= idle < TIMEOUT + check_interval(TIMEOUT) + 2  # observed: 2.9-3.3 s
    assert server.state().reason == "the server process exited with code 0"


class Tab:
    """A browser tab on a kernel: its websocket, which stays open, and the code it runs."""

    def __init__(self, server: Server, kernel_id: str) -> None:
        url = server.url.replace("http://", "ws://", 1) + f"api/kernels/{kernel_id}/channels?token={server.token}"
        self.socket = websocket.create_connection(url, timeout=30)
        self.msg_id = ""

    def execute(self, code: str) -> None:
        self.msg_id = uuid.uuid4().hex
        self.socket.send(json.dumps({
            "header": {"msg_id": self.msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                       "username": "", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False},
        }))

    def wait_until(self, execution_state: str) -> float:
        """When the kernel reported ``execution_state`` for the code this tab sent."""
        while True:
            message = json.loads(self.socket.recv())
            if (message["msg_type"] == "status" and message["parent_header"].get("msg_id") == self.msg_id
                    and message["content"]["execution_state"] == execution_state):
                return time.monotonic()


def test_a_busy_kernel_keeps_its_server_then_idle_it_is_culled_open_tab_or_not(servers: dict[str, Server]) -> None:
    server = servers["kernel"]
    kernel = server.post("api/kernels", {"name": "python3"})
    tab = Tab(server, kernel["id"])
    busy_for = 2 * TIMEOUT + 1  # longer than both timeouts together
    try:
        tab.execute(f"import time; time.sleep({busy_for})")
        busy = tab.wait_until("busy")
        while time.monotonic() - busy < busy_for - 0.5:  # busy: neither the kernel nor its server goes
            assert server.state().status == "running"
            assert server.status() | {"last_activity": "", "started": ""} == {
                "kernels": 1, "connections": 1, "last_activity": "", "started": ""}
            time.sleep(0.25)
        idle = tab.wait_until("idle")
        # A server that has already exited has no kernel either: on a loaded machine the poll can
        # miss the moment between the cull and the server's own stop.
        wait_for(lambda: no_kernels(server), timeout=10 * TIMEOUT, every=0.1)
        culled = time.monotonic()
        assert TIMEOUT <= culled - idle < TIMEOUT + check_interval(TIMEOUT) + 2  # the tab still open
        wait_for(server.exited, timeout=10 * TIMEOUT, every=0.1)
        stopped = time.monotonic()
        # Culling a kernel is not activity (jupyter_server 1.24 and 2.21): idle long enough already, the
        # server goes at its next check. Observed: culled 2.7-2.9 s after idle, the server 0.5-0.9 s later.
        assert stopped - culled < check_interval(TIMEOUT) + 2
    finally:
        tab.socket.close()


def test_timeout_0_never_culls(servers: dict[str, Server]) -> None:
    server = servers["never"]
    assert server.get("api/contents")[0] == 200
    time.sleep(2.5 * TIMEOUT)
    assert server.state().status == "running" and alive(server.pid)


def test_without_a_usable_jupyter_server_it_execs_plain_jupyter_server_that_never_stops_itself(
        tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "jupyter").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n')
    (bin_dir / "jupyter").chmod(0o755)
    # -S: no site-packages, so no jupyter_server to subclass.
    subprocess.run([sys.executable, "-S", "-c", SERVE, "--port=1", *culling_arguments(Settings(idle_timeout=60))],
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=True, timeout=20)
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["server", "--port=1"] and "--MappingKernelManager.cull_idle_timeout=600" in argv
    assert [a for a in argv if "shutdown_no_activity" in a] == ["--ServerApp.shutdown_no_activity_timeout=0"]


def test_the_server_starts_without_compiling_rfc3987_syntax_and_jsonschema_still_checks_uris() -> None:
    """jupyter_events' jsonschema would build rfc3987_syntax's grammar on import (2.5 s of each start)."""
    prelude = SERVE.split("from importlib")[0]  # what SERVE does before anything imports jupyter_server
    probe = ("import jupyter_server.serverapp, jsonschema\n"
             "checker = jsonschema.FormatChecker()\n"
             "print(sys.modules.get('rfc3987_syntax'), checker.conforms('http://x/', 'uri'),"
             " checker.conforms('not a uri', 'uri'))")
    done = subprocess.run([sys.executable, "-c", prelude + probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["None", "True", "False"], done.stderr
