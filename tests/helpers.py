"""Steps of the seed flow that several tests take, and the platform events moto cannot send."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import World, auth, body

REPO = "https://github.com/binder-examples/requirements"


def send_event(client: Any, handler: str, source: str, detail_type: str, detail: dict[str, Any]) -> Any:
    event = client.events.generate_cw_event(source=source, detail_type=detail_type, detail=detail,
                                            resources=[], region="us-east-1")
    return client.lambda_.invoke(handler, event).payload


def build_event(client: Any, world: World, image_name: str, status: str) -> Any:
    build = world.services.store.builds.get(image_name)
    assert build is not None
    detail = {
        "build-status": status,
        "project-name": world.settings.codebuild_project,
        "build-id": build.handle.get("build_id", ""),
        "additional-information": {"environment": {"environment-variables": [
            {"name": "IMAGE_NAME", "value": image_name, "type": "PLAINTEXT"}]}},
    }
    return send_event(client, "build_events", "aws.codebuild", "CodeBuild Build State Change", detail)


def task_event(client: Any, world: World, task_arn: str, status: str, reason: str = "") -> Any:
    """An ECS Task State Change as EventBridge delivers it: the task as DescribeTasks shows it."""
    task = world.ecs.describe_tasks(cluster=world.settings.cluster, tasks=[task_arn])["tasks"][0]
    detail = json.loads(json.dumps(task, default=str))
    detail["lastStatus"] = status
    if reason:
        detail["stoppedReason"] = reason
    return send_event(client, "task_events", "aws.ecs", "ECS Task State Change", detail)


def built_image(client: Any, world: World, repository: str = REPO) -> str:
    world.git.push(repository)
    image_name = body(client.http.post("/builds/repos", body=json.dumps({"repository": repository}),
                                       headers=auth()))["image-name"]
    build_event(client, world, image_name, "SUCCEEDED")
    return image_name


def staged(client: Any, world: World, **limits: Any) -> str:
    image_name = built_image(client, world)
    payload = {"image-name": image_name, "limits": limits or {"cpu": "0.5", "memory": "1G"}}
    reply = client.http.post("/stagings", body=json.dumps(payload), headers=auth())
    assert reply.status_code == 201, reply.body
    return str(body(reply)["environment-name"])


def task_of(world: World, environment_name: str, server_id: str) -> str:
    server = world.services.store.servers.get(environment_name, server_id)
    assert server is not None
    return server.handle["task_arn"]


def run_all_starting(client: Any, world: World, environment_name: str) -> None:
    """Every starting server of the environment reports RUNNING, as ECS would."""
    for server in world.services.store.servers.live(environment_name):
        if server.state.value == "starting" and server.handle:
            task_event(client, world, server.handle["task_arn"], "RUNNING")


def tick(client: Any) -> Any:
    """One run of the scheduled function, as EventBridge's schedule would start it."""
    return send_event(client, "keeper", "aws.events", "Scheduled Event", {})


def set_task_status(world: World, task_arn: str, status: str) -> None:
    """What ECS would do on its own (moto keeps tasks where we put them)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends

    ecs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tasks[world.settings.cluster][task_arn].status = status


def pool_of(client: Any, world: World, environment_name: str) -> dict[str, int]:
    return dict(body(client.http.get(f"/pools/{environment_name}")))
