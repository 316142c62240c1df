"""A burst of launches over real HTTP: the API on Chalice's threaded local server, AWS on moto's server.

Used by tests/test_load.py (assertions) and bench/load_bench.py (figures).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.moto_api import state_manager

from chalicelib.backends.aws_tasks import started_by
from chalicelib.backends.base import TaskState
from chalicelib.local_database import AtomicMotoServer
from chalicelib.models import LIVE_STATES, Pool, Server
from tests.conftest import ADMIN, World, _make_world

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_over_http() -> Iterator[str]:
    """moto's server on a free port, with every boto3 client of this process pointed at it."""
    port = free_port()
    server = AtomicMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"})
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**6})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # moto's state is per process, shared by every moto server in it: leave none behind.
        NO_PROXY.open(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=30)
        state_manager.unset_transition("ecs::task")
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@contextmanager
def api_over_http() -> Iterator[str]:
    """The app on Chalice's threaded local server, a thread per request, as `chalice local` runs it."""
    from app import app
    from tests.live_api import serve

    with serve(app, serialise=False) as api:
        yield api.url


def post(url: str, token: str | None = ADMIN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=b"", method="POST")
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with NO_PROXY.open(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@dataclass
class Burst:
    statuses: Counter[int] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


def fill_pool(world: World, environment: str, size: int) -> None:
    """A pool of ``size`` available servers, as the schedule and the ECS events would leave it."""
    world.services.pools.resize(environment, size)
    world.services.pools.tick()
    launches = {s.launch for s in world.services.store.servers.live(environment) if s.state.value == "starting"}
    for number, launch in enumerate(sorted(launches)):
        for arn in world.ecs.list_tasks(cluster=world.settings.cluster, startedBy=started_by(launch))["taskArns"]:
            url = f"http://10.0.{number % 250}.{len(arn) % 250}:8888/"
            world.services.servers.apply_event(TaskState({"id": arn}, "running", url=url, launch=launch))


def burst(api: str, environment: str, launches: int, workers: int) -> Burst:
    result, lock = Burst(), threading.Lock()

    def launch(_: int) -> None:
        started = time.perf_counter()
        status, reply = post(f"{api}/deployments/{environment}")
        elapsed = time.perf_counter() - started
        with lock:
            result.statuses[status] += 1
            result.latencies.append(elapsed)
            if "id" in reply:
                result.ids.append(reply["id"])
            if "location" in reply:
                result.locations.append(reply["location"])

    result.seconds = run_concurrently(launch, launches, workers)
    return result


def run_concurrently(task: Callable[[int], None], count: int, workers: int) -> float:
    """``task(0)`` to ``task(count - 1)`` on ``workers`` threads: the seconds they took in all."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(task, range(count)))
    return time.perf_counter() - started


def counted_vs_items(world: World, environment: str) -> tuple[dict[str, int], dict[str, int]]:
    """The pool's counters and the same numbers counted from the server items themselves."""
    pool = world.services.store.environments.get_pool(environment, consistent=True)
    assert pool is not None
    return compare_counts(pool, list(world.services.store.servers.live(environment)))


def compare_counts(pool: Pool, servers: list[Server]) -> tuple[dict[str, int], dict[str, int]]:
    """``pool``'s counters, and the same numbers counted from ``servers`` (its live server items)."""
    from_items = Counter(s.counter for s in servers if s.counter)
    live = sum(1 for s in servers if s.state in LIVE_STATES)
    counters = {"available": pool.available, "starting": pool.starting, "running": pool.running, "live": pool.live}
    return counters, {**{k: from_items.get(k, 0) for k in ("available", "starting", "running")}, "live": live}


def new_world(**settings: Any) -> World:
    return _make_world(**settings)
