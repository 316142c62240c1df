"""A fleet for the scheduled function: many pools, each with servers in every state, seeded directly.

Used by tests/test_scale.py (a small fleet, counts asserted) and bench/scale.py (up to 1,000 pools
and 20,000 servers, counts and time reported). Seeding writes the items the store writes (through
``ServerStore.create``) instead of driving the API, so a 20,000-server fleet takes seconds.

Each pool has ``servers_per_pool`` servers: a quarter handed out (running), the rest available.
One available server in ten is due for its safety-net check, and has a real (moto) task to
describe; the others' checks fall later. Pool sizes leave pool ``i`` short of ``i % 13`` servers
(0 to 12), so a tick starts 0, 1 or 2 RunTask batches per pool.

moto snapshots the whole table with ``copy.deepcopy`` once per item of every TransactWriteItems
(to roll back a failed one), so a transaction on a 20,000-item table takes seconds there, and
none here. ``quick_moto_transactions`` skips that snapshot: use it only where no transaction is
expected to fail (a failed one would not be rolled back). Times measured under it are moto's
plus ours, not DynamoDB's; the call counts are what they would be on AWS.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from chalicelib.backends.aws_tasks import started_by
from chalicelib.models import BuildStatus, Server, ServerState, Staging
from chalicelib.services.servers import new_server_id
from tests.conftest import World

DUE_SHARE = 10  # one available server in ten is due at the tick
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


@dataclass
class Fleet:
    pools: int
    servers: int
    deficits: dict[str, int]  # environment-name -> servers missing from its pool
    due: int  # servers whose check falls due at the tick


@dataclass
class TickCost:
    calls: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    launches: Counter[str] = field(default_factory=Counter)  # environment-name -> RunTask calls

    @property
    def writes(self) -> int:
        return sum(self.calls[name] for name in WRITES)


@contextmanager
def quick_moto_transactions() -> Iterator[None]:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    saved = models.copy
    models.copy = SimpleNamespace(deepcopy=deepcopy)  # type: ignore[assignment]
    try:
        yield
    finally:
        models.copy = saved


def _task_definition(world: World) -> str:
    reply = world.ecs.register_task_definition(
        family="binderless-scale", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024",
        memory="2048", containerDefinitions=[{"name": "notebook", "image": "python:3.11", "memory": 2048}])
    return str(reply["taskDefinition"]["taskDefinitionArn"])


def _running_tasks(world: World, task_definition: str, count: int) -> list[str]:
    """``count`` moto tasks, 10 to a RunTask as the spawner starts them."""
    arns: list[str] = []
    network = {"awsvpcConfiguration": {"subnets": list(world.settings.subnets),
                                       "securityGroups": list(world.settings.security_groups)}}
    while len(arns) < count:
        reply = world.ecs.run_task(cluster=world.settings.cluster, taskDefinition=task_definition,
                                   launchType="FARGATE", count=min(10, count - len(arns)),
                                   networkConfiguration=network, startedBy=started_by("seeded"))
        arns.extend(task["taskArn"] for task in reply["tasks"])
    return arns


def seed(world: World, pools: int, servers_per_pool: int = 20) -> Fleet:
    store, now = world.services.store, world.clock()
    task_definition = _task_definition(world)
    running = servers_per_pool // 4
    available = servers_per_pool - running
    due_per_pool = max(1, available // DUE_SHARE)
    tasks = iter(_running_tasks(world, task_definition, pools * due_per_pool))
    deficits: dict[str, int] = {}
    for number in range(pools):
        name = f"env-{number:04d}"
        staging = Staging(environment_name=name, image_name="scale", image="python:3.11", cpu=1024, memory=2048,
                          source=f"https://github.com/scale/repo-{number}", created_at=now - 3600)
        store.environments.create_staging(staging)
        store.environments.finish_staging(staging, status=BuildStatus.completed.value,
                                          handle={"task_definition": task_definition})
        deficits[name] = number % 13
        store.environments.set_pool_size(name, available + deficits[name])

        def server(state: ServerState, task_arn: str, *, claimed: bool = False) -> Server:
            return Server(environment_name=name, id=new_server_id(), state=state, claimed=claimed,
                          source=staging.source, launch=f"seed{number:04d}", token="t" * 48,
                          url="http://10.0.0.1:8888/", handle={"id": task_arn}, created_at=now - 1800,
                          claimed_at=now - 600 if claimed else 0, stop_at=now + 3600 if claimed else 0)

        def unused_arn() -> str:
            return f"arn:aws:ecs:us-east-1:123456789012:task/binderless/{new_server_id()}"

        due = [server(ServerState.available, next(tasks)) for _ in range(due_per_pool)]
        later = [server(ServerState.available, unused_arn()) for _ in range(available - due_per_pool)]
        handed_out = [server(ServerState.running, unused_arn(), claimed=True) for _ in range(running)]
        store.servers.create(due, due_at=now - 1)
        store.servers.create(later, due_at=now + 300)
        store.servers.create(handed_out, due_at=now + 3600)
    return Fleet(pools=pools, servers=pools * servers_per_pool, deficits=deficits, due=pools * due_per_pool)


def run_tick(world: World) -> TickCost:
    """One scheduled run over the fleet, with every AWS call it makes counted, and its launches."""
    cost = TickCost()
    hook = lambda model, **_: cost.calls.update([model.name])  # noqa: E731
    clients = (world.dynamodb, world.ecs)
    lifecycle = world.services.servers
    launch = lifecycle.launch

    def counted_launch(staging: Staging, count: int, **kwargs: Any) -> list[Server]:
        cost.launches.update([staging.environment_name])  # one launch is one RunTask call
        return launch(staging, count, **kwargs)

    lifecycle.launch = counted_launch  # type: ignore[method-assign]
    for client_ in clients:
        client_.meta.events.register("before-call", hook)
    started = time.perf_counter()
    try:
        world.services.pools.tick()
    finally:
        cost.seconds = time.perf_counter() - started
        for client_ in clients:
            client_.meta.events.unregister("before-call", hook)
        lifecycle.launch = launch  # type: ignore[method-assign]
    return cost


def batches_needed(fleet: Fleet) -> dict[str, int]:
    return {name: math.ceil(missing / 10) for name, missing in fleet.deficits.items()}


def summary(fleet: Fleet, cost: TickCost) -> dict[str, Any]:
    return {"pools": fleet.pools, "servers": fleet.servers, "due": fleet.due,
            "deficit": sum(fleet.deficits.values()), "calls": dict(sorted(cost.calls.items())),
            "total_calls": sum(cost.calls.values()), "run_task": cost.calls["RunTask"],
            "run_task_bound": sum(batches_needed(fleet).values()), "writes": cost.writes,
            "scan": cost.calls["Scan"], "seconds": round(cost.seconds, 3)}
