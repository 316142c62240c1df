"""What the ECS adapter sends within ECS's rules: startedBy, ListTasks's one filter, and the tasks' tags
(and the ecs:TagResource that tagging at RunTask needs)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.backends.aws import AwsSpawner
from chalicelib.backends.aws_tasks import STARTED_BY_PATTERN, ecs_tag, launch_of, started_by, task_tags
from chalicelib.config import Settings
from chalicelib.models import ServerState
from tests.conftest import REGION, World, auth, body
from tests.helpers import REPO, set_task_status, staged, tasks_of_launch, tick
from tests.test_iam_policy import is_allowed, shipped_policies

ACCOUNT = "123456789012"


# ---------------------------------------------------------------- startedBy

@pytest.mark.parametrize("launch", ["5f0c1a2b3c4d5e6f", "launch-1", "lostlaunch0001", "x" * 117])
def test_started_by_is_what_runtask_allows_and_gives_the_launch_back(launch: str) -> None:
    value = started_by(launch)

    assert value == f"binderless-{launch}" and STARTED_BY_PATTERN.fullmatch(value)
    assert launch_of(value) == launch


def test_a_launch_that_cannot_be_a_started_by_is_refused_not_cut() -> None:
    for launch in ("a.b", "x" * 118, "a b"):
        with pytest.raises(ValueError):
            started_by(launch)
    assert started_by("") == "binderless" and launch_of("binderless") == ""
    assert launch_of("binderless.5f0c") == launch_of("ecs-svc/123") == launch_of("binderlessx") == ""


@pytest.mark.parametrize(("started", "launch"), [("binderless-5f0c1a2b3c4d5e6f", "5f0c1a2b3c4d5e6f"),
                                                 ("binderless", ""), ("binderlessx-1", None), ("other-1", None)])
def test_events_are_ours_by_their_started_by(started: str, launch: str | None) -> None:
    detail = {"clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/binderless", "startedBy": started,
              "taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/binderless/abc", "lastStatus": "PENDING"}

    state = AwsSpawner(Settings(region=REGION)).from_event(detail)

    assert (state.launch if state else None) == launch


def test_list_tasks_by_started_by_sends_no_other_filter() -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    with Stubber(ecs) as stub:
        stub.add_response("list_tasks", {"taskArns": ["arn-1"], "nextToken": "t"},
                          {"cluster": "binderless", "startedBy": "binderless-launch-1"})
        stub.add_response("list_tasks", {"taskArns": ["arn-2"]},
                          {"cluster": "binderless", "startedBy": "binderless-launch-1", "nextToken": "t"})

        handles = AwsSpawner(Settings(region=REGION), ecs=ecs).tasks_of("launch-1")

        stub.assert_no_pending_responses()
    assert handles == [{"id": "arn-1"}, {"id": "arn-2"}]


def test_a_lost_launch_whose_task_stopped_ends_with_ecs_reason(client: Any, world: World) -> None:
    """ListTasks may now list a launch's stopped tasks: describing them ends the server at once."""
    environment = staged(client, world)
    staging = world.services.stagings.launchable(environment)
    lost = world.services.servers._new(staging, world.clock(), True, "lostlaunch0001", "k" * 48, solo=True)
    world.services.store.servers.create([lost], due_at=world.clock())
    world.services.servers.spawner.start(staging.handle, [lost.id], lost.launch, "k" * 48)  # its events never come
    (arn,) = tasks_of_launch(world, lost.launch)
    set_task_status(world, arn, "STOPPED")
    stopped_in_moto(world, arn, "CannotPullContainerError: pull image manifest has been retried 5 time(s)")

    world.clock.advance(world.settings.check_interval + 1)  # due, and well before its starting_timeout
    tick(client)

    server = world.services.store.servers.get(environment, lost.id)
    assert server is not None and server.state is ServerState.failed and server.handle == {"id": arn}
    assert server.reason.startswith("CannotPullContainerError")


def stopped_in_moto(world: World, task_arn: str, reason: str) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends

    task = ecs_backends[DEFAULT_ACCOUNT_ID][REGION].tasks[world.settings.cluster][task_arn]
    task.desired_status, task.stopped_reason = "STOPPED", reason


# ---------------------------------------------------------------- tags

def test_tasks_are_tagged_with_their_environment_and_ecs_managed_tags(client: Any, world: World) -> None:
    environment = staged(client, world)

    reply = client.http.post(f"/deployments/{environment}", body="", headers=auth())

    assert reply.status_code == 202, reply.body
    server = world.services.store.servers.get(environment, body(reply)["id"])
    assert server is not None
    (arn,) = tasks_of_launch(world, server.launch)
    tags = world.ecs.list_tags_for_resource(resourceArn=arn)["tags"]
    assert {"key": "binderless:environment", "value": environment} in tags
    # The repository is tagged on the task definition, and RunTask propagates it to each task
    # (moto does not propagate, so the definition's tags and the request's flag are what we can see).
    staging = world.services.stagings.get(environment)
    definition = world.ecs.describe_task_definition(taskDefinition=staging.handle["task_definition"],
                                                    include=["TAGS"])
    assert definition["tags"] == [{"key": "binderless:repository", "value": ecs_tag("k", REPO)["value"]}]


def test_run_task_sends_the_tags_and_asks_for_ecs_managed_ones() -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    definition = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/binderless-python-demo-1a2b3c4d:7"
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [], "failures": []}, {
            "cluster": "binderless", "taskDefinition": definition, "launchType": "FARGATE", "count": 1,
            "networkConfiguration": stub_any(), "startedBy": "binderless-l1", "overrides": stub_any(),
            "tags": [{"key": "binderless:environment", "value": "python-demo-1a2b3c4d"}],
            "propagateTags": "TASK_DEFINITION", "enableECSManagedTags": True})

        AwsSpawner(Settings(region=REGION), ecs=ecs).start({"task_definition": definition}, ["s"], "l1", "k" * 48)

        stub.assert_no_pending_responses()


def stub_any() -> Any:
    from botocore.stub import ANY

    return ANY


def test_tag_values_keep_to_the_characters_and_length_ecs_allows() -> None:
    url = "https://github.com/owner/repo~1?x=%20#frag"
    assert ecs_tag("binderless:repository", url)["value"] == "https://github.com/owner/repo_1_x=_20_frag"
    long = ecs_tag("k", "https://github.com/o/" + "r" * 2030)["value"]
    other = ecs_tag("k", "https://github.com/o/" + "r" * 2029 + "s")["value"]
    assert len(long) == len(other) == 256 and long != other
    assert ecs_tag("k", "AWS:thing")["value"] == "_AWS:thing"
    assert task_tags("binderless-env.1") == [{"key": "binderless:environment", "value": "env.1"}]
    assert task_tags(f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/binderless-e_2:3") == [
        {"key": "binderless:environment", "value": "e_2"}]


# ---------------------------------------------------------------- the policy for the tags

@pytest.mark.parametrize("name, policy", [pytest.param(*p, id=p[0]) for p in shipped_policies()])
def test_every_policy_lets_run_task_tag_the_tasks_it_creates(name: str, policy: dict[str, Any]) -> None:
    (statement,) = [s for s in policy["Statement"] if "ecs:TagResource" in s["Action"]
                    and s["Condition"]["StringEquals"]["ecs:CreateAction"] == "RunTask"]

    assert statement["Action"] == ["ecs:TagResource"]
    assert statement["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}  # never an existing task
    assert "task/${ClusterName}/*" in json.dumps(statement["Resource"]) or str(statement["Resource"]).endswith(
        ":task/binderless/*") or str(statement["Resource"]).endswith(":task/binderless-dev/*")


def test_the_prod_policy_allows_tagging_at_run_task_only() -> None:
    policy = dict(shipped_policies())["prod"]
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/binderless/0123456789abcdef"

    assert is_allowed(policy, "ecs:TagResource", task, {"ecs:CreateAction": "RunTask"})
    assert not is_allowed(policy, "ecs:TagResource", task, {})  # retagging a running task
    assert not is_allowed(policy, "ecs:TagResource", task, {"ecs:CreateAction": "CreateService"})
    definition = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/binderless-python-demo-1a2b3c4d:7"
    assert is_allowed(policy, "ecs:TagResource", definition, {"ecs:CreateAction": "RegisterTaskDefinition"})
    assert not is_allowed(policy, "ecs:TagResource", definition, {})  # retagging a staged environment
    other = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/someone-else:1"
    assert not is_allowed(policy, "ecs:TagResource", other, {"ecs:CreateAction": "RegisterTaskDefinition"})
    assert not is_allowed(policy, "ecs:TagResource", task.replace("/binderless/", "/other/"),
                          {"ecs:CreateAction": "RunTask"})
