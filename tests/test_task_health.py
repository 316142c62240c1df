"""A location only once jupyter answers: ECS RUNNING is not enough.

RUNNING says the container started; jupyter listens seconds later. The notebook container's health
check (``GET api/status`` with the token) turns it HEALTHY, and only then does a server get its
location: a claim, a GET and a pool's ``available`` count all wait for it. moto calls every
container HEALTHY whether or not it has a health check, and real ECS sends no event when health
changes, so these tests carry AWS's rules themselves: events and DescribeTasks as ECS shapes them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from chalicelib.backends.aws import AwsSpawner, AwsStager
from chalicelib.backends.aws_stagings import HEALTH_INTERVAL, HEALTH_RETRIES, HEALTH_START_PERIOD, HEALTH_TIMEOUT
from chalicelib.backends.base import EnvironmentSpec, Sidecar
from chalicelib.backends.bootstrap import ENTRY_POINT
from chalicelib.config import Settings
from tests.conftest import World, auth, body
from tests.helpers import pool_of, send_task_event, staged, task_detail, task_of, tasks_of_launch, tick
from tests.test_backends_aws import event

ECS_API = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html"
# (parameter, least, most), in ECS's words: "You may specify between 5 and 300 seconds" (interval),
# "between 2 and 60 seconds" (timeout), "between 1 and 10 retries", "between 0 and 300 seconds" (startPeriod).
PRIVATE = Settings(cluster="binderless", address="private")  # locations from the private IP: no EC2 call
HEALTH_CHECK_LIMITS = [("interval", 5, 300), ("timeout", 2, 60), ("retries", 1, 10), ("startPeriod", 0, 300)]


def health(detail: dict[str, Any], status: str | None) -> dict[str, Any]:
    """``detail`` with the notebook container reporting ``status`` (None: no healthStatus at all)."""
    detail = copy.deepcopy(detail)
    for container in detail["containers"]:
        if container["name"] == "notebook":
            container.pop("healthStatus", None)
            if status:
                container["healthStatus"] = status
    return detail


def set_health(world: World, task_arn: str, status: str) -> None:
    """What ECS's health checks would do to the task's notebook container (moto says HEALTHY)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends

    task = ecs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tasks[world.settings.cluster][task_arn]
    for container in task.containers:
        container.health_status = status


# --- the task definition -----------------------------------------------------------------------


def test_the_notebook_container_runs_the_bootstrap_first_and_is_health_checked(world: World) -> None:
    postgres = Sidecar("postgres", "postgres:16", cpu=256, memory=512, port=5432)
    spec = EnvironmentSpec("python-demo", "img", cpu=1024, memory=2048, sidecars=(postgres,))
    handle = AwsStager(world.settings, ecs=world.ecs).register(spec)

    notebook, sidecar = world.ecs.describe_task_definition(
        taskDefinition=handle["task_definition"])["taskDefinition"]["containerDefinitions"]

    assert notebook["entryPoint"] == ENTRY_POINT == ["python3", "-c"]  # not the image's entry point
    check = notebook["healthCheck"]
    command = check["command"]
    # "The string array must start with CMD to run the command arguments directly" (ECS_API); python3,
    # which every repo2docker image has, not curl, which it need not.
    assert command[:2] == ["CMD", "python3"] and "curl" not in " ".join(command)
    # its own server's api/status (under its base path behind the proxy: tests/test_bootstrap.py runs it)
    assert f"http://127.0.0.1:{world.settings.server_port}/" in command[-1] and '"api/status"' in command[-1]
    for parameter, least, most in HEALTH_CHECK_LIMITS:
        assert least <= check[parameter] <= most, f"{parameter}: {ECS_API}"
    assert (check["interval"], check["timeout"], check["retries"], check["startPeriod"]) == (
        HEALTH_INTERVAL, HEALTH_TIMEOUT, HEALTH_RETRIES, HEALTH_START_PERIOD) == (5, 5, 3, 300)
    assert "healthCheck" not in sidecar and "entryPoint" not in sidecar  # services keep their own


# --- events and DescribeTasks ------------------------------------------------------------------


@pytest.mark.parametrize(("status", "running"), [(None, False), ("UNKNOWN", False), ("UNHEALTHY", False),
                                                  ("HEALTHY", True)])
def test_a_running_task_event_gives_a_location_only_when_the_notebook_is_healthy(status: str | None,
                                                                                running: bool) -> None:
    detail = health(event("ecs-task-running.json")["detail"], status)

    state = AwsSpawner(PRIVATE).from_event(detail)

    assert state is not None
    if running:
        assert (state.status, state.url) == ("running", "http://10.0.1.139:8888/")
    else:
        assert (state.status, state.url, state.reason) == ("starting", "", "waiting for the server to answer")


def test_the_notebook_containers_health_decides_not_the_tasks() -> None:
    detail = health(event("ecs-task-running.json")["detail"], "UNKNOWN")
    detail["healthStatus"] = "HEALTHY"  # ECS has said so of tasks whose essential containers were UNKNOWN
    spawner = AwsSpawner(PRIVATE)

    assert spawner.from_event(detail).status == "starting"  # type: ignore[union-attr]
    del detail["containers"]  # a detail without containers: the task's own word is all there is
    assert spawner.from_event(detail).status == "running"  # type: ignore[union-attr]


def test_describe_waits_for_the_health_check(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    arn = task_of(world, environment, server_id)
    spawner = world.services.servers.spawner

    set_health(world, arn, "UNKNOWN")
    assert spawner.describe([{"id": arn}])[0].status == "starting"
    set_health(world, arn, "HEALTHY")
    assert spawner.describe([{"id": arn}])[0].status == "running"


# --- what users see ----------------------------------------------------------------------------


def test_a_cold_server_has_no_location_until_it_answers(client: Any, world: World) -> None:
    environment = staged(client, world)
    reply = client.http.post(f"/deployments/{environment}", body="")
    assert reply.status_code == 202
    server_id = body(reply)["id"]
    arn = task_of(world, environment, server_id)
    set_health(world, arn, "UNKNOWN")  # what DescribeTasks says too, until the check passes

    send_task_event(client, health(task_detail(world, arn, "RUNNING"), "UNKNOWN"))

    starting = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert starting["status"] == "starting" and not starting.get("location")

    send_task_event(client, health(task_detail(world, arn, "RUNNING"), "HEALTHY"))

    running = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert running["status"] == "running" and "?token=" in running["location"]


def test_a_pooled_server_is_not_available_nor_claimed_until_it_answers(client: Any, world: World) -> None:
    environment = staged(client, world)
    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 1}), headers=auth())
    (launch,) = {s.launch for s in world.services.store.servers.live(environment)}
    (arn,) = tasks_of_launch(world, launch)

    send_task_event(client, health(task_detail(world, arn, "RUNNING"), "UNKNOWN"))

    assert pool_of(client, world, environment) == {"running": 0, "available": 0, "starting": 1, "size": 1, "minPool": 1}
    claim = client.http.post(f"/deployments/{environment}", body="")
    assert claim.status_code == 202  # not the pooled server: a new one, started cold
    (pooled,) = [s for s in world.services.store.servers.live(environment) if not s.claimed]
    assert pooled.state.value == "starting" and not pooled.url

    send_task_event(client, health(task_detail(world, arn, "RUNNING"), "HEALTHY"))

    assert pool_of(client, world, environment)["available"] == 1
    handed_out = client.http.post(f"/deployments/{environment}", body="")
    assert handed_out.status_code in (200, 201) and body(handed_out)["id"] == pooled.id
    assert "?token=" in body(handed_out)["location"]


def test_with_no_health_event_the_schedule_finds_it_healthy(client: Any, world: World) -> None:
    """ECS sends no event when health changes: the RUNNING event leaves the server starting, and the
    schedule's DescribeTasks gives it its location once the check passes."""
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    arn = task_of(world, environment, server_id)
    set_health(world, arn, "UNKNOWN")
    send_task_event(client, task_detail(world, arn, "RUNNING"))

    world.clock.advance(world.settings.check_interval)
    tick(client)
    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["status"] == "starting"

    set_health(world, arn, "HEALTHY")
    world.clock.advance(world.settings.check_interval)
    tick(client)

    reply = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert reply["status"] == "running" and "?token=" in reply["location"]


def test_a_user_polling_a_starting_server_gets_its_location_as_soon_as_it_answers(client: Any,
                                                                                  world: World) -> None:
    """No health event comes, and the schedule may be a minute away: the user's own GET asks ECS."""
    from tests.test_round_trips import calls_of

    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    arn = task_of(world, environment, server_id)
    set_health(world, arn, "UNKNOWN")
    send_task_event(client, task_detail(world, arn, "RUNNING"))
    url = f"/deployments/{environment}/{server_id}"

    assert calls_of(world, lambda: client.http.get(url)) == {"GetItem": 1, "DescribeTasks": 1}
    assert body(client.http.get(url))["status"] == "starting"

    set_health(world, arn, "HEALTHY")  # no event, no tick

    reply = body(client.http.get(url))
    assert reply["status"] == "running" and "?token=" in reply["location"]
    assert calls_of(world, lambda: client.http.get(url)) == {"GetItem": 1}  # running: nothing more to ask
