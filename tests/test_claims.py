"""Claims: one query plus one conditional transaction, and never the same server twice."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib.store import turns
from tests.conftest import World, auth
from tests.helpers import atomic_calls, pool_of, run_all_starting, staged


def filled_pool(client: Any, world: World, size: int) -> str:
    environment = staged(client, world)
    for _ in range(0, size, 10):
        client.http.post(f"/pools/{environment}", body=json.dumps({"size": size}), headers=auth())
    run_all_starting(client, world, environment)
    assert pool_of(client, world, environment)["available"] == size
    return environment


def test_a_claim_is_one_query_and_one_transaction(client: Any, world: World) -> None:
    environment = filled_pool(client, world, 2)
    calls: list[str] = []
    world.dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    claim = world.services.store.servers.claim(environment, now=world.clock(), stop_at=world.clock() + 60)

    assert claim.server is not None and claim.server.state.value == "running"
    assert calls == ["Query", "TransactWriteItems"]


def test_an_empty_pools_claim_query_brings_the_staging_to_start_from(client: Any, world: World) -> None:
    environment = staged(client, world)
    calls: list[str] = []
    world.dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    claim = world.services.store.servers.claim(environment, now=world.clock(), stop_at=world.clock() + 60)

    assert claim.server is None and calls == ["Query"]
    assert claim.staging == world.services.stagings.get(environment)  # launchable, found by the same query


def claim_concurrently(world: World, environment: str, claims: int) -> list[str]:
    def claim(_: int) -> str | None:
        server = world.services.store.servers.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server
        return server.id if server else None

    with ThreadPoolExecutor(max_workers=8) as workers:
        return [i for i in workers.map(claim, range(claims)) if i]


def test_concurrent_claims_never_share_a_server(client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = filled_pool(client, world, 6)
    atomic_calls(world)
    # As from separate Lambdas: claims in one process take turns (store/turns.py), these must race.
    monkeypatch.setattr(turns.TURNS, "of", lambda _: contextlib.nullcontext(turns.Turn()))
    claimed = claim_concurrently(world, environment, 16)

    assert Counter(claimed).most_common(1)[0][1] == 1  # nobody got a server twice
    assert len(claimed) <= 6
    pool = pool_of(client, world, environment)
    assert pool["running"] == len(claimed) and pool["available"] == 6 - len(claimed)


def test_claims_in_one_process_take_turns_and_share_one_query(client: Any, world: World) -> None:
    """Local mode serves every request in one process: there a burst on a pool costs one transaction a
    claim, where racing claimers pay for every collision (they measured 24 for 10 claims), and the
    claims queued behind the first try what its query found instead of asking again."""
    environment = filled_pool(client, world, 6)
    calls = atomic_calls(world)
    with turns.TURNS.of(environment) as turn:  # a claim is under way: the burst queues behind it
        workers = ThreadPoolExecutor(max_workers=6)
        burst = workers.map(lambda _: world.services.store.servers.claim(
            environment, now=world.clock(), stop_at=world.clock() + 60).server, range(6))
        wait_until(lambda: turn.waiting == 6)
    claimed = [server.id for server in burst if server]
    workers.shutdown()

    assert len(set(claimed)) == 6
    assert calls == ["Query"] + ["TransactWriteItems"] * 6


def test_a_stale_handed_on_candidate_costs_a_query_not_a_server(client: Any, world: World,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    environment = filled_pool(client, world, 2)
    store = world.services.store.servers
    listed = list(world.services.store.dynamo.query(
        "avail_env = :e", {":e": {"S": environment}}, index="available"))
    first = store.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server
    assert first is not None
    taken = [item for item in listed if item["sk"] in ("STAGING", f"SERVER#{first.id}")]
    with turns.TURNS.of(environment) as turn:  # as if a claimer waited while `first` was claimed
        turn.waiting += 1
        turn.hand_on(taken)
        turn.waiting -= 1
    calls = atomic_calls(world)

    second = store.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server

    assert second is not None and second.id != first.id
    assert calls == ["TransactWriteItems", "Query", "TransactWriteItems"]  # the stale one failed its condition

    with turns.TURNS.of(environment) as turn:
        turn.waiting += 1
        turn.hand_on(taken)
        turn.waiting -= 1
    monkeypatch.setattr(turns, "HANDED_ON_FOR", 0.0)  # too old to be worth a transaction
    calls.clear()
    assert store.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server is None
    assert calls == ["Query"]


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.005)


def test_a_claim_that_loses_the_race_takes_the_next_server(client: Any, world: World) -> None:
    environment = filled_pool(client, world, 2)
    store = world.services.store.servers
    stale = list(world.services.store.dynamo.query(
        "avail_env = :e", {":e": {"S": environment}}, index="available"))  # what a lagging index shows
    first = store.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server
    original_query = world.services.store.dynamo.query
    world.services.store.dynamo.query = lambda *a, **k: iter(stale)  # type: ignore[method-assign]
    try:
        second = store.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server
        third = store.claim(environment, now=world.clock(), stop_at=world.clock() + 60).server
    finally:
        world.services.store.dynamo.query = original_query  # type: ignore[method-assign]

    assert first is not None and second is not None and first.id != second.id
    assert third is None  # both listed servers are taken: the caller starts one cold
    assert pool_of(client, world, environment) == {"running": 2, "available": 0, "starting": 0, "size": 2, "minPool": 2}
