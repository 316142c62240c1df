"""One lazy boto3 client helper serves the store and every AWS adapter."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backends.aws_builds import AwsBuilder
from chalicelib.backends.aws_stagings import AwsStager
from chalicelib.backends.aws_tasks import AwsSpawner
from chalicelib.config import Settings
from chalicelib.store.dynamo import Dynamo

CHALICELIB = Path(__file__).resolve().parent.parent / "chalicelib"


def test_no_other_place_makes_a_boto3_client() -> None:
    makers = [str(path.relative_to(CHALICELIB)) for path in CHALICELIB.rglob("*.py")
              if re.search(r"boto3\.(client|resource)\(", path.read_text())]
    assert makers == ["lazy_clients.py"]


def test_clients_are_made_on_first_use_once_in_their_region(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    made: list[tuple[str, str]] = []
    monkeypatch.setattr(boto3, "client", lambda service, region_name: made.append((service, region_name)) or object())
    settings = Settings(region="eu-west-1")
    builder, stager, spawner = AwsBuilder(settings), AwsStager(settings), AwsSpawner(settings)
    dynamo = Dynamo("t", "ap-south-1")
    assert made == []  # nothing until a request needs it
    assert builder.ecr is builder.ecr and spawner.ec2 is spawner.ec2 and dynamo.client is dynamo.client
    assert stager.ecs is not spawner.ecs  # each adapter its own
    assert sorted(made) == [("dynamodb", "ap-south-1"), ("ec2", "eu-west-1"), ("ecr", "eu-west-1"),
                            ("ecs", "eu-west-1"), ("ecs", "eu-west-1")]


def test_a_given_client_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setattr(boto3, "client", lambda *a, **k: pytest.fail("no client should be made"))
    mine: Any = object()
    assert AwsSpawner(Settings(), ecs=mine).ecs is mine
    assert Dynamo("t", "us-east-1", mine).client is mine


def test_threads_asking_at_once_share_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    made: list[object] = []
    gate = threading.Barrier(8)

    def slow_client(service: str, region_name: str) -> object:
        made.append(object())
        threading.Event().wait(0.05)  # building a client takes a while: others arrive meanwhile
        return made[-1]

    monkeypatch.setattr(boto3, "client", slow_client)
    spawner = AwsSpawner(Settings())
    seen: list[object] = []

    def ask() -> None:
        gate.wait()
        seen.append(spawner.ecs)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and seen == made * 8
