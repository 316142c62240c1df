"""BINDERLESS_EPHEMERAL_STORAGE: more Fargate disk for servers of big images.

moto's RegisterTaskDefinition takes any ephemeralStorage, so the request is checked with a Stubber
and the bounds carry AWS's own sentence, read from the ECS API reference botocore ships.
"""

from __future__ import annotations

import re

import boto3
import botocore.session
import pytest
from annotated_types import Ge, Le
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from chalicelib.backends.aws import AwsStager
from chalicelib.backends.base import EnvironmentSpec
from chalicelib.config import Settings

REGION = "us-east-1"
IMAGE = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/binderless:img"
AWS_RULE = "The minimum supported value is 21 GiB and the maximum supported value is 200 GiB."


def _bounds() -> tuple[int, int]:
    metadata = Settings.model_fields["ephemeral_storage"].metadata
    return (next(m.ge for m in metadata if isinstance(m, Ge)), next(m.le for m in metadata if isinstance(m, Le)))


def test_the_bounds_are_the_ones_aws_documents() -> None:
    shape = botocore.session.get_session().get_service_model("ecs").shape_for("EphemeralStorage")
    documented = re.sub(r"</?code>", "", shape.members["sizeInGiB"].documentation)

    assert AWS_RULE in documented
    assert _bounds() == (21, 200)


@pytest.mark.parametrize("size", [21, 50, 200])
def test_sizes_fargate_accepts_are_settings(size: int) -> None:
    assert Settings.from_env({"BINDERLESS_EPHEMERAL_STORAGE": str(size)}).ephemeral_storage == size


@pytest.mark.parametrize("size", ["20", "201", "0", "-1", "30.5", "lots"])
def test_sizes_fargate_refuses_fail_at_start_not_at_the_first_staging(size: str) -> None:
    with pytest.raises(ValidationError, match="ephemeral_storage"):
        Settings.from_env({"BINDERLESS_EPHEMERAL_STORAGE": size})


@pytest.mark.parametrize("env", [{}, {"BINDERLESS_EPHEMERAL_STORAGE": ""}, {"BINDERLESS_EPHEMERAL_STORAGE": " "}])
def test_unset_leaves_fargates_default(env: dict[str, str]) -> None:
    assert Settings.from_env(env).ephemeral_storage is None


def _registered(settings: Settings, expected_storage: dict[str, int] | None) -> None:
    """Register a staging against a Stubber that expects exactly this request shape."""
    ecs = boto3.client("ecs", region_name=REGION)
    expected = {"family": "binderless-big-env", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                "cpu": "1024", "memory": "8192", "containerDefinitions": ANY}
    if expected_storage is not None:
        expected["ephemeralStorage"] = expected_storage
    reply = {"taskDefinition": {"taskDefinitionArn": f"arn:aws:ecs:{REGION}:123456789012:task-definition/x:1"}}
    with Stubber(ecs) as stub:
        stub.add_response("register_task_definition", reply, expected)
        AwsStager(settings, ecs=ecs).register(EnvironmentSpec("big-env", IMAGE, cpu=1024, memory=8192))
        stub.assert_no_pending_responses()


def test_the_setting_reaches_every_task_definition() -> None:
    _registered(Settings(region=REGION, ephemeral_storage=60), {"sizeInGiB": 60})


def test_without_the_setting_the_task_definition_asks_for_nothing() -> None:
    _registered(Settings(region=REGION), None)
