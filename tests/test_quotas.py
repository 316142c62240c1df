"""Quotas: per environment, per repository, overall, per anonymous address; 429 with Retry-After."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import World, auth, body
from tests.helpers import REPO, pool_of, staged, task_event, task_of, tick


def launch(client: Any, environment: str, headers: dict[str, str] | None = None) -> Any:
    return client.http.post(f"/deployments/{environment}", body="", headers=headers or {})


def live_items(world: World, environment: str) -> int:
    return len(list(world.services.store.servers.live(environment)))


@pytest.mark.settings(max_servers_per_environment=2)
def test_an_environment_stops_at_its_limit_and_nothing_starts(client: Any, world: World) -> None:
    environment = staged(client, world)
    assert [launch(client, environment, auth()).status_code for _ in range(2)] == [202, 202]

    refused = launch(client, environment, auth())

    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "limit of 2 servers" in body(refused)["message"] and set(body(refused)) == {"error", "message"}
    assert live_items(world, environment) == 2 and len(world.ecs.list_tasks(cluster="binderless")["taskArns"]) == 2
    first = world.services.store.servers.live(environment).__next__()
    client.http.delete(f"/deployments/{environment}/{first.id}", headers=auth())
    task_event(client, world, task_of(world, environment, first.id), "STOPPED")
    assert launch(client, environment, auth()).status_code == 202  # room again once a server ended


@pytest.mark.settings(max_servers=3)
def test_the_whole_service_stops_at_its_limit_and_pools_fill_up_to_it(client: Any, world: World) -> None:
    environment = staged(client, world)
    assert launch(client, environment, auth()).status_code == 202

    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 5}), headers=auth())
    tick(client)

    assert pool_of(client, world, environment)["starting"] == 2  # a batch of 5 would pass it: one by one
    refused = launch(client, environment, auth())
    assert refused.status_code == 429 and "limit of 3 servers" in body(refused)["message"]


@pytest.mark.settings(max_servers_per_repository=1)
def test_a_repository_stops_at_its_limit_across_environments(client: Any, world: World) -> None:
    first = staged(client, world, cpu="0.5", memory="1G")
    image_name = world.services.store.environments.get_staging(first).image_name  # type: ignore[union-attr]
    second = body(client.http.post("/stagings", headers=auth(), body=json.dumps(
        {"image-name": image_name, "limits": {"cpu": 1}})))["environment-name"]
    assert launch(client, first, auth()).status_code == 202

    refused = launch(client, second, auth())

    assert refused.status_code == 429 and REPO in body(refused)["message"]


@pytest.mark.settings(launch_rate_limit=3, launch_rate_window=60)
def test_anonymous_launches_are_rate_limited_per_address(client: Any, world: World) -> None:
    environment = staged(client, world)
    assert [launch(client, environment).status_code for _ in range(3)] == [202, 202, 202]

    refused = launch(client, environment)

    assert refused.status_code == 429 and "per 60 seconds" in body(refused)["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("3", "0")
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    assert live_items(world, environment) == 3
    assert launch(client, environment, auth()).status_code == 202  # a token holder is not rate limited
    world.clock.advance(60)
    assert launch(client, environment).status_code == 202  # a new window


@pytest.mark.settings(launch_rate_limit=1)
def test_a_pool_hit_counts_against_the_rate_limit_too(client: Any, world: World) -> None:
    environment = staged(client, world)
    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=auth())
    from tests.helpers import run_all_starting

    run_all_starting(client, world, environment)
    assert launch(client, environment).status_code == 201

    refused = launch(client, environment)

    assert refused.status_code == 429
    assert pool_of(client, world, environment)["available"] == 1  # the refused claim took nothing


@pytest.mark.settings(max_builds_per_repository=1)
def test_a_repository_builds_one_commit_at_a_time(client: Any, world: World) -> None:
    world.git.push(REPO)
    assert client.http.post("/builds/repos", body=json.dumps({"repository": REPO})).status_code == 202
    world.git.push(REPO)  # a new commit while the first still builds

    refused = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}))

    assert refused.status_code == 429 and "builds" in body(refused)["message"]
    tick(client)
    world.clock.advance(world.settings.build_poll_after)
    tick(client)  # the first build completes (moto builds succeed)
    assert client.http.post("/builds/repos", body=json.dumps({"repository": REPO})).status_code == 202


def test_counters_return_to_zero_when_servers_end(client: Any, world: World) -> None:
    environment = staged(client, world)
    ids = [body(launch(client, environment, auth()))["id"] for _ in range(3)]
    for server_id in ids:
        task_event(client, world, task_of(world, environment, server_id), "STOPPED")

    counters = {item["pk"]["S"]: item for item in world.dynamodb.scan(TableName="binderless")["Items"]
                if item["pk"]["S"].startswith("QUOTA#")}
    assert {pk: int(item["servers"]["N"]) for pk, item in counters.items()} == {
        "QUOTA#GLOBAL": 0, f"QUOTA#REPO#{REPO}": 0}
    assert pool_of(client, world, environment)["running"] == 0
