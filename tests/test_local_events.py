"""Local readiness and exit are events: a server is told to the store the moment it answers, and the
moment its process exits, through ``apply_event`` as ECS events are on AWS; nobody waits for a tick.

Local mode here runs with a 600 s tick, so nothing but the events can move a server."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backends.base import TaskState, handle_id
from chalicelib.backends.local import LocalSpawner
from chalicelib.config import Settings
from chalicelib.models import ServerState
from tests.conftest import World
from tests.helpers import staged
from tests.local_mode import LocalMode, call, local_mode, wait_for

ADMIN = "events-admin-" + secrets.token_hex(16)


def test_the_spawner_tells_when_a_server_answers_and_when_it_exits(tmp_path: Path) -> None:
    spawner = LocalSpawner(Settings(backend="local", local_dir=str(tmp_path / "work")), grace=0.5)
    heard: list[tuple[float, TaskState]] = []
    refusals = 3  # its launch has not saved the handle yet: the first tellings find no server

    def hear(task: TaskState) -> bool:
        nonlocal refusals
        heard.append((time.monotonic(), task))
        refusals -= 1
        return refusals < 0

    spawner.subscribe(hear)
    try:
        launched, = spawner.start({"path": str(tmp_path), "python": sys.executable}, ["s1"], "launch-1", "k" * 48)
        wait_for(lambda: len(heard) == 4, 60, "the running event, told until it is taken")
        event = heard[0][1]
        assert all(task is event for _, task in heard)  # the same event each time
        assert (event.status, event.url, event.launch) == ("running", launched.handle["url"], "launch-1")
        assert handle_id(event.handle) == handle_id(launched.handle)
        assert call("GET", f"{event.url}api/status", token=launched.token).status == 200  # it does answer
        times = [at for at, _ in heard]
        assert max(b - a for a, b in zip(times, times[1:])) < 1.0  # told again within moments, not a tick

        os.kill(int(handle_id(launched.handle)), signal.SIGKILL)
        wait_for(lambda: len(heard) == 5, 10, "the exit event")
        exited = heard[-1][1]
        assert (exited.status, exited.launch) == ("stopped", "launch-1") and "exited" in exited.reason
    finally:
        spawner.stop_all()


def test_an_event_is_told_again_only_while_its_server_awaits_its_handle(
        client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool deleted while its servers start leaves servers that will never get their handle; the
    exits of their processes are taken at once, not told again every 50 ms for 5 s each (measured
    before: 128 queries within one burst of 10 launches, which took 2.0 s instead of 0.4 s)."""
    lifecycle = world.services.servers
    monkeypatch.setattr(lifecycle.spawner, "records_from_events", False)  # as LocalSpawner: start saves handles
    staging = world.services.stagings.get(staged(client, world))
    assert staging is not None
    server = lifecycle._new(staging, world.clock(), False, "launch-1", "k" * 48, solo=True)
    world.services.store.servers.create([server], due_at=world.clock() + 60)
    running = TaskState({"id": "4242"}, "running", url="http://127.0.0.1:1/user/x/", launch="launch-1")

    assert lifecycle.take_event(running) is False  # its start has not saved the handle yet: tell again

    deleted = lifecycle.stop(server, "its pool was deleted")
    assert deleted.state is ServerState.stopping and not deleted.handle
    assert lifecycle.take_event(running) is True
    assert lifecycle.take_event(TaskState({"id": "4242"}, "stopped", reason="exited", launch="launch-1")) is True
    assert lifecycle.take_event(TaskState({"id": "1"}, "running", launch="")) is True  # not ours


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("events"), ADMIN, BINDERLESS_LOCAL_TICK="600") as mode:
        yield mode


@pytest.fixture(scope="module")
def environment(local: LocalMode) -> str:
    # Local mode's image: a directory (relative to where it runs), served with local mode's own python.
    # Registered, not built: a build completes on a tick.
    image = {"image-name": "events", "image": "tests/fixtures"}
    assert local.api("POST", "/builds/images", image).status in (200, 201)
    assert local.api("POST", "/stagings", {"image-name": "events", "environment-name": "events"}).status in (200, 201)
    return "events"


def location_of(local: LocalMode, environment: str, server_id: str) -> str:
    """The location the store holds, read from the admin list (which asks no platform)."""
    listed = local.api("GET", f"/deployments/{environment}").body
    servers = listed if isinstance(listed, list) else listed.get("deployments", listed.get("servers", []))
    return next((str(s.get("location") or "") for s in servers if s.get("id") == server_id), "")


def test_a_cold_server_gets_its_location_and_a_pool_fills_with_no_tick(local: LocalMode, environment: str) -> None:
    started = time.monotonic()
    launched = local.api("POST", f"/deployments/{environment}", admin=False)
    assert launched.status == 202, launched.body
    location = wait_for(lambda: location_of(local, environment, launched.body["id"]), 60, "a location")
    assert call("GET", location).status == 200
    assert time.monotonic() - started < 30  # jupyter's start-up; the next tick is 600 s away

    assert local.api("PUT", f"/pools/{environment}", {"size": 2}).status == 200
    wait_for(lambda: local.api("GET", f"/pools/{environment}").body["available"] == 2, 60, "the pool is ready")


def test_a_server_whose_process_dies_is_ended_at_once(local: LocalMode, environment: str) -> None:
    launched = local.api("POST", f"/deployments/{environment}", admin=False)
    assert launched.status in (201, 202), launched.body
    location = wait_for(lambda: location_of(local, environment, launched.body["id"]), 60, "a location")
    server = local.server(location)
    server.kill()
    wait_for(lambda: local.api("GET", f"/deployments/{environment}/{launched.body['id']}",
                               admin=True).status == 410, 10, "the server is known to have ended")
    assert location
