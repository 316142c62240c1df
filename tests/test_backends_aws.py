"""The AWS adapters against moto (ECR, ECS, EC2) and botocore Stubbers (exact request shapes).

Moto's CodeBuild ignores environment overrides and moto's RunTask never fails, so those
calls are checked with a Stubber on a real client: it also proves a call was *not* made.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from moto import mock_aws
from moto.moto_api import state_manager

from chalicelib import errors
from chalicelib.backends.aws import AwsBuilder, AwsSpawner, AwsStager
from chalicelib.backends.aws_tasks import started_by
from chalicelib.backends.base import BuildRequest, EnvironmentSpec, Sidecar
from chalicelib.backends.bootstrap import bootstrap_command, token_for
from chalicelib.backends.culling import culling_arguments
from chalicelib.backends.server_origins import allow_origin_arguments
from chalicelib.config import Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPO_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/binderless"
TD_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/binderless-python-demo:3"
FIXTURES = Path(__file__).parent / "fixtures"
REQUEST = BuildRequest(
    image_name="r2d-binder-examples-requirements-3f1c7ad5b0d0",
    repository="https://github.com/binder-examples/requirements",
    ref="main",
    commit="3f1c7ad5b0d0e8c2b4a9f6e1d2c3b4a5f6e7d8c9",
)


def event(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        region=REGION,
        cluster="binderless",
        subnets=("subnet-0a1b2c3d4e5f60718",),
        security_groups=("sg-0123456789abcdef0",),
        address="private",
        ecr_repository_uri=REPO_URI,
        execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/binderless-execution",
        log_group="/binderless/servers",
    )


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        # Moto walks a task towards STOPPED on every describe; keep tasks where the test puts them.
        state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 1_000_000})
        try:
            yield
        finally:
            state_manager.unset_transition(model_name="ecs::task")


@pytest.fixture
def ecs_settings(aws: None, settings: Settings) -> Settings:
    """Settings pointing at a moto cluster in the default VPC."""
    ec2 = boto3.client("ec2", region_name=REGION)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName="binderless")
    return settings.model_copy(update={"subnets": (subnet,), "security_groups": (group,)})


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION)  # type: ignore[call-overload]
    return client, Stubber(client)


# --- builds ---------------------------------------------------------------------------------


def test_image_already_in_ecr_completes_without_a_build(aws: None, settings: Settings) -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="binderless")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"})
    ecr.put_image(repositoryName="binderless", imageManifest=manifest, imageTag=REQUEST.image_name)
    codebuild, stub = stubbed("codebuild")

    with stub:  # nothing queued: any CodeBuild call would raise
        state = AwsBuilder(settings, codebuild=codebuild, ecr=ecr).start(REQUEST)

    assert state.status == "completed"
    assert state.image == f"{REPO_URI}:{REQUEST.image_name}"
    assert state.handle == {}


def test_missing_image_starts_a_build_of_that_commit(aws: None, settings: Settings) -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="binderless")
    codebuild, stub = stubbed("codebuild")
    image = f"{REPO_URI}:{REQUEST.image_name}"
    expected = {
        "projectName": "binderless-repo2docker",
        "environmentVariablesOverride": [
            {"name": "REPOSITORY", "value": REQUEST.repository, "type": "PLAINTEXT"},
            {"name": "REF", "value": "main", "type": "PLAINTEXT"},
            {"name": "COMMIT", "value": REQUEST.commit, "type": "PLAINTEXT"},
            {"name": "IMAGE_NAME", "value": REQUEST.image_name, "type": "PLAINTEXT"},
            {"name": "IMAGE_URI", "value": image, "type": "PLAINTEXT"},
        ],
    }
    stub.add_response("start_build", {"build": {"id": "binderless-repo2docker:abc"}}, expected)

    with stub:
        state = AwsBuilder(settings, codebuild=codebuild, ecr=ecr).start(REQUEST)
        stub.assert_no_pending_responses()

    assert (state.status, state.image, state.handle) == ("pending", image, {"id": "binderless-repo2docker:abc"})


def test_missing_ecr_repository_is_a_backend_error_and_builds_nothing(aws: None, settings: Settings) -> None:
    codebuild, stub = stubbed("codebuild")
    builder = AwsBuilder(settings, codebuild=codebuild, ecr=boto3.client("ecr", region_name=REGION))

    with stub, pytest.raises(errors.BackendError, match="DescribeImages"):
        builder.start(REQUEST)


def test_throttled_start_build_asks_the_client_to_retry(aws: None, settings: Settings) -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="binderless")
    codebuild, stub = stubbed("codebuild")
    stub.add_client_error("start_build", service_error_code="ThrottlingException", http_status_code=400)

    with stub, pytest.raises(errors.Unavailable) as raised:
        AwsBuilder(settings, codebuild=codebuild, ecr=ecr).start(REQUEST)

    assert raised.value.status == 503
    assert raised.value.headers == {"Retry-After": "5"}


def build(build_id: str, status: str, phases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    variables = [{"name": "IMAGE_NAME", "value": f"img-{build_id}", "type": "PLAINTEXT"}]
    return {
        "id": build_id,
        "buildStatus": status,
        "phases": phases or [],
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_MEDIUM",
            "environmentVariables": variables,
        },
    }


def test_poll_reports_each_build_in_order(settings: Settings) -> None:
    failed_phases = [
        {"phaseType": "PRE_BUILD", "phaseStatus": "SUCCEEDED"},
        {
            "phaseType": "BUILD",
            "phaseStatus": "FAILED",
            "contexts": [
                {"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: ... exit status 1"}
            ],
        },
    ]
    codebuild, stub = stubbed("codebuild")
    reply = {
        "builds": [
            build("b-done", "SUCCEEDED"),
            build("b-run", "IN_PROGRESS"),
            build("b-bad", "FAILED", failed_phases),
        ],
        "buildsNotFound": ["b-gone"],
    }
    stub.add_response("batch_get_builds", reply, {"ids": ["b-run", "b-gone", "b-done", "b-bad"]})
    handles = [{"id": "b-run"}, {"id": "b-gone"}, {"id": "b-done"}, {"id": "b-bad"}]

    with stub:
        states = AwsBuilder(settings, codebuild=codebuild).poll(handles)

    assert [s.status for s in states] == ["pending", "failed", "completed", "failed"]
    assert states[1].reason == "build record not found"
    assert states[2].image == f"{REPO_URI}:img-b-done"
    assert states[3].reason == "BUILD phase failed: Error while executing command: ... exit status 1"
    assert [s.handle for s in states] == handles


def test_poll_asks_for_at_most_100_builds_a_call(settings: Settings) -> None:
    ids = [f"b-{n}" for n in range(150)]
    codebuild, stub = stubbed("codebuild")
    stub.add_response("batch_get_builds", {"builds": [build(i, "SUCCEEDED") for i in ids[:100]]}, {"ids": ids[:100]})
    stub.add_response("batch_get_builds", {"builds": [build(i, "SUCCEEDED") for i in ids[100:]]}, {"ids": ids[100:]})

    with stub:
        states = AwsBuilder(settings, codebuild=codebuild).poll([{"id": i} for i in ids])
        stub.assert_no_pending_responses()

    assert {s.status for s in states} == {"completed"}


def test_failed_build_event_names_the_phase_and_the_image(settings: Settings) -> None:
    detail = event("codebuild-build-failed.json")["detail"]

    result = AwsBuilder(settings).from_event(detail)

    assert result is not None
    assert result.image_name == REQUEST.image_name
    assert result.state.status == "failed"
    assert result.state.reason.startswith("BUILD phase failed: COMMAND_EXECUTION_ERROR: Error while executing")
    assert result.state.handle == {"id": detail["build-id"]}


@pytest.mark.parametrize(
    ("build_status", "status"),
    [("SUCCEEDED", "completed"), ("IN_PROGRESS", "pending"), ("STOPPED", "failed"), ("TIMED_OUT", "failed")],
)
def test_build_event_statuses(settings: Settings, build_status: str, status: str) -> None:
    detail = event("codebuild-build-failed.json")["detail"]
    detail["build-status"] = build_status
    if build_status != "TIMED_OUT":
        detail["additional-information"]["phases"] = detail["additional-information"]["phases"][:3]

    result = AwsBuilder(settings).from_event(detail)

    assert result is not None
    assert result.state.status == status
    assert result.state.image == f"{REPO_URI}:{REQUEST.image_name}"
    if build_status == "STOPPED":
        assert result.state.reason == "build stopped"


def test_build_events_of_other_projects_are_ignored(settings: Settings) -> None:
    detail = event("codebuild-build-failed.json")["detail"]
    detail["project-name"] = "someone-elses-project"

    assert AwsBuilder(settings).from_event(detail) is None


def test_buildspec_uses_the_variables_each_build_is_given(aws: None, settings: Settings) -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="binderless")
    codebuild, stub = stubbed("codebuild")
    sent: dict[str, str] = {}
    codebuild.meta.events.register(
        "provide-client-params.codebuild.StartBuild",
        lambda params, **_: sent.update({v["name"]: v["value"] for v in params["environmentVariablesOverride"]}),
    )
    stub.add_response("start_build", {"build": {"id": "b-1"}})
    with stub:
        AwsBuilder(settings, codebuild=codebuild, ecr=ecr).start(REQUEST)
    spec = yaml.safe_load((Path(__file__).parent.parent / "buildspec.yml").read_text())
    commands = " ".join(c for phase in spec["phases"].values() for c in phase["commands"])

    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", commands))

    assert used - set(sent) <= {"AWS_DEFAULT_REGION", *spec["env"]["variables"]}
    assert {"REPOSITORY", "COMMIT", "IMAGE_URI"} <= used
    assert sent["COMMIT"] == REQUEST.commit


# --- stagings -------------------------------------------------------------------------------


def test_environment_with_a_service_becomes_a_fargate_task_definition(ecs_settings: Settings) -> None:
    postgres = Sidecar(
        "postgres",
        "public.ecr.aws/docker/library/postgres:16",
        cpu=256,
        memory=512,
        port=5432,
        environment={"POSTGRES_PASSWORD": "binder"},
    )
    spec = EnvironmentSpec("python-demo", f"{REPO_URI}:img", cpu=1024, memory=2048, sidecars=(postgres,))
    ecs = boto3.client("ecs", region_name=REGION)

    handle = AwsStager(ecs_settings, ecs=ecs).register(spec)

    definition = ecs.describe_task_definition(taskDefinition=handle["task_definition"])["taskDefinition"]
    assert definition["family"] == "binderless-python-demo"
    assert (definition["cpu"], definition["memory"], definition["networkMode"]) == ("1024", "2048", "awsvpc")
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["executionRoleArn"] == ecs_settings.execution_role_arn
    notebook, sidecar = definition["containerDefinitions"]
    assert (notebook["name"], notebook["image"], notebook["essential"]) == ("notebook", spec.image, True)
    assert (notebook["cpu"], notebook["memory"]) == (768, 1536)  # what the service leaves over
    assert notebook["portMappings"][0]["containerPort"] == 8888
    assert (sidecar["name"], sidecar["essential"], sidecar["cpu"], sidecar["memory"]) == ("postgres", False, 256, 512)
    assert sidecar["environment"] == [{"name": "POSTGRES_PASSWORD", "value": "binder"}]
    assert sidecar["portMappings"][0]["containerPort"] == 5432
    for container in (notebook, sidecar):
        assert container["logConfiguration"]["options"]["awslogs-group"] == "/binderless/servers"


def test_services_that_leave_no_room_for_the_notebook_are_invalid(settings: Settings) -> None:
    big = Sidecar("postgres", "postgres:16", cpu=256, memory=2048)
    ecs, stub = stubbed("ecs")

    with stub, pytest.raises(errors.Invalid):
        AwsStager(settings, ecs=ecs).register(EnvironmentSpec("x", "img", cpu=1024, memory=2048, sidecars=(big,)))


# --- servers --------------------------------------------------------------------------------


def task_definition(settings: Settings) -> dict[str, str]:
    spec = EnvironmentSpec("python-demo", f"{REPO_URI}:img", cpu=1024, memory=2048)
    return AwsStager(settings, ecs=boto3.client("ecs", region_name=REGION)).register(spec)


def test_one_runtask_starts_a_batch_with_a_distinct_token_per_server(ecs_settings: Settings) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    spawner = AwsSpawner(ecs_settings, ecs=ecs)

    launched = spawner.start(task_definition(ecs_settings), ["s-1", "s-2", "s-3"], "launch-1", "k" * 48)

    assert [one.server_id for one in launched] == ["s-1", "s-2", "s-3"]
    assert not any(one.failure for one in launched)
    arns = [one.handle["id"] for one in launched]
    tasks = ecs.describe_tasks(cluster="binderless", tasks=arns)["tasks"]
    assert len(tasks) == 3 and {t["startedBy"] for t in tasks} == {started_by("launch-1")}
    (override,) = tasks[0]["overrides"]["containerOverrides"]
    # Any page may use the server, as on mybinder.org: AWS stages allow every origin by default.
    # The batch key is an argument, not in the environment, which every health check gets.
    assert override["command"] == bootstrap_command(8888, f"BINDERLESS_BATCH_KEY={'k' * 48}",
                                                    [*culling_arguments(ecs_settings), "--ServerApp.allow_origin=*"])
    assert "environment" not in override
    assert all(t["overrides"] == tasks[0]["overrides"] for t in tasks)  # one RunTask, one set of overrides
    assert [one.token for one in launched] == [token_for("k" * 48, arn) for arn in arns]
    assert [spawner.token_for("k" * 48, one.handle) for one in launched] == [one.token for one in launched]
    assert len({one.token for one in launched}) == 3
    assert all(len(one.token) >= 32 for one in launched)


def test_runtask_request_shape(settings: Settings) -> None:
    ecs, stub = stubbed("ecs")
    network = {
        "awsvpcConfiguration": {
            "subnets": ["subnet-0a1b2c3d4e5f60718"],
            "assignPublicIp": "ENABLED",
            "securityGroups": ["sg-0123456789abcdef0"],
        }
    }
    expected = {
        "cluster": "binderless",
        "taskDefinition": TD_ARN,
        "launchType": "FARGATE",
        "count": 2,
        "networkConfiguration": network,
        "startedBy": started_by("launch-1"),
        "tags": [{"key": "binderless:environment", "value": "python-demo"}],
        "propagateTags": "TASK_DEFINITION", "enableECSManagedTags": True,
        "overrides": {
            "containerOverrides": [
                {
                    "name": "notebook",
                    "command": bootstrap_command(8888, "BINDERLESS_BATCH_KEY=key",
                                                 [*culling_arguments(settings), *allow_origin_arguments(settings)]),
                }
            ]
        },
    }
    stub.add_response("run_task", {"tasks": [], "failures": []}, expected)

    with stub:
        AwsSpawner(settings, ecs=ecs).start({"task_definition": TD_ARN}, ["a", "b"], "launch-1", "key")
        stub.assert_no_pending_responses()


def test_a_task_started_alone_is_given_its_token_itself(ecs_settings: Settings) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    (one,) = AwsSpawner(ecs_settings, ecs=ecs).start(task_definition(ecs_settings), ["s-1"], "launch-1", "t" * 48)

    (task,) = ecs.describe_tasks(cluster="binderless", tasks=[one.handle["id"]])["tasks"]
    (override,) = task["overrides"]["containerOverrides"]
    assert override["command"][1] == f"BINDERLESS_TOKEN={'t' * 48}" and "environment" not in override
    assert one.token == "t" * 48  # known, and saved, before RunTask


def test_servers_allow_only_the_operators_listed_origins(ecs_settings: Settings) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    listed = ecs_settings.model_copy(update={"cors_origins": ("https://docs.example.org",)})
    (one,) = AwsSpawner(listed, ecs=ecs).start(task_definition(listed), ["s-1"], "launch-1", "t" * 48)

    (task,) = ecs.describe_tasks(cluster="binderless", tasks=[one.handle["id"]])["tasks"]
    command = task["overrides"]["containerOverrides"][0]["command"]
    assert command[-1] == r"--ServerApp.allow_origin_pat=^(https://docs\.example\.org)$"
    assert not [argument for argument in command if argument.startswith("--ServerApp.allow_origin=")]


def test_runtask_failures_leave_the_other_servers_failed(settings: Settings) -> None:
    ecs, stub = stubbed("ecs")
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/binderless/0f0e0d0c0b0a09080706050403020100"
    reply = {
        "tasks": [{"taskArn": arn, "lastStatus": "PROVISIONING"}],
        "failures": [{"reason": "RESOURCE:MEMORY"}, {"reason": "Capacity is unavailable at this time."}],
    }
    stub.add_response("run_task", reply)

    with stub:
        launched = AwsSpawner(settings, ecs=ecs).start({"task_definition": "td"}, ["s-1", "s-2", "s-3"], "l", "k")

    assert launched[0].handle == {"id": arn} and launched[0].token and not launched[0].failure
    assert [(one.server_id, one.failure, one.token) for one in launched[1:]] == [
        ("s-2", "RESOURCE:MEMORY", ""),
        ("s-3", "Capacity is unavailable at this time.", ""),
    ]


def test_throttled_runtask_asks_the_client_to_retry(settings: Settings) -> None:
    ecs, stub = stubbed("ecs")
    stub.add_client_error("run_task", service_error_code="ThrottlingException", service_message="Rate exceeded")

    with stub, pytest.raises(errors.Unavailable) as raised:
        AwsSpawner(settings, ecs=ecs).start({"task_definition": "td"}, ["s-1"], "l", "k")

    assert raised.value.headers["Retry-After"] == "5"


def test_other_aws_errors_are_backend_errors_that_quote_nothing(settings: Settings) -> None:
    ecs, stub = stubbed("ecs")
    stub.add_client_error("run_task", service_error_code="AccessDeniedException", service_message="key=s3cr3t")

    with stub, pytest.raises(errors.BackendError) as raised:
        AwsSpawner(settings, ecs=ecs).start({"task_definition": "td"}, ["s-1"], "l", "k")

    assert "RunTask" in raised.value.message and "s3cr3t" not in raised.value.message


def test_describe_follows_a_server_from_running_to_stopped(ecs_settings: Settings) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    spawner = AwsSpawner(ecs_settings, ecs=ecs)
    first, second = spawner.start(task_definition(ecs_settings), ["s-1", "s-2"], "l", "k")
    gone = {"id": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/binderless/00000000000000000000000000000000"}

    spawner.stop(second.handle, "culled after 6 hours")
    running, stopped, missing = spawner.describe([first.handle, second.handle, gone])

    (task,) = ecs.describe_tasks(cluster="binderless", tasks=[first.handle["id"]])["tasks"]
    ip = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "privateIPv4Address")
    assert (running.status, running.url, running.handle) == ("running", f"http://{ip}:8888/", first.handle)
    assert (stopped.status, stopped.reason) == ("stopped", "culled after 6 hours")
    assert (missing.status, missing.reason, missing.handle) == ("stopped", "task not found", gone)


def test_public_address_is_the_network_interface_public_ip(ecs_settings: Settings) -> None:
    settings = ecs_settings.model_copy(update={"address": "public", "location_scheme": "https"})
    ec2 = boto3.client("ec2", region_name=REGION)
    spawner = AwsSpawner(settings, ecs=boto3.client("ecs", region_name=REGION), ec2=ec2)
    with_ip, without_ip = spawner.start(task_definition(settings), ["s-1", "s-2"], "l", "k")
    (task,) = spawner.ecs.describe_tasks(cluster="binderless", tasks=[with_ip.handle["id"]])["tasks"]
    eni = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], NetworkInterfaceId=eni)

    reachable, unreachable = spawner.describe([with_ip.handle, without_ip.handle])

    assert (reachable.status, reachable.url) == ("running", f"https://{address['PublicIp']}:8888/")
    # Running but not reachable yet is not a location anyone could use.
    assert (unreachable.status, unreachable.url) == ("starting", "")


def test_stopping_a_stopped_or_forgotten_task_is_not_an_error(ecs_settings: Settings) -> None:
    spawner = AwsSpawner(ecs_settings, ecs=boto3.client("ecs", region_name=REGION))
    (one,) = spawner.start(task_definition(ecs_settings), ["s-1"], "l", "k")
    spawner.stop(one.handle, "deleted")
    spawner.stop(one.handle, "deleted again")

    ecs, stub = stubbed("ecs")  # real ECS answers this way once it has forgotten the task
    stub.add_client_error("stop_task", "InvalidParameterException", "The referenced task was not found.")
    with stub:
        AwsSpawner(ecs_settings, ecs=ecs).stop(one.handle, "x" * 300)


def test_stop_reports_real_failures(settings: Settings) -> None:
    ecs, stub = stubbed("ecs")
    stub.add_client_error("stop_task", "AccessDeniedException", "not authorized", http_status_code=403)

    with stub, pytest.raises(errors.BackendError, match="StopTask"):
        AwsSpawner(settings, ecs=ecs).stop({"id": "arn:aws:ecs:us-east-1:1:task/binderless/1"}, "bye")


def test_running_task_event_gives_the_server_url(settings: Settings) -> None:
    detail = event("ecs-task-running.json")["detail"]
    detail["containers"][0]["healthStatus"] = "HEALTHY"  # its health check passed (tests/test_task_health.py)

    state = AwsSpawner(settings).from_event(detail)

    assert state is not None
    assert (state.status, state.url) == ("running", "http://10.0.1.139:8888/")
    assert state.handle == {"id": detail["taskArn"]}
    assert state.launch == "5f0c1a2b3c4d5e6f"  # from startedBy: it finds the server the task is for


def test_stopped_task_event_carries_the_reason(settings: Settings) -> None:
    detail = event("ecs-task-running.json")["detail"]
    detail.update(
        lastStatus="STOPPED",
        desiredStatus="STOPPED",
        stopCode="EssentialContainerExited",
        stoppedReason="Essential container in task exited",
    )

    state = AwsSpawner(settings).from_event(detail)

    assert state is not None
    assert (state.status, state.reason) == ("stopped", "Essential container in task exited")


@pytest.mark.parametrize(
    ("last_status", "status"),
    [
        ("PROVISIONING", "starting"),
        ("PENDING", "starting"),
        ("ACTIVATING", "starting"),
        ("DEACTIVATING", "stopped"),
        ("DEPROVISIONING", "stopped"),
    ],
)
def test_task_event_statuses(settings: Settings, last_status: str, status: str) -> None:
    detail = event("ecs-task-running.json")["detail"]
    detail["lastStatus"] = last_status

    state = AwsSpawner(settings).from_event(detail)

    assert state is not None and state.status == status and state.url == ""


@pytest.mark.parametrize(
    "change",
    [
        {"clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/other"},
        {"clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/not-binderless"},
        {"startedBy": "ecs-svc/1234567890"},
    ],
)
def test_task_events_of_other_clusters_or_starters_are_ignored(settings: Settings, change: dict[str, str]) -> None:
    detail = copy.deepcopy(event("ecs-task-running.json")["detail"])
    detail.update(change)

    assert AwsSpawner(settings).from_event(detail) is None


def test_adapters_create_no_client_and_import_no_boto3(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boto3, "client", lambda *a, **k: pytest.fail("client created eagerly"))
    AwsBuilder(settings), AwsStager(settings), AwsSpawner(settings)
    code = "import sys, chalicelib.backends.aws; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    root = Path(__file__).parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- behind the proxy (router "chp"): servers under /user/<task id>/ on their private address ------------------


def proxied(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"router": "chp", "proxy_api_url": "https://binder.example.org",
                                       "proxy_public_url": "https://binder.example.org", **changes})


def test_behind_the_proxy_each_task_of_a_batch_serves_under_its_own_task_id(ecs_settings: Settings) -> None:
    # address "public" as in a stack without NAT: the proxy still reaches servers on their private address
    settings = proxied(ecs_settings, address="public")
    ec2, ec2_stub = stubbed("ec2")  # nothing queued: a public-address lookup would raise
    spawner = AwsSpawner(settings, ecs=boto3.client("ecs", region_name=REGION), ec2=ec2)

    launched = spawner.start(task_definition(settings), ["s-1", "s-2"], "l", "k" * 48)
    with ec2_stub:
        states = spawner.describe([one.handle for one in launched])

    tasks = spawner.ecs.describe_tasks(cluster="binderless", tasks=[one.handle["id"] for one in launched])["tasks"]
    command = tasks[0]["overrides"]["containerOverrides"][0]["command"]
    # One command for the batch: the prefix, not a task id (BOOTSTRAP appends its own; tests/test_bootstrap.py).
    assert command[2] == "BINDERLESS_BASE_PREFIX=/user/"
    assert not [a for a in command if a.startswith("--ServerApp.base_url")]
    for one, state in zip(launched, states, strict=True):
        task = next(t for t in tasks if t["taskArn"] == one.handle["id"])
        ip = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "privateIPv4Address")
        task_id = one.handle["id"].rsplit("/", 1)[-1]
        assert (state.status, state.url) == ("running", f"http://{ip}:8888/user/{task_id}/")
    assert states[0].url != states[1].url


def test_without_the_proxy_the_command_and_the_url_are_as_before(ecs_settings: Settings) -> None:
    spawner = AwsSpawner(ecs_settings, ecs=boto3.client("ecs", region_name=REGION))
    (one,) = spawner.start(task_definition(ecs_settings), ["s-1"], "l", "t" * 48)

    (task,) = spawner.ecs.describe_tasks(cluster="binderless", tasks=[one.handle["id"]])["tasks"]
    (state,) = spawner.describe([one.handle])

    assert not [a for a in task["overrides"]["containerOverrides"][0]["command"] if a.startswith("BINDERLESS_BASE")]
    assert state.url.endswith(":8888/") and "/user/" not in state.url


def test_a_running_task_event_behind_the_proxy_gives_its_path(settings: Settings) -> None:
    detail = event("ecs-task-running.json")["detail"]
    detail["containers"][0]["healthStatus"] = "HEALTHY"

    state = AwsSpawner(proxied(settings)).from_event(detail)

    assert state is not None
    assert state.url == f"http://10.0.1.139:8888/user/{detail['taskArn'].rsplit('/', 1)[-1]}/"


def test_listed_origins_also_allow_the_proxy_s_own_origin(ecs_settings: Settings) -> None:
    """The proxy rewrites Host (--change-origin), so jupyter must be told its public origin is allowed."""
    listed = proxied(ecs_settings, cors_origins=("https://docs.example.org",))
    for settings, pattern in ((listed, r"^(https://docs\.example\.org|https://binder\.example\.org)$"),
                              (proxied(ecs_settings), None)):
        spawner = AwsSpawner(settings, ecs=boto3.client("ecs", region_name=REGION))
        (one,) = spawner.start(task_definition(settings), ["s-1"], "l", "t" * 48)
        (task,) = spawner.ecs.describe_tasks(cluster="binderless", tasks=[one.handle["id"]])["tasks"]
        command = task["overrides"]["containerOverrides"][0]["command"]
        if pattern:
            assert command[-1] == f"--ServerApp.allow_origin_pat={pattern}"
        else:  # "*": every origin already
            assert command[-1] == "--ServerApp.allow_origin=*"
