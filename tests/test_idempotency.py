"""Retried POSTs with an Idempotency-Key get the first answer instead of launching again."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import World, body
from tests.helpers import REPO, staged


def launch(client: Any, environment: str, key: str | None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.http.post(f"/deployments/{environment}", body="", headers=headers)


def tasks(world: World) -> int:
    return len(world.ecs.list_tasks(cluster="binderless")["taskArns"])


def test_a_retried_launch_returns_the_first_answer_and_starts_nothing(client: Any, world: World) -> None:
    environment = staged(client, world)
    first = launch(client, environment, "retry-me-1")

    again = launch(client, environment, "retry-me-1")

    assert first.status_code == again.status_code == 202
    assert body(again) == body(first)
    assert tasks(world) == 1
    assert body(launch(client, environment, "another-key"))["id"] != body(first)["id"]
    assert body(launch(client, environment, None))["id"] != body(first)["id"]
    assert tasks(world) == 3


def test_a_retried_build_request_is_answered_once_and_a_changed_body_is_refused(client: Any, world: World) -> None:
    world.git.push(REPO)
    headers = {"Idempotency-Key": "build-1"}
    first = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}), headers=headers)
    again = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}), headers=headers)
    changed = client.http.post("/builds/repos", body=json.dumps({"repository": REPO, "ref": "main"}),
                               headers=headers)

    assert (first.status_code, again.status_code) == (202, 202) and body(first) == body(again)
    assert changed.status_code == 422 and "different request" in body(changed)["message"]


def test_a_failed_request_can_be_retried_with_its_key(client: Any, world: World) -> None:
    environment = staged(client, world)
    spawner = world.services.servers.spawner
    from botocore.stub import Stubber

    with Stubber(spawner.ecs) as stub:  # type: ignore[attr-defined]
        stub.add_client_error("run_task", service_error_code="ThrottlingException", http_status_code=400)
        failed = launch(client, environment, "flaky")
    retried = launch(client, environment, "flaky")

    assert failed.status_code == 503 and failed.headers["Retry-After"]
    assert retried.status_code == 202 and tasks(world) == 1


def test_a_bad_key_is_a_clear_error(client: Any, world: World) -> None:
    environment = staged(client, world)
    reply = launch(client, environment, "x" * 300)
    assert reply.status_code == 400 and "Idempotency-Key" in body(reply)["message"]


def test_keys_belong_to_their_caller(client: Any, world: World) -> None:
    environment = staged(client, world)
    token, _ = world.services.auth.create_token("other", ["builds"])
    mine = client.http.post(f"/deployments/{environment}", body="", headers={"Idempotency-Key": "in-a-page"})
    theirs = client.http.post(f"/deployments/{environment}", body="",
                              headers={"Idempotency-Key": "in-a-page", "Authorization": f"token {token}"})

    assert body(mine)["id"] != body(theirs)["id"]  # a key in a public page does not share one server
