"""AWS calls per request, counted with a botocore hook: the cheap paths stay cheap (issue 6's targets)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.conftest import World, auth, body
from tests.helpers import REPO, run_all_starting, send_task_event, staged, task_detail, task_of, tasks_of_launch


def calls_of(world: World, action: Callable[[], Any]) -> Counter[str]:
    """Every AWS operation ``action`` makes (the test's own AWS calls excluded)."""
    seen: Counter[str] = Counter()
    hook = lambda model, **_: seen.update([model.name])  # noqa: E731
    clients = (world.dynamodb, world.ecs, world.codebuild, world.ecr)
    for client_ in clients:
        client_.meta.events.register("before-call", hook)
    try:
        action()
    finally:
        for client_ in clients:
            client_.meta.events.unregister("before-call", hook)
    return seen


def test_a_pool_hit_is_one_query_and_one_transaction(client: Any, world: World) -> None:
    environment = staged(client, world)
    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=auth())
    run_all_starting(client, world, environment)

    calls = calls_of(world, lambda: client.http.post(f"/deployments/{environment}", body=""))

    assert calls == Counter({"Query": 1, "TransactWriteItems": 1})


def test_reading_a_server_or_a_pool_is_one_read(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]

    assert calls_of(world, lambda: client.http.get(f"/deployments/{environment}/{server_id}")) == {"GetItem": 1}
    assert calls_of(world, lambda: client.http.get(f"/pools/{environment}")) == {"GetItem": 1}


def test_a_cached_build_request_is_one_read_besides_resolving_the_ref(client: Any, world: World) -> None:
    world.git.push(REPO)
    client.http.post("/builds/repos", body=json.dumps({"repository": REPO}))

    calls = calls_of(world, lambda: client.http.post("/builds/repos", body=json.dumps({"repository": REPO})))

    assert sum(calls.values()) <= 2 and calls == {"GetItem": 1}


def test_a_cold_launch_is_a_query_a_transaction_and_runtask(client: Any, world: World) -> None:
    environment = staged(client, world)

    calls = calls_of(world, lambda: client.http.post(f"/deployments/{environment}", body=""))

    # The query that finds no available server finds the staging; the task is recorded by its event.
    assert calls == Counter({"Query": 1, "TransactWriteItems": 1, "RunTask": 1})


def test_a_task_event_is_one_lookup_and_one_write(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    running = task_detail(world, task_of(world, environment, server_id), "RUNNING")

    calls = calls_of(world, lambda: send_task_event(client, running))

    assert calls == Counter({"Query": 1, "UpdateItem": 1})
    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["location"]  # recorded and running


def test_each_event_of_a_batch_records_its_own_task_in_two_calls(client: Any, world: World) -> None:
    environment = staged(client, world)
    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 3}), headers=auth())
    (launch,) = {s.launch for s in world.services.store.servers.live(environment)}
    details = [task_detail(world, arn, "RUNNING") for arn in tasks_of_launch(world, launch)]

    for detail in details:
        assert calls_of(world, lambda detail=detail: send_task_event(client, detail)) == Counter(
            {"Query": 1, "TransactWriteItems": 1})  # the server moves from starting to available: a counter too

    servers = list(world.services.store.servers.live(environment))
    assert sorted(s.handle["id"] for s in servers) == sorted(d["taskArn"] for d in details)
    assert {s.state.value for s in servers} == {"available"} and len({s.token for s in servers}) == 3
