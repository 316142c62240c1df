"""The domain services, wired together once per process from the settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from chalicelib.auth import Authenticator
from chalicelib.backends.base import Builder, RefResolver, Router, Spawner, Stager
from chalicelib.config import Settings
from chalicelib.idempotency import Idempotency
from chalicelib.services.bindings import BindingService
from chalicelib.services.builds import BuildService
from chalicelib.services.deployments import DeploymentService
from chalicelib.services.launches import LaunchService
from chalicelib.services.pools import PoolService
from chalicelib.services.servers import ServerLifecycle
from chalicelib.services.stagings import StagingService
from chalicelib.store import Store


def wall_clock() -> int:
    return int(time.time())


@dataclass
class Services:
    settings: Settings
    store: Store
    auth: Authenticator
    builds: BuildService
    stagings: StagingService
    servers: ServerLifecycle
    deployments: DeploymentService
    pools: PoolService
    idempotency: Idempotency
    launches: LaunchService
    bindings: BindingService


def build_services(settings: Settings, *, store: Store | None = None, builder: Builder | None = None,
                   stager: Stager | None = None, spawner: Spawner | None = None,
                   resolver: RefResolver | None = None, router: Router | None = None,
                   clock: Callable[[], int] = wall_clock) -> Services:
    """Wire services to the adapters the settings choose; tests pass their own pieces."""
    store = store or Store(settings.table_name, settings.region)
    if builder is None or stager is None or spawner is None or resolver is None:
        from chalicelib.backends import adapters_for

        chosen = adapters_for(settings)
        builder, stager = builder or chosen.builder, stager or chosen.stager
        spawner, resolver = spawner or chosen.spawner, resolver or chosen.resolver
        router = router or chosen.router
    if router is None:
        from chalicelib.backends.routers import router_for

        router = router_for(settings)
    builds = BuildService(settings, store, builder, resolver, clock)
    stagings = StagingService(settings, store, stager, clock)
    servers = ServerLifecycle(settings, store, spawner, clock, router)
    deployments = DeploymentService(settings, store, stagings, servers, clock)
    return Services(
        settings=settings,
        store=store,
        auth=Authenticator(settings, store.tokens, clock),
        builds=builds,
        stagings=stagings,
        servers=servers,
        deployments=deployments,
        pools=PoolService(settings, store, stagings, servers, builds, clock),
        idempotency=Idempotency(store.idempotency.layer, settings.idempotency_ttl),
        launches=LaunchService(builds, stagings, deployments),
        bindings=BindingService(settings, store, builds, stagings, clock),
    )
