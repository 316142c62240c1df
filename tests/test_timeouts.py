"""A client that retries after a gateway timeout never starts a second server (with an Idempotency-Key).

API Gateway gives up on an integration after 29 s ("50 milliseconds - 29 seconds for all integration
types, including Lambda, Lambda proxy, HTTP, HTTP proxy, and AWS integrations", API Gateway quotas),
and the client, seeing 504, sends the request again. The invocation may still be running: the API
function's timeout is under 29 s (tests/test_infra.py checks the packaged template), but a cold
start's initialisation is not counted in it. A retry with the same key is told to wait (409) while the
first runs, and gets the first answer once it has finished.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from chalice.cli.factory import CLIFactory

from chalicelib.idempotency import IN_FLIGHT_GRACE_MS
from scripts.cfn import ROOT
from tests.conftest import World, body
from tests.helpers import atomic_calls, first_call_paused, staged

GATEWAY_TIMEOUT = 29
# The API function's timeout as Chalice resolves it (chalice.test's client gives the view a context with it).
API_TIMEOUT: int = CLIFactory(str(ROOT), environ={}).create_config_obj(chalice_stage_name="dev").lambda_timeout


class PowertoolsClock:
    """powertools' idempotency reads the time from ``datetime.now()`` (record expiries, and the
    condition of its PutItem); this moves that clock forward by ``shift`` seconds."""

    def __init__(self) -> None:
        self.shift = 0.0
        clock = self

        class Now(datetime.datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
                return datetime.datetime.now(tz) + datetime.timedelta(seconds=clock.shift)

        self.module = SimpleNamespace(datetime=Now, timedelta=datetime.timedelta)


@pytest.fixture
def powertools_clock(monkeypatch: pytest.MonkeyPatch) -> PowertoolsClock:
    from aws_lambda_powertools.utilities.idempotency import base
    from aws_lambda_powertools.utilities.idempotency.persistence import base as persistence
    from aws_lambda_powertools.utilities.idempotency.persistence import datarecord, dynamodb

    clock = PowertoolsClock()
    for module in (base, persistence, datarecord, dynamodb):
        assert module.dt is datetime  # what this fixture replaces
        monkeypatch.setattr(module, "dt", clock.module)
    return clock


def tasks(world: World) -> int:
    return len(world.ecs.list_tasks(cluster=world.settings.cluster)["taskArns"])


def launch(client: Any, environment: str, key: str) -> Any:
    return client.http.post(f"/deployments/{environment}", body="", headers={"Idempotency-Key": key})


@contextmanager
def slow_backend(world: World) -> Iterator[tuple[threading.Event, threading.Event]]:
    """RunTask takes as long as the test says: the launch waits inside the spawner until released."""
    atomic_calls(world)
    with first_call_paused(world.services.servers.spawner, "start") as events:
        yield events


def in_progress_expiry_ms(world: World) -> int:
    """When the one idempotency record in the table stops counting as in progress (epoch ms)."""
    items = world.dynamodb.query(TableName=world.settings.table_name, KeyConditionExpression="pk = :pk",
                                 ExpressionAttributeValues={":pk": {"S": "IDEMPOTENCY"}}, ConsistentRead=True)["Items"]
    (item,) = items
    assert item["status"]["S"] == "INPROGRESS"
    return int(item["in_progress_expiration"]["N"])


def test_a_retry_while_a_slow_launch_runs_is_told_to_wait_and_then_gets_the_same_server(
        client: Any, world: World) -> None:
    environment = staged(client, world)
    replies: list[Any] = []

    with slow_backend(world) as (entered, release):
        first = threading.Thread(target=lambda: replies.append(launch(client, environment, "slow-1")))
        first.start()
        assert entered.wait(10)  # the first launch is inside RunTask
        meanwhile = launch(client, environment, "slow-1")
        release.set()
        first.join(10)
    after = launch(client, environment, "slow-1")

    assert meanwhile.status_code == 409 and meanwhile.headers["Retry-After"] == "1"
    assert "in progress" in body(meanwhile)["message"]
    (answer,) = replies
    assert answer.status_code == after.status_code == 202
    assert body(after)["id"] == body(answer)["id"]
    assert tasks(world) == 1


def test_a_retry_after_the_gateway_gave_up_never_starts_a_second_server(
        client: Any, world: World, powertools_clock: PowertoolsClock) -> None:
    environment = staged(client, world)
    replies: list[Any] = []

    with slow_backend(world) as (entered, release):
        first = threading.Thread(target=lambda: replies.append(launch(client, environment, "slow-2")))
        first.start()
        assert entered.wait(10)
        started_ms = datetime.datetime.now().timestamp() * 1000
        expiry = in_progress_expiry_ms(world)
        # The gateway answered 504 at 29 s and the client retried: past the function's own timeout,
        # within the grace for its last calls in flight.
        powertools_clock.shift = GATEWAY_TIMEOUT + 0.5
        after_gateway_timeout = launch(client, environment, "slow-2")
        release.set()
        first.join(10)
    powertools_clock.shift = API_TIMEOUT + IN_FLIGHT_GRACE_MS / 1000 + 60  # long after: the answer is kept
    much_later = launch(client, environment, "slow-2")

    # The in-progress record lasts the invocation's remaining time (under its timeout) and the grace.
    deadline_ms = started_ms + API_TIMEOUT * 1000  # a little after the invocation's real deadline
    assert deadline_ms - 2000 + IN_FLIGHT_GRACE_MS < expiry <= deadline_ms + IN_FLIGHT_GRACE_MS
    assert expiry > started_ms + (GATEWAY_TIMEOUT + 0.5) * 1000
    assert after_gateway_timeout.status_code == 409 and after_gateway_timeout.headers["Retry-After"]
    (answer,) = replies
    assert much_later.status_code == 202 and body(much_later)["id"] == body(answer)["id"]
    assert tasks(world) == 1

