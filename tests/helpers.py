"""Steps of the seed flow that several tests take, and the platform events moto cannot send."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from chalicelib.backends.aws_tasks import started_by
from tests.conftest import World, auth, body

REPO = "https://github.com/binder-examples/requirements"


def send_event(client: Any, handler: str, source: str, detail_type: str, detail: dict[str, Any]) -> Any:
    event = client.events.generate_cw_event(source=source, detail_type=detail_type, detail=detail,
                                            resources=[], region="us-east-1")
    return client.lambda_.invoke(handler, event).payload


def build_detail(world: World, image_name: str, status: str) -> dict[str, Any]:
    """A CodeBuild Build State Change's detail, as EventBridge delivers it."""
    build = world.services.store.builds.get(image_name)
    assert build is not None
    return {
        "build-status": status,
        "project-name": world.settings.codebuild_project,
        "build-id": build.handle.get("id", ""),
        "additional-information": {"environment": {"environment-variables": [
            {"name": "IMAGE_NAME", "value": image_name, "type": "PLAINTEXT"}]}},
    }


def build_event(client: Any, world: World, image_name: str, status: str) -> Any:
    detail = build_detail(world, image_name, status)
    return send_event(client, "build_events", "aws.codebuild", "CodeBuild Build State Change", detail)


def task_detail(world: World, task_arn: str, status: str, reason: str = "") -> dict[str, Any]:
    """An ECS Task State Change's detail, as EventBridge delivers it: the task as DescribeTasks shows it."""
    task = world.ecs.describe_tasks(cluster=world.settings.cluster, tasks=[task_arn])["tasks"][0]
    detail: dict[str, Any] = json.loads(json.dumps(task, default=str))
    detail["lastStatus"] = status
    if reason:
        detail["stoppedReason"] = reason
    return detail


def task_event(client: Any, world: World, task_arn: str, status: str, reason: str = "") -> Any:
    return send_task_event(client, task_detail(world, task_arn, status, reason))


def send_task_event(client: Any, detail: dict[str, Any]) -> Any:
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


def tasks_of_launch(world: World, launch: str) -> list[str]:
    """The ARNs of the tasks one RunTask call started, as ECS lists them."""
    return world.ecs.list_tasks(cluster=world.settings.cluster, startedBy=started_by(launch))["taskArns"]


def task_of(world: World, environment_name: str, server_id: str) -> str:
    """The task of a server: recorded on it, or (before its first event) the only task of its launch."""
    server = world.services.store.servers.get(environment_name, server_id)
    assert server is not None
    if server.handle:
        return server.handle["id"]
    arn, = tasks_of_launch(world, server.launch)
    return arn


def run_all_starting(client: Any, world: World, environment_name: str) -> None:
    """Every task started for the environment's starting servers reports RUNNING, as ECS would."""
    servers = [s for s in world.services.store.servers.live(environment_name) if s.state.value == "starting"]
    for launch in sorted({s.launch for s in servers}):
        for arn in tasks_of_launch(world, launch):
            task_event(client, world, arn, "RUNNING")


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


def from_address(monkeypatch: Any, address: str) -> None:
    """Requests through chalice's test client come from ``address`` from now on (API Gateway's
    requestContext.identity.sourceIp; the client sends 127.0.0.1 otherwise)."""
    from chalice.local import LambdaEventConverter

    monkeypatch.setattr(LambdaEventConverter, "LOCAL_SOURCE_IP", address)


def atomic_calls(world: World) -> list[str]:
    """moto's in-process backends are not thread-safe; AWS makes each request atomic. A lock around
    each call models that while threads still interleave between their calls. Returns the operations
    called (DynamoDB's and ECS's), as they are called."""
    lock, calls = threading.Lock(), []
    for aws in (world.dynamodb, world.ecs):
        call = aws._make_api_call

        def atomic(operation: str, *args: Any, _call: Callable[..., Any] = call) -> Any:
            with lock:
                calls.append(operation)
                return _call(operation, *args)

        aws._make_api_call = atomic
    return calls


@contextmanager
def first_call_paused(owner: Any, name: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """``owner.<name>``'s first call waits until the test sets ``release`` (``entered`` says it is waiting);
    later calls go straight through."""
    original = getattr(owner, name)
    entered, release = threading.Event(), threading.Event()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
        return original(*args, **kwargs)

    setattr(owner, name, paused)
    try:
        yield entered, release
    finally:
        release.set()
        setattr(owner, name, original)


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet test HTTP server's handler: ``reply`` answers with a JSON body."""

    def reply(self, status: int, document: Any) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass
