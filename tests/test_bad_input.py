"""Bad input: a clear JSON error with the right status, and nothing changed anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import World, auth, body
from tests.helpers import REPO, staged


def snapshot(world: World) -> Any:
    items = world.dynamodb.scan(TableName="binderless")["Items"]
    tasks = world.ecs.list_tasks(cluster="binderless")["taskArns"]
    builds = world.codebuild.list_builds_for_project(projectName="binderless-repo2docker")["ids"]
    definitions = world.ecs.list_task_definitions()["taskDefinitionArns"]
    return sorted(json.dumps(i, sort_keys=True) for i in items), tasks, builds, definitions


CASES = [
    # (method, path, raw body, status, words the message must contain)
    ("POST", "/builds/repos", "", 400, "JSON body"),
    ("POST", "/builds/repos", "{not json", 400, "not valid JSON"),
    ("POST", "/builds/repos", "[1, 2]", 400, "JSON object"),
    ("POST", "/builds/repos", '{"repository": 42}', 422, "repository"),
    ("POST", "/builds/repos", '{"repository": "' + REPO + '", "branch": "x"}', 422, "branch: unknown field"),
    ("POST", "/builds/repos", '{"repository": "ftp://example.com/x"}', 400, "https"),
    ("POST", "/builds/repos", '{"repository": "https://user:pw@github.com/a/b"}', 400, "credentials"),
    ("POST", "/builds/repos", '{"repository": "not a url"}', 400, ""),
    ("POST", "/builds/repos", '{"repository": "' + REPO + '", "ref": "no-such-branch"}', 404, "no-such-branch"),
    ("POST", "/stagings", '{"image-name": "no-such-image"}', 404, "no-such-image"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "limits": {"cpu": "0.5", "memory": "16G"}}', 422, "1G"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "limits": {"cpu": "lots"}}', 422, "cpu"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "limits": {"cpu": "64"}}', 422, "cpu"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "limits": {"memory": "-1G"}}', 422, "memory"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "services": [{"name": "spark", "version": "1.4.1"}]}',
     422, "postgres"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "services": [{"name": "postgres", "version": "9"}]}',
     422, "16"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "environment-name": "Bad Name!"}', 422, "environment-name"),
    ("POST", "/stagings", '{"image-name": "IMAGE", "limit": {}}', 422, "limit: unknown field"),
    ("POST", "/deployments/no-such-env", "", 404, "no-such-env"),
    ("GET", "/deployments/ENV/no-such-id", "", 404, "no-such-id"),
    ("DELETE", "/deployments/ENV/no-such-id", "", 404, "no-such-id"),
    ("GET", "/deployments/no-such-env", "", 404, "no-such-env"),
    ("GET", "/builds/repos/no-such-image", "", 404, "no-such-image"),
    ("GET", "/builds/repos?repository=https://github.com/nobody/nothing", "", 404, "nobody/nothing"),
    ("GET", "/builds/repos", "", 400, "repository"),
    ("GET", "/stagings/no-such-env", "", 404, "no-such-env"),
    ("GET", "/pools/no-such-env", "", 404, "no-such-env"),
    ("POST", "/pools/ENV", '{"size": -1}', 422, "size"),
    ("POST", "/pools/ENV", '{"size": "3"}', 422, "size"),
    ("POST", "/pools/ENV", '{"size": true}', 422, "size"),
    ("POST", "/pools/ENV", '{"size": 100000}', 422, "maximum"),
    ("POST", "/pools/ENV", '{"size": 1, "max": 3}', 422, "max: unknown field"),
    ("POST", "/pools/no-such-env", '{"size": 1}', 404, "no-such-env"),
    ("POST", "/builds/images", '{"image-name": "x", "image": "bad image ref"}', 422, "image"),
]


@pytest.mark.parametrize(("method", "path", "raw", "status", "words"), CASES)
def test_bad_input_is_a_json_error_and_changes_nothing(client: Any, world: World, method: str, path: str,
                                                       raw: str, status: int, words: str) -> None:
    environment = staged(client, world)
    image_name = world.services.store.environments.get_staging(environment).image_name  # type: ignore[union-attr]
    path, raw = (s.replace("ENV", environment).replace("IMAGE", image_name) for s in (path, raw))
    before = snapshot(world)

    reply = getattr(client.http, method.lower())(path, body=raw, headers=auth())

    assert reply.status_code == status, reply.body
    assert set(body(reply)) == {"error", "message"}
    assert words in body(reply)["message"]
    assert snapshot(world) == before


def test_unknown_route_and_method_are_json_too(client: Any) -> None:
    reply = client.http.patch("/pools/x", headers=auth())
    assert reply.status_code == 405 and set(body(reply)) == {"error", "message"}
