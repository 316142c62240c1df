"""One keeper run at a time: the schedule fires every minute, a run may take two, and Lambda retries an
asynchronous invocation that failed ("Lambda retries function errors twice"), so runs overlap. Two
overlapping runs must not both refill a pool: a lease in the table lets one run at a time."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib.services.pools import KEEPER_LEASE, LEASE_MARGIN, RUN_SECONDS
from chalicelib.store import Lease
from tests.conftest import World
from tests.helpers import atomic_calls, first_call_paused, staged, tick

SIZE = 12  # two RunTask batches (10 + 2): a run is still refilling after its first launch


def tasks(world: World) -> int:
    return len(world.ecs.list_tasks(cluster=world.settings.cluster)["taskArns"])


def short_pool(client: Any, world: World, size: int = SIZE) -> str:
    """A staged environment whose pool wants ``size`` servers and has none: the keeper's job."""
    environment = staged(client, world)
    world.services.store.environments.set_pool_size(environment, size)
    return environment


def idle(world: World, environment: str) -> int:
    pool = world.services.store.environments.get_pool(environment, consistent=True)
    assert pool is not None
    return pool.available + pool.starting


def run_tasks_counted(world: World) -> list[str]:
    calls: list[str] = []
    world.ecs.meta.events.register("before-call.ecs.RunTask", lambda **_: calls.append("RunTask"))
    return calls


def leases_seen_by_launches(world: World, monkeypatch: pytest.MonkeyPatch) -> list[Lease | None]:
    """The keeper's lease as stored when each launch of a run starts."""
    seen: list[Lease | None] = []
    launch = world.services.servers.launch

    def looking(*args: Any, **kwargs: Any) -> Any:
        seen.append(world.services.store.leases.get(KEEPER_LEASE))
        return launch(*args, **kwargs)

    monkeypatch.setattr(world.services.servers, "launch", looking)
    return seen


def test_a_run_that_starts_while_another_refills_skips_and_the_pool_gets_exactly_its_size(
        client: Any, world: World) -> None:
    environment = short_pool(client, world)
    run_tasks = run_tasks_counted(world)
    atomic_calls(world)
    results: list[dict[str, int]] = []

    with first_call_paused(world.services.servers, "launch") as (entered, release):
        first = threading.Thread(target=lambda: results.append(world.services.pools.keep(120)))
        first.start()
        assert entered.wait(10)  # the first run holds the lease and is inside its first launch
        second = world.services.pools.keep(120)
        assert tasks(world) == 0  # the second run changed nothing
        release.set()
        first.join(10)

    assert second == {"skipped": 1, "held_until": world.clock() + 120 + LEASE_MARGIN}
    assert results == [{"servers_checked": 0, "builds_checked": 0, "pools_balanced": 1}]
    assert idle(world, environment) == SIZE and tasks(world) == SIZE
    assert len(run_tasks) == 2  # ceil(12 / 10): nobody started a second pool's worth


def test_runs_started_at_once_start_each_server_once(client: Any, world: World) -> None:
    environment = short_pool(client, world)
    run_tasks = run_tasks_counted(world)
    atomic_calls(world)
    start = threading.Barrier(4)
    results: list[dict[str, int]] = []

    def run() -> None:
        start.wait(10)
        results.append(world.services.pools.keep(120))

    runs = [threading.Thread(target=run) for _ in range(4)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(30)

    assert len(results) == 4
    # one run refilled; the others skipped, or ran after it and found the pool full
    assert sum(r.get("pools_balanced", 0) for r in results) == 1
    assert idle(world, environment) == SIZE and tasks(world) == SIZE and len(run_tasks) == 2


def test_the_lease_is_released_so_the_next_minutes_run_runs(client: Any, world: World) -> None:
    environment = short_pool(client, world)

    first = world.services.pools.keep(120)
    world.clock.advance(60)
    world.services.store.environments.set_pool_size(environment, SIZE + 1)
    second = world.services.pools.keep(120)

    assert first["pools_balanced"] == 1 and second["pools_balanced"] == 1
    assert world.services.store.leases.get(KEEPER_LEASE) is None
    assert idle(world, environment) == SIZE + 1


def test_a_run_killed_mid_way_holds_the_lease_only_until_it_expires(client: Any, world: World) -> None:
    environment = short_pool(client, world)
    now = world.clock()
    # What a run that Lambda stopped at its timeout leaves behind: its lease, never released.
    killed = world.services.store.leases.take(KEEPER_LEASE, "killed-run", now=now, expires_at=now + 150)
    assert killed is not None

    while_held = world.services.pools.keep(120)
    world.clock.advance(150)
    after_expiry = world.services.pools.keep(120)

    assert while_held == {"skipped": 1, "held_until": now + 150}
    assert after_expiry["pools_balanced"] == 1 and idle(world, environment) == SIZE
    assert world.services.store.leases.get(KEEPER_LEASE) is None


def test_the_lease_lasts_the_runs_remaining_time_and_a_margin(
        client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = short_pool(client, world)
    seen = leases_seen_by_launches(world, monkeypatch)

    world.services.pools.keep(27.3)  # a Lambda with 27.3 s left
    world.services.store.environments.set_pool_size(environment, SIZE + 1)
    world.services.pools.keep()  # no Lambda context: the keeper's timeout is assumed

    now = world.clock()
    assert [lease.expires_at if lease else None for lease in seen] == [
        now + 28 + LEASE_MARGIN, now + 28 + LEASE_MARGIN, now + RUN_SECONDS + LEASE_MARGIN]


def test_a_failed_run_releases_the_lease(client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = short_pool(client, world)

    def broken(_: Any) -> None:
        raise RuntimeError("DescribeTasks went wrong")

    monkeypatch.setattr(world.services.servers, "reconcile", broken)
    with pytest.raises(RuntimeError):
        world.services.pools.keep(120)  # Lambda records the error (and retries the invocation)
    monkeypatch.undo()

    assert world.services.store.leases.get(KEEPER_LEASE) is None
    assert world.services.pools.keep(120)["pools_balanced"] == 1 and idle(world, environment) == SIZE


def test_a_long_run_renews_its_lease_between_steps(client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = short_pool(client, world)
    start = world.clock()
    builds = world.services.builds.reconcile

    def slow_builds() -> int:
        world.clock.advance(RUN_SECONDS)  # this step used the run's whole time: the margin is all that is left
        return builds()

    monkeypatch.setattr(world.services.builds, "reconcile", slow_builds)
    seen = leases_seen_by_launches(world, monkeypatch)
    result = world.services.pools.keep()

    assert result["pools_balanced"] == 1 and idle(world, environment) == SIZE
    assert seen[0] is not None and seen[0].expires_at == start + RUN_SECONDS + RUN_SECONDS + LEASE_MARGIN


def test_a_run_whose_lease_was_taken_stops_and_leaves_the_new_holder_alone(
        client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = short_pool(client, world)
    builds = world.services.builds.reconcile

    def stalled_builds() -> int:
        world.clock.advance(RUN_SECONDS + LEASE_MARGIN)  # past the lease: the next run took it
        taken = world.services.store.leases.take(KEEPER_LEASE, "next-run", now=world.clock(),
                                                 expires_at=world.clock() + 150)
        assert taken is not None
        return builds()

    monkeypatch.setattr(world.services.builds, "reconcile", stalled_builds)
    result = world.services.pools.keep()

    assert result == {"lease_lost": 1}
    assert idle(world, environment) == 0 and tasks(world) == 0  # the pools are the new holder's to fill
    held = world.services.store.leases.get(KEEPER_LEASE)
    assert held is not None and held.owner == "next-run"


def test_the_scheduled_function_skips_while_another_run_holds_the_lease(client: Any, world: World) -> None:
    environment = short_pool(client, world)
    now = world.clock()
    world.services.store.leases.take(KEEPER_LEASE, "other-run", now=now, expires_at=now + 60)

    skipped, started = tick(client), tasks(world)
    world.clock.advance(60)
    ran = tick(client)

    assert skipped == {"skipped": 1, "held_until": now + 60} and started == 0
    assert ran["pools_balanced"] == 1 and idle(world, environment) == SIZE
