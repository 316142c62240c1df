"""Shared fixtures: moto-backed AWS, the services wired to it, and a chalice test client."""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from chalicelib.backends.aws import AwsBuilder, AwsSpawner, AwsStager
from chalicelib.config import Settings
from chalicelib.context import set_services
from chalicelib.errors import NotFound
from chalicelib.repository_urls import set_host_resolver
from chalicelib.services import Services, build_services
from chalicelib.store import Store
from tests import aws_rules

aws_rules.install()  # before any client exists: every botocore session of the run gets the check

ADMIN = "test-admin-token-" + "x" * 20
REGION = "us-east-1"


class Clock:
    """A clock the test moves by hand, so lifetimes and timeouts are exact."""

    def __init__(self, now: int = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


class GitRefs:
    """A stand-in for git hosting (the real smart-HTTP resolver has its own tests against real git)."""

    def __init__(self) -> None:
        self.refs: dict[tuple[str, str], str] = {}

    def push(self, repository: str, ref: str = "HEAD") -> str:
        sha = hashlib.sha1(f"{repository}@{ref}@{len(self.refs)}".encode()).hexdigest()
        self.refs[(repository, ref)] = sha
        return sha

    def resolve(self, repository: str, ref: str) -> str:
        if (repository, ref) not in self.refs:
            raise NotFound(f"No ref '{ref}' in {repository}.")
        return self.refs[(repository, ref)]


@dataclass
class World:
    services: Services
    settings: Settings
    clock: Clock
    git: GitRefs
    ecs: Any
    codebuild: Any
    ecr: Any
    dynamodb: Any


class FakeDns:
    """There is no network in tests: every name resolves to a public address unless a test says otherwise."""

    PUBLIC = "140.82.112.3"

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        answer = self.answers.get(host, [self.PUBLIC])
        if not answer:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer


@pytest.fixture(autouse=True)
def dns() -> Iterator[FakeDns]:
    fake = FakeDns()
    set_host_resolver(fake)
    yield fake
    set_host_resolver(None)


@pytest.fixture(autouse=True)
def aws_requests() -> Iterator[aws_rules.Recorder]:
    """Every AWS request of the test, checked against limits AWS documents and moto does not enforce.

    A request that breaks one raises where it is made; this fails the test even if the code under
    test caught that. A test that means to break a rule takes its violations (``.take()``)."""
    aws_rules.RECORDER.take()  # what a previous test's threads sent late is not this test's
    yield aws_rules.RECORDER
    violations = aws_rules.RECORDER.take()
    if violations:
        pytest.fail("requests real AWS would refuse:\n" + "\n".join(map(str, violations)), pytrace=False)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """moto AWS and the services wired to it; ``@pytest.mark.settings(name=value)`` overrides settings."""
    marker = request.node.get_closest_marker("settings")
    with mock_aws():
        state_manager.set_transition(model_name="ecs::task",
                                     transition={"progression": "manual", "times": 1_000_000})
        try:
            yield _make_world(**(marker.kwargs if marker else {}))
        finally:
            state_manager.unset_transition("ecs::task")
            set_services(None)


def _make_world(**overrides: Any) -> World:
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = tuple(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2])
    groups = tuple(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"][:1])
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName="binderless")
    ecr = boto3.client("ecr", region_name=REGION)
    repo_uri = ecr.create_repository(repositoryName="binderless")["repository"]["repositoryUri"]
    codebuild = boto3.client("codebuild", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="codebuild", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
                           "Statement": []}))["Role"]["Arn"]
    codebuild.create_project(
        name="binderless-repo2docker", source={"type": "S3", "location": "binderless-source/buildspec.zip"},
        artifacts={"type": "NO_ARTIFACTS"}, serviceRole=role,
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_SMALL", "privilegedMode": True})
    settings = Settings(region=REGION, subnets=subnets, security_groups=groups, address="private",
                        ecr_repository_uri=repo_uri, admin_token=ADMIN, **overrides)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    store = Store(settings.table_name, REGION, dynamodb)
    store.dynamo.create_table()
    clock, git = Clock(), GitRefs()
    services = build_services(settings, store=store, builder=AwsBuilder(settings, codebuild=codebuild, ecr=ecr),
                              stager=AwsStager(settings, ecs=ecs), spawner=AwsSpawner(settings, ecs=ecs),
                              resolver=git, clock=clock)
    set_services(services)
    return World(services, settings, clock, git, ecs, codebuild, ecr, dynamodb)


@pytest.fixture
def client(world: World) -> Iterator[Any]:
    from chalice.test import Client

    from app import app

    with Client(app) as test_client:
        yield test_client


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"token {token}", "Content-Type": "application/json"}


def body(response: Any) -> Any:
    return json.loads(response.body)


@pytest.fixture
def local_spawner(tmp_path: Path) -> Iterator[Any]:
    """A LocalSpawner working in ``tmp_path`` with a short stop grace; every server it started ends after the test."""
    from chalicelib.backends.local import LocalSpawner

    spawner = LocalSpawner(Settings(backend="local", local_dir=str(tmp_path / "work")), grace=0.5)
    yield spawner
    spawner.stop_all()
