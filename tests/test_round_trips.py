"""AWS calls per request, counted with a botocore hook: the cheap paths stay cheap (issue 6's targets)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.conftest import World, auth, body
from tests.helpers import REPO, run_all_starting, staged, task_of


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


def test_a_task_event_is_one_lookup_and_one_write(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    task_arn = task_of(world, environment, server_id)
    detail = json.loads(json.dumps(world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0],
                                   default=str)) | {"lastStatus": "RUNNING"}
    event = client.events.generate_cw_event(source="aws.ecs", detail_type="ECS Task State Change", detail=detail,
                                            resources=[], region="us-east-1")

    calls = calls_of(world, lambda: client.lambda_.invoke("task_events", event))

    assert calls == Counter({"Query": 1, "UpdateItem": 1})
