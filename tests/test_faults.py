"""Faults: each ends in a correct state, and the client sees 503 + Retry-After, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import Unavailable
from chalicelib.models import ServerState
from tests.conftest import World, auth, body
from tests.helpers import REPO, pool_of, set_task_status, staged, task_event, tick


@contextmanager
def failing(client_: Any, operation: str, code: str, times: int = 1, status: int = 400,
            **reply: Any) -> Iterator[list[int]]:
    """``operation`` on this boto3 client fails ``times`` times with ``code``, as AWS would answer."""
    original, failures = client_._make_api_call, [0]

    def call(name: str, params: dict[str, Any]) -> Any:
        if name == operation and failures[0] < times:
            failures[0] += 1
            raise ClientError({"Error": {"Code": code, "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": status}, **reply}, name)
        return original(name, params)

    client_._make_api_call = call
    try:
        yield failures
    finally:
        client_._make_api_call = original


def snapshot(world: World) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True) for i in world.dynamodb.scan(TableName="binderless")["Items"])


class Killed(BaseException):
    """What the Lambda runtime does to a function past its timeout: nothing after it runs."""


def launch_failing(client: Any, world: World, environment: str, error: BaseException, *, after_runtask: bool) -> Any:
    """POST /deployments with ``error`` raised where RunTask is called: instead of it, or once it
    has started the task. The reply, or None if the function was killed."""
    spawner = world.services.servers.spawner
    original = spawner.start

    def start(*args: Any, **kwargs: Any) -> Any:
        if after_runtask:
            original(*args, **kwargs)
        raise error

    spawner.start = start  # type: ignore[method-assign]
    try:
        return client.http.post(f"/deployments/{environment}", body="")
    except Killed:
        return None
    finally:
        spawner.start = original  # type: ignore[method-assign]


def test_dynamodb_throttling_is_a_503_and_changes_nothing(client: Any, world: World) -> None:
    environment = staged(client, world)
    before = snapshot(world)
    with failing(world.dynamodb, "TransactWriteItems", "ProvisionedThroughputExceededException", times=10):
        reply = client.http.post(f"/deployments/{environment}", body="")

    assert reply.status_code == 503 and reply.headers["Retry-After"] and set(body(reply)) == {"error", "message"}
    assert snapshot(world) == before
    assert world.ecs.list_tasks(cluster="binderless")["taskArns"] == []


def test_a_transaction_conflict_is_retried_and_succeeds(client: Any, world: World) -> None:
    environment = staged(client, world)
    conflict = {"CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]}
    with failing(world.dynamodb, "TransactWriteItems", "TransactionCanceledException", times=2,
                 **conflict) as failures:
        reply = client.http.post(f"/deployments/{environment}", body="")

    assert failures[0] == 2 and reply.status_code == 202
    assert pool_of(client, world, environment)["running"] == 1


def test_runtask_throttling_fails_the_server_and_frees_its_place(client: Any, world: World) -> None:
    environment = staged(client, world)
    with failing(world.ecs, "RunTask", "ThrottlingException"):
        reply = client.http.post(f"/deployments/{environment}", body="")

    assert reply.status_code == 503 and reply.headers["Retry-After"]
    assert pool_of(client, world, environment) == {"running": 0, "available": 0, "starting": 0, "size": 0, "minPool": 0}
    assert client.http.post(f"/deployments/{environment}", body="").status_code == 202  # a retry works


def test_an_aws_5xx_is_a_503_not_a_500(client: Any, world: World) -> None:
    environment = staged(client, world)
    with failing(world.dynamodb, "Query", "InternalFailure", status=500):
        reply = client.http.post(f"/deployments/{environment}", body="")
    assert reply.status_code == 503 and "Traceback" not in reply.body.decode()


def test_a_codebuild_start_error_fails_the_build_with_a_reason_and_a_retry_builds(client: Any, world: World) -> None:
    world.git.push(REPO)
    with failing(world.codebuild, "StartBuild", "AccountLimitExceededException"):
        reply = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}))

    assert reply.status_code == 502 and "StartBuild" in body(reply)["message"]
    image_name = world.services.store.builds.latest_for(REPO).image_name  # type: ignore[union-attr]
    status = body(client.http.get(f"/builds/repos/{image_name}/status", headers=auth()))
    assert status["status"] == "failed" and "could not start the build" in status["reason"]
    assert client.http.post("/builds/repos", body=json.dumps({"repository": REPO})).status_code == 202
    assert body(client.http.get(f"/builds/repos/{image_name}/status", headers=auth()))["status"] == "pending"


def test_a_lambda_killed_between_the_item_and_runtask_leaves_nothing_behind(client: Any, world: World) -> None:
    environment = staged(client, world)

    launch_failing(client, world, environment, Killed(), after_runtask=False)
    assert pool_of(client, world, environment)["running"] == 1  # the item was written first

    world.clock.advance(world.settings.starting_timeout)
    tick(client)

    assert pool_of(client, world, environment)["running"] == 0
    assert list(world.services.store.servers.live(environment)) == []


def test_a_lambda_killed_after_runtask_loses_nothing_its_task_event_records_it(client: Any, world: World) -> None:
    environment = staged(client, world)
    launch_failing(client, world, environment, Killed(), after_runtask=True)
    (task_arn,) = world.ecs.list_tasks(cluster="binderless", desiredStatus="RUNNING")["taskArns"]

    task_event(client, world, task_arn, "RUNNING")  # nothing was written after RunTask, and nothing had to be

    (server,) = world.services.store.servers.live(environment)
    assert server.state.value == "running" and server.handle == {"id": task_arn} and server.location


def test_a_lambda_killed_after_runtask_with_its_events_lost_is_found_by_the_schedule(client: Any,
                                                                                    world: World) -> None:
    environment = staged(client, world)
    launch_failing(client, world, environment, Killed(), after_runtask=True)
    (task_arn,) = world.ecs.list_tasks(cluster="binderless", desiredStatus="RUNNING")["taskArns"]
    set_task_status(world, task_arn, "RUNNING")

    world.clock.advance(world.settings.check_interval)
    tick(client)  # no event ever came: the schedule asks ECS what the launch started

    (server,) = world.services.store.servers.live(environment)
    assert server.state.value == "running" and server.handle == {"id": task_arn} and server.location


def test_a_task_that_outlives_its_failed_launch_is_stopped_by_its_first_event(client: Any, world: World) -> None:
    environment = staged(client, world)
    # RunTask timed out from the function's side but ECS started the task: the server is failed.
    reply = launch_failing(client, world, environment, Unavailable("ECS RunTask timed out"), after_runtask=True)
    assert reply.status_code == 503
    (task_arn,) = world.ecs.list_tasks(cluster="binderless", desiredStatus="RUNNING")["taskArns"]

    task_event(client, world, task_arn, "PROVISIONING")

    task = world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]
    assert task["desiredStatus"] == "STOPPED"  # nobody owns it: stopped, not left running
    assert pool_of(client, world, environment)["running"] == 0


def test_a_task_whose_server_already_ended_is_stopped_when_it_reports_running(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    (task_arn,) = world.ecs.list_tasks(cluster="binderless", desiredStatus="RUNNING")["taskArns"]
    task_event(client, world, task_arn, "PROVISIONING")  # recorded on its server
    server = world.services.store.servers.get(environment, server_id)
    assert server is not None
    world.services.servers._end(server, ServerState.failed, "could not start: ECS RunTask timed out")

    task_event(client, world, task_arn, "RUNNING")

    assert world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]["desiredStatus"] == "STOPPED"
