"""The scheduled function's cost follows the work to do, not the fleet (issue 6; bench/scale.py for 1,000 pools)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from tests.conftest import World
from tests.scale import batches_needed, quick_moto_transactions, run_tick, seed

# The fleet's own size is what is being tested: no quota in the way.
pytestmark = [pytest.mark.settings(max_servers=0, max_servers_per_environment=0, max_servers_per_repository=0),
              pytest.mark.usefixtures("quick_transactions")]


@pytest.fixture
def quick_transactions() -> Iterator[None]:
    with quick_moto_transactions():
        yield


def test_a_tick_over_many_pools_scans_nothing_and_batches_its_starts_and_writes(world: World) -> None:
    fleet = seed(world, pools=26, servers_per_pool=20)  # 520 servers; pools short of 0 to 12 servers

    cost = run_tick(world)

    assert cost.calls["Scan"] == 0
    # At most ceil(deficit / 10) RunTask calls per pool, and no pool left short.
    assert all(cost.launches[name] <= bound for name, bound in batches_needed(fleet).items())
    assert cost.calls["RunTask"] == sum(cost.launches.values()) == sum(batches_needed(fleet).values())
    for pool in world.services.store.environments.pools():
        assert pool.available + pool.starting == pool.size, pool
    # Writes: a transaction per batch started, and the due servers' next checks 100 to a transaction.
    assert cost.calls["TransactWriteItems"] == cost.calls["RunTask"] + math.ceil(fleet.due / 100)
    assert cost.writes == cost.calls["TransactWriteItems"]
    # Reads: one query of what fell due, one of due builds, one of the pools, one BatchGetItem of
    # the short pools' stagings (26 < 100), one DescribeTasks per 100 due servers.
    assert cost.calls["Query"] == 3 and cost.calls["BatchGetItem"] == 1 and cost.calls["GetItem"] == 0
    assert cost.calls["DescribeTasks"] == math.ceil(fleet.due / 100)


def test_a_balanced_fleet_costs_three_queries_whatever_its_size(world: World) -> None:
    seed(world, pools=13, servers_per_pool=8)
    run_tick(world)  # fills the pools and checks what was due
    world.clock.advance(30)  # nothing new falls due: started servers are checked after check_interval

    cost = run_tick(world)

    assert cost.calls == {"Query": 3}  # due servers, due builds, pools: nothing else to do
