"""Pools: keep ``size`` idle, ready servers per environment; the schedule's tick."""

from __future__ import annotations

import logging
from typing import Callable

from chalicelib.config import Settings
from chalicelib.errors import BinderError, Invalid, NotFound, QuotaExceeded
from chalicelib.models import Pool, Staging
from chalicelib.services.builds import BuildService
from chalicelib.services.servers import ServerLifecycle
from chalicelib.services.stagings import StagingService
from chalicelib.store import ConditionFailed, Store

log = logging.getLogger(__name__)


class PoolService:
    def __init__(self, settings: Settings, store: Store, stagings: StagingService, servers: ServerLifecycle,
                 builds: BuildService, clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.stagings = stagings
        self.servers = servers
        self.builds = builds
        self.clock = clock

    def get(self, environment_name: str) -> Pool:
        pool = self.store.environments.get_pool(environment_name)
        if pool is None:
            raise NotFound(f"No environment named '{environment_name}'. Stage one with POST /stagings.")
        return pool

    def all(self) -> dict[str, Pool]:
        """Pools that keep servers, or still have some, keyed by environment-name."""
        return {p.environment_name: p for p in self.store.environments.pools()
                if p.size or p.available or p.starting or p.running}

    def resize(self, environment_name: str, size: int) -> Pool:
        if size > self.settings.max_pool_size:
            raise Invalid(f"size {size} is over this deployment's maximum pool size of {self.settings.max_pool_size}.")
        staging = self.stagings.launchable(environment_name) if size else self.stagings.get(environment_name)
        pool = self.store.environments.set_pool_size(environment_name, size)
        self._balance(pool, staging, max_batches=1)
        return self.store.environments.get_pool(environment_name, consistent=True) or pool

    def delete(self, environment_name: str) -> Pool:
        """Drain: no idle servers kept, the idle ones stopped; handed-out servers run on."""
        return self.resize(environment_name, 0)

    def _balance(self, pool: Pool, staging: Staging | None, max_batches: int | None) -> None:
        """Start the missing servers (in platform batches) or stop the surplus idle ones."""
        idle = pool.available + pool.starting
        if idle < pool.size:
            self._fill(pool, staging or self.stagings.launchable(pool.environment_name), pool.size - idle, max_batches)
        elif idle > pool.size:
            for server in self.store.servers.idle(pool.environment_name)[: idle - pool.size]:
                try:
                    self.servers.stop(server, "pool trimmed")
                except ConditionFailed:
                    continue  # claimed meanwhile: it is no longer idle, which is what we wanted

    def _fill(self, pool: Pool, staging: Staging, missing: int, max_batches: int | None) -> None:
        """Start ``missing`` idle servers in platform batches, as far as the quotas allow."""
        self.stagings.ready(staging)
        cap = self.settings.max_servers_per_environment
        if cap:
            missing = min(missing, cap - pool.live)
        batch, batches = self.servers.spawner.max_batch, 0
        while missing > 0 and (max_batches is None or batches < max_batches):
            count = min(batch, missing)
            try:
                self.servers.launch(staging, count, claimed=False)
            except QuotaExceeded:
                if count == 1:
                    raise
                batch = 1  # a whole batch would pass a limit: go one by one, as far as it allows
                continue
            missing, batches = missing - count, batches + 1

    def tick(self) -> dict[str, int]:
        """The scheduled run: reconcile what fell due, then bring every pool to its size.

        Its cost grows with the work to do, not with the fleet: one query for what fell due, one
        for the pools, one BatchGetItem per 100 pools that need servers, then a transaction and a
        RunTask per batch of 10 servers started (bench/scale.py measures it)."""
        due = list(self.store.servers.due(self.clock()))
        self.servers.reconcile(due)
        builds = self.builds.reconcile()
        unbalanced = [p for p in self.store.environments.pools() if p.size != p.available + p.starting]
        short = [p.environment_name for p in unbalanced if p.size > p.available + p.starting]
        stagings = self.store.environments.get_stagings(short) if short else {}
        pools = 0
        for pool in unbalanced:
            try:
                self._balance(pool, stagings.get(pool.environment_name), None)
                pools += 1
            except BinderError as error:
                log.warning("could not balance pool %s: %s", pool.environment_name, error.message)
        return {"servers_checked": len(due), "builds_checked": builds, "pools_balanced": pools}
