"""Repository URLs as long as the API takes (2,048 characters, more bytes when not ASCII) fit DynamoDB's keys.

"The maximum length of a partition key value is 2048 bytes", for the table's keys and the by-repository
index's alike: ``QUOTA#REPO#<repo>`` and the indexed ``repository`` are shortened only when they would
pass it (``counters.bounded_key``), so shorter ones keep their items. The recorder (tests/aws_rules/)
fails any of these tests that sends a key AWS would refuse.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib.store.counters import MAX_PARTITION_KEY_BYTES, bounded_key, quota_key
from tests.conftest import World, auth, body
from tests.helpers import build_event

ASCII_2000 = "https://github.com/binder-examples/" + "r" * (2000 - 35)
ASCII_MAX = "https://github.com/binder-examples/" + "r" * (2048 - 35)
NOT_ASCII = "https://github.com/binder-examples/" + "é" * (2048 - 35)  # 4,061 bytes of UTF-8
LONG_REPOSITORIES = [pytest.param(ASCII_2000, id="2000-characters"), pytest.param(ASCII_MAX, id="2048-characters"),
                     pytest.param(NOT_ASCII, id="4061-bytes")]


def build(client: Any, repository: str) -> Any:
    return client.http.post("/builds/repos", body=json.dumps({"repository": repository}), headers=auth())


def counter(world: World, scope: str, name: str) -> int:
    item = world.services.store.dynamo.get(quota_key(scope), "QUOTA", consistent=True)
    return int(item.get(name, 0)) if item else 0


def test_keys_that_fit_keep_their_spelling_and_longer_ones_are_shortened_the_same_way_each_time() -> None:
    assert len(ASCII_2000) == 2000 and len(ASCII_MAX) == 2048 and len(NOT_ASCII.encode()) == 4061
    assert quota_key("REPO#https://github.com/owner/repo") == "QUOTA#REPO#https://github.com/owner/repo"
    assert quota_key(f"REPO#{ASCII_2000}") == f"QUOTA#REPO#{ASCII_2000}"  # 2,011 bytes: as it always was
    for repository in (ASCII_MAX, NOT_ASCII):
        key = quota_key(f"REPO#{repository}")
        assert key == quota_key(f"REPO#{repository}") and len(key.encode()) <= MAX_PARTITION_KEY_BYTES
        assert key.startswith("QUOTA#REPO#https://github.com/binder-examples/") and "#SHA256#" in key
    assert quota_key(f"REPO#{ASCII_MAX}") != quota_key(f"REPO#{ASCII_MAX[:-1]}x")
    assert bounded_key(ASCII_MAX) == ASCII_MAX  # the index's repository: 2,048 bytes still fit
    assert bounded_key(NOT_ASCII) != NOT_ASCII and len(bounded_key(NOT_ASCII).encode()) <= MAX_PARTITION_KEY_BYTES


@pytest.mark.parametrize("repository", LONG_REPOSITORIES)
@pytest.mark.settings(max_builds_per_repository=1)
def test_a_long_repository_builds_is_counted_and_found(client: Any, world: World, repository: str) -> None:
    world.git.push(repository)

    started = build(client, repository)

    assert started.status_code == 202, started.body
    image_name = body(started)["image-name"]
    assert counter(world, f"REPO#{repository}", "builds") == 1
    world.git.push(repository)  # a new commit while the first still builds: one repository, one count
    assert build(client, repository).status_code == 429
    build_event(client, world, image_name, "SUCCEEDED")
    assert counter(world, f"REPO#{repository}", "builds") == 0
    found = client.http.get(f"/builds/repos?repository={quote(repository, safe=':/')}")
    assert found.status_code == 200 and body(found)["image-name"] == image_name  # the by-repository index
    assert body(client.http.get(f"/builds/repos/{image_name}"))["repository"] == repository  # whole, not shortened
    stored = world.dynamodb.get_item(TableName="binderless", Key={"pk": {"S": f"BUILD#{image_name}"},
                                                                  "sk": {"S": "BUILD"}})["Item"]
    assert len(stored["repository"]["S"].encode()) <= MAX_PARTITION_KEY_BYTES


@pytest.mark.settings(max_servers_per_repository=1)
def test_servers_of_a_long_repository_are_counted_against_its_quota(client: Any, world: World) -> None:
    world.git.push(NOT_ASCII)
    image_name = body(build(client, NOT_ASCII))["image-name"]
    build_event(client, world, image_name, "SUCCEEDED")
    staging = client.http.post("/stagings", body=json.dumps({"image-name": image_name}), headers=auth())
    environment = body(staging)["environment-name"]

    first = client.http.post(f"/deployments/{environment}", body="", headers=auth())
    second = client.http.post(f"/deployments/{environment}", body="", headers=auth())

    assert first.status_code == 202, first.body  # a cold start: starting
    assert second.status_code == 429 and "limit of 1 servers" in body(second)["message"]
    assert counter(world, f"REPO#{NOT_ASCII}", "servers") == 1
    stopped = client.http.delete(f"/deployments/{environment}/{body(first)['id']}", headers=auth())
    assert stopped.status_code == 202
