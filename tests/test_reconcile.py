"""The schedule: lost, repeated and out-of-order events, slow starts, lifetimes, failures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.conftest import World, auth, body
from tests.helpers import (
    REPO,
    build_event,
    pool_of,
    run_all_starting,
    set_task_status,
    staged,
    task_event,
    task_of,
    tasks_of_launch,
    tick,
)


def launch(client: Any, environment: str) -> Any:
    return client.http.post(f"/deployments/{environment}", body="")


def resize(client: Any, environment: str, size: int) -> Any:
    return client.http.post(f"/pools/{environment}", body=json.dumps({"size": size}), headers=auth())


def test_a_lost_running_event_is_reconciled_by_the_schedule(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    set_task_status(world, task_of(world, environment, server_id), "RUNNING")  # ECS moved; no event came
    tick(client)
    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["status"] == "starting"

    world.clock.advance(world.settings.starting_timeout)
    tick(client)

    reply = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert reply["status"] == "running" and "?token=" in reply["location"]


def test_a_server_that_never_starts_is_stopped_and_failed(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    task_arn = task_of(world, environment, server_id)
    set_task_status(world, task_arn, "PROVISIONING")

    world.clock.advance(world.settings.starting_timeout + 1)
    tick(client)

    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["status"] == "stopping"
    task = world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]
    assert task["desiredStatus"] == "STOPPED"
    task_event(client, world, task_arn, "STOPPED")
    reply = client.http.get(f"/deployments/{environment}/{server_id}")
    assert reply.status_code == 410 and "did not start" in body(reply)["message"]
    assert pool_of(client, world, environment)["running"] == 0


def test_servers_stop_at_their_maximum_lifetime(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    task_arn = task_of(world, environment, server_id)
    task_event(client, world, task_arn, "RUNNING")

    world.clock.advance(world.settings.server_max_lifetime - 1)
    tick(client)
    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["status"] == "running"
    world.clock.advance(1)
    tick(client)

    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["reason"] == "maximum lifetime reached"
    assert world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]["desiredStatus"] == "STOPPED"


def test_events_twice_or_out_of_order_change_nothing_more(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    task_arn = task_of(world, environment, server_id)

    task_event(client, world, task_arn, "RUNNING")
    task_event(client, world, task_arn, "RUNNING")
    assert pool_of(client, world, environment)["running"] == 1
    task_event(client, world, task_arn, "STOPPED")
    task_event(client, world, task_arn, "STOPPED")
    task_event(client, world, task_arn, "RUNNING")  # late

    assert client.http.get(f"/deployments/{environment}/{server_id}").status_code == 410
    assert pool_of(client, world, environment) == {"running": 0, "available": 0, "starting": 0, "size": 0, "minPool": 0}
    assert send_foreign_event_is_ignored(client, world, task_arn)


def send_foreign_event_is_ignored(client: Any, world: World, task_arn: str) -> bool:
    task = world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]
    detail = json.loads(json.dumps(task, default=str)) | {"clusterArn": "arn:aws:ecs:us-east-1:1:cluster/other"}
    from tests.helpers import send_event

    return bool(send_event(client, "task_events", "aws.ecs", "ECS Task State Change", detail) == {"ignored": True})


def test_a_pooled_server_that_dies_unseen_is_replaced(client: Any, world: World) -> None:
    environment = staged(client, world)
    resize(client, environment, 2)
    run_all_starting(client, world, environment)
    victim = next(world.services.store.servers.live(environment))
    set_task_status(world, victim.handle["id"], "STOPPED")  # crashed; the event was lost

    world.clock.advance(world.settings.starting_timeout)
    tick(client)

    assert world.services.store.servers.get(environment, victim.id).state.value == "stopped"  # type: ignore[union-attr]
    assert pool_of(client, world, environment) == {"running": 0, "available": 1, "starting": 1, "size": 2, "minPool": 2}


def test_a_lost_build_event_is_polled(client: Any, world: World) -> None:
    world.git.push(REPO)
    image_name = body(client.http.post("/builds/repos", body=json.dumps({"repository": REPO})))["image-name"]
    tick(client)
    assert body(client.http.get(f"/builds/repos/{image_name}"))["status"] == "pending"

    world.clock.advance(world.settings.build_poll_after)
    tick(client)

    assert body(client.http.get(f"/builds/repos/{image_name}"))["status"] == "completed"  # moto: builds succeed
    assert build_event(client, world, image_name, "FAILED") == {"ignored": True}  # late: changes nothing


def test_no_capacity_is_a_503_with_retry_after_and_nothing_leaks(client: Any, world: World) -> None:
    environment = staged(client, world)
    spawner = world.services.servers.spawner
    with Stubber(spawner.ecs) as stub:  # type: ignore[attr-defined]
        stub.add_response("run_task", {"tasks": [], "failures": [{"reason": "Capacity is unavailable at this time."}]})
        reply = launch(client, environment)

    assert reply.status_code == 503 and reply.headers["Retry-After"]
    assert "Capacity" in body(reply)["message"]
    assert pool_of(client, world, environment)["running"] == 0
    assert list(world.services.store.servers.live(environment)) == []


def test_resize_trims_idle_servers_but_not_handed_out_ones(client: Any, world: World) -> None:
    environment = staged(client, world)
    resize(client, environment, 3)
    run_all_starting(client, world, environment)
    claimed = body(launch(client, environment))["id"]

    trimmed = body(resize(client, environment, 1))

    assert trimmed == {"running": 1, "available": 1, "starting": 0, "size": 1, "minPool": 1}
    assert body(client.http.get(f"/deployments/{environment}/{claimed}"))["status"] == "running"


def test_a_handed_out_server_that_dies_unseen_is_noticed_when_asked_to_check(client: Any, world: World,
                                                                             monkeypatch: Any) -> None:
    checked = world.settings.model_copy(update={"running_check_interval": 60})
    monkeypatch.setattr(world.services.servers, "settings", checked)
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    task_arn = task_of(world, environment, server_id)
    task_event(client, world, task_arn, "RUNNING")
    set_task_status(world, task_arn, "STOPPED")  # crashed; the event was lost

    world.clock.advance(59)
    tick(client)
    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["status"] == "running"
    world.clock.advance(1)
    tick(client)

    assert client.http.get(f"/deployments/{environment}/{server_id}").status_code == 410
    assert pool_of(client, world, environment)["running"] == 0


# ---------------------------------------------------------------- tasks recorded from their events


def test_sibling_events_that_pick_the_same_server_each_get_one(client: Any, world: World,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    environment = staged(client, world)
    resize(client, environment, 2)
    servers = world.services.store.servers
    (launch_id,) = {s.launch for s in servers.live(environment)}
    first, second = tasks_of_launch(world, launch_id)
    stale = servers.of_launch(launch_id)  # what a lagging index shows: neither server has a task yet
    task_event(client, world, first, "RUNNING")
    taken = next(s for s in servers.live(environment) if s.handle)
    # The second event sees the stale index and picks the server the first event took.
    monkeypatch.setattr(servers, "of_launch", lambda launch: stale)
    monkeypatch.setattr("chalicelib.services.servers._pick",
                        lambda candidates, task: next((s for s in candidates if s.id == taken.id), candidates[0]))

    task_event(client, world, second, "RUNNING")

    recorded = {s.handle["id"]: s.id for s in world.services.store.servers.live(environment)}
    assert set(recorded) == {first, second} and len(set(recorded.values())) == 2
    assert pool_of(client, world, environment)["available"] == 2


def test_a_server_deleted_before_its_task_was_known_stops_that_task(client: Any, world: World) -> None:
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    task_arn = task_of(world, environment, server_id)  # started; no event has come yet

    reply = client.http.delete(f"/deployments/{environment}/{server_id}", headers=auth())
    assert reply.status_code == 202 and body(reply)["status"] == "stopping"
    task_event(client, world, task_arn, "PROVISIONING")  # the first event records the task, and stops it

    task = world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]
    assert task["desiredStatus"] == "STOPPED"
    task_event(client, world, task_arn, "STOPPED")
    assert client.http.get(f"/deployments/{environment}/{server_id}").status_code == 410
    assert pool_of(client, world, environment)["running"] == 0


def test_a_server_deleted_before_its_task_existed_ends_when_the_schedule_finds_no_task(client: Any,
                                                                                       world: World) -> None:
    environment = staged(client, world)
    server_id = body(launch(client, environment))["id"]
    task_arn = task_of(world, environment, server_id)
    client.http.delete(f"/deployments/{environment}/{server_id}", headers=auth())
    world.ecs.stop_task(cluster="binderless", task=task_arn)  # gone before any event could name it
    set_task_status(world, task_arn, "STOPPED")

    world.clock.advance(world.settings.check_interval)
    tick(client)

    assert client.http.get(f"/deployments/{environment}/{server_id}").status_code == 410
    assert pool_of(client, world, environment)["running"] == 0


def test_rescheduled_checks_go_100_to_a_transaction_and_skip_a_server_that_changed(client: Any, world: World) -> None:
    environment = staged(client, world)
    resize(client, environment, 3)
    run_all_starting(client, world, environment)
    servers = world.services.store.servers
    available = sorted(servers.live(environment), key=lambda s: s.id)
    claimed = servers.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server
    assert claimed is not None  # one of the three changed since they were read

    moved = servers.reschedule([(server, world.clock() + 5) for server in available])

    assert moved == 2
    due = {s.id for s in servers.due(world.clock() + 5)}
    assert due == {s.id for s in available} - {claimed.id}
    assert servers.get(environment, claimed.id).state.value == "running"  # type: ignore[union-attr]


def test_where_the_launch_records_its_own_starts_the_schedule_never_puts_a_sibling_process_on_a_server(
        client: Any, world: World) -> None:
    """Local mode: each process serves one server's own path with its own token, and the launch saves
    the handles itself right after starting them. A tick in between (servers due, no handle yet) must
    not record a sibling's process on a server: two ids would share one location (seen under load)."""
    from chalicelib.backends.base import TaskState

    environment = staged(client, world)
    lifecycle = world.services.servers
    staging = world.services.stagings.get(environment)
    now = world.clock()
    batch = [lifecycle._new(staging, now, False, "launch00000001", "k" * 48, solo=False) for _ in range(2)]
    world.services.store.servers.create(batch, due_at=now)
    first = {"id": "101", "url": f"http://127.0.0.1:9/user/{batch[0].id}/"}

    class RecordsItsOwnStarts:
        records_from_events = False

        def tasks_of(self, launch: str) -> list[dict[str, str]]:
            return [first]  # the first server's process has started; its handle is not saved yet

        def describe(self, handles: Any) -> list[TaskState]:
            return [TaskState(dict(h), "running", url=h["url"]) for h in handles]

    lifecycle.spawner = RecordsItsOwnStarts()  # type: ignore[assignment]
    lifecycle.reconcile(list(world.services.store.servers.due(now)))

    stored = [world.services.store.servers.get(environment, s.id) for s in batch]
    assert [(s.state.value, s.handle, s.url) for s in stored if s] == [("starting", {}, "")] * 2
