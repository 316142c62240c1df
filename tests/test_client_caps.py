"""One anonymous client cannot hold every server: a cap on the live servers each client holds.

A client is the caller's address, an IPv6 one by its /64. Its count moves in the same
transaction as the claim or the new server, and as the state change that ends the server.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice.local import LambdaEventConverter

from chalicelib.errors import QuotaExceeded
from chalicelib.routes.api import client_key
from chalicelib.store.counters import CLIENT_COUNT_RETENTION
from tests.conftest import World, auth, body
from tests.helpers import from_address, pool_of, run_all_starting, staged, task_event, task_of
from tests.test_faults import failing

LOCAL = LambdaEventConverter.LOCAL_SOURCE_IP  # the address chalice's test client sends


def launch(client: Any, environment: str, headers: dict[str, str] | None = None) -> Any:
    return client.http.post(f"/deployments/{environment}", body="", headers=headers or {})


def counted(world: World, client_: str) -> int:
    """The client's counter, as stored (0 when it has none yet)."""
    item = world.services.store.dynamo.get(f"QUOTA#CLIENT#{client_}", "QUOTA")
    return int(item["servers"]) if item else 0


def held(world: World, environment: str, client_: str) -> int:
    """What the server items say the client holds."""
    return sum(1 for s in world.services.store.servers.live(environment) if s.client == client_)


def tasks(world: World) -> int:
    return len(world.ecs.list_tasks(cluster=world.settings.cluster)["taskArns"])


def test_client_keys_are_addresses_and_ipv6_64s() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:DB8:1:2:0:0:0:9") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::9") == "2001:db8:1:3::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"  # an IPv4 client seen through a dual stack
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("unknown") == "unknown"


@pytest.mark.settings(max_servers_per_client=2)
def test_a_client_at_its_cap_gets_429_and_no_server_until_one_ends(client: Any, world: World) -> None:
    environment = staged(client, world)
    first, _ = (body(launch(client, environment)) for _ in range(2))

    refused = launch(client, environment)

    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "limit of 2 servers" in body(refused)["message"] and set(body(refused)) == {"error", "message"}
    assert held(world, environment, LOCAL) == counted(world, LOCAL) == 2 and tasks(world) == 2
    assert launch(client, environment, auth()).status_code == 202  # a token holder is not capped
    assert counted(world, LOCAL) == 2

    client.http.delete(f"/deployments/{environment}/{first['id']}", headers=auth())
    assert launch(client, environment).status_code == 429  # stopping still holds its place
    task_event(client, world, task_of(world, environment, first["id"]), "STOPPED")

    assert counted(world, LOCAL) == held(world, environment, LOCAL) == 1
    assert launch(client, environment).status_code == 202  # room again once the server ended
    assert counted(world, LOCAL) == held(world, environment, LOCAL) == 2


@pytest.mark.settings(max_servers_per_client=1)
def test_a_pooled_server_counts_from_its_claim(client: Any, world: World) -> None:
    environment = staged(client, world)
    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=auth())
    run_all_starting(client, world, environment)
    assert counted(world, LOCAL) == 0  # pooled servers belong to nobody

    claimed = launch(client, environment)
    refused = launch(client, environment)

    assert claimed.status_code == 201 and refused.status_code == 429
    server = world.services.store.servers.get(environment, body(claimed)["id"])
    assert server is not None and server.client == LOCAL and counted(world, LOCAL) == 1
    counter = world.services.store.dynamo.get(f"QUOTA#CLIENT#{LOCAL}", "QUOTA")
    assert counter and counter["expires_at"] == server.stop_at + CLIENT_COUNT_RETENTION  # addresses do not pile up
    assert pool_of(client, world, environment)["available"] == 1  # the refused claim took nothing
    assert "client" not in body(client.http.get(f"/deployments/{environment}/{server.id}"))


@pytest.mark.settings(max_servers_per_client=1)
def test_one_ipv6_64_is_one_client_and_another_64_is_another(
        client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = staged(client, world)
    answers = []
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:3::1", "192.0.2.1"):
        from_address(monkeypatch, address)
        answers.append(launch(client, environment).status_code)

    assert answers == [202, 429, 202, 202]
    assert counted(world, "2001:db8:1:2::/64") == counted(world, "2001:db8:1:3::/64") == 1
    rated = {item["pk"]["S"] for item in world.dynamodb.scan(TableName="binderless")["Items"]
             if item["pk"]["S"].startswith("RATE#")}
    assert rated == {"RATE#2001:db8:1:2::/64", "RATE#2001:db8:1:3::/64", "RATE#192.0.2.1"}  # one key for both


@pytest.mark.settings(max_servers_per_client=1)
def test_a_server_that_fails_to_start_frees_its_clients_place(client: Any, world: World) -> None:
    environment = staged(client, world)
    with failing(world.ecs, "RunTask", "ThrottlingException"):
        assert launch(client, environment).status_code == 503

    assert counted(world, LOCAL) == held(world, environment, LOCAL) == 0
    assert launch(client, environment).status_code == 202


@pytest.mark.settings(max_servers_per_client=2)
def test_concurrent_launches_of_one_client_never_pass_its_cap(client: Any, world: World) -> None:
    environment = staged(client, world)
    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 3}), headers=auth())
    run_all_starting(client, world, environment)
    # moto's in-process backends are not thread-safe; AWS makes each request atomic, so a lock
    # around each call models it while the launches still interleave between their calls.
    lock = threading.Lock()
    for aws in (world.dynamodb, world.ecs):
        def atomic(*args: Any, _call: Any = aws._make_api_call) -> Any:
            with lock:
                return _call(*args)
        aws._make_api_call = atomic

    def launch_one(_: int) -> str:
        try:
            _, from_pool = world.services.deployments.launch(environment, client="198.51.100.7")
            return "pool" if from_pool else "cold"
        except QuotaExceeded:
            return "refused"

    with ThreadPoolExecutor(max_workers=8) as workers:
        results = list(workers.map(launch_one, range(8)))

    assert results.count("refused") == 6  # two launched, whichever way they got their server
    assert counted(world, "198.51.100.7") == held(world, environment, "198.51.100.7") == 2
    live = list(world.services.store.servers.live(environment))
    assert len(live) == 3 + results.count("cold") == tasks(world)  # a refused launch started nothing
    assert pool_of(client, world, environment)["available"] == 3 - results.count("pool")
