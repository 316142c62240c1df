"""Pools: keep ``size`` idle, ready servers per environment; the schedule's tick."""

from __future__ import annotations

import logging
import math
import secrets
from typing import Callable

from chalicelib.config import Settings
from chalicelib.errors import BinderError, Invalid, NotFound, QuotaExceeded, Unavailable
from chalicelib.models import Pool, Staging
from chalicelib.services.builds import BuildService
from chalicelib.services.servers import ServerLifecycle
from chalicelib.services.stagings import StagingService
from chalicelib.store import ConditionFailed, Lease, Store

log = logging.getLogger(__name__)

KEEPER_LEASE = "keeper"
# A run's lease lasts its own time plus this: room for two machines' clocks to differ and for
# calls still in flight when Lambda stops a run at its timeout.
LEASE_MARGIN = 30
RUN_SECONDS = 120  # a run's time when the caller does not say (the keeper's timeout, .chalice/config.json)


class LeaseLost(Exception):
    """The lease expired under a run and another run took it: this one stops where it is."""


class LeaseHolder:
    """A run's hold on its lease: renewed between steps when little of it is left, never assumed."""

    def __init__(self, store: Store, lease: Lease, duration: int, clock: Callable[[], int]) -> None:
        self.store, self.lease, self.duration, self.clock = store, lease, duration, clock
        self.lost = False

    def hold(self) -> None:
        """Before a step: renew the lease if the step could outlast it; LeaseLost if it is not ours."""
        now = self.clock()
        if self.lease.expires_at - now > LEASE_MARGIN:
            return  # judged by the lease's own expiry, not by how long this run thinks it has taken
        renewed = self.store.leases.renew(self.lease, expires_at=now + self.duration)
        if renewed is None:
            self.lost = True
            raise LeaseLost(self.lease.owner)
        self.lease = renewed

    def release(self) -> None:
        """Free the lease for the next run. If the database refuses now, the lease just expires."""
        if self.lost:
            return
        try:
            released = self.store.leases.release(self.lease)
        except Unavailable:
            log.warning("could not release the keeper's lease; it expires at %s", self.lease.expires_at)
            return
        if not released:
            log.warning("the keeper's lease had passed to another run before this one released it")


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

    def keep(self, seconds_left: float | None = None) -> dict[str, int]:
        """The scheduled run: ``tick`` under the keeper's lease, so that two runs at once (one slower
        than the schedule's minute, an asynchronous retry) never both refill the same pool. A run that
        cannot take the lease returns at once and changes nothing.

        The lease lasts the run's own time (``seconds_left``: the Lambda's remaining time) plus a
        margin, so a run stopped at its timeout leaves a lease that the next minute's run can take."""
        duration = math.ceil(seconds_left if seconds_left is not None else RUN_SECONDS) + LEASE_MARGIN
        now = self.clock()
        lease = self.store.leases.take(KEEPER_LEASE, secrets.token_hex(8), now=now, expires_at=now + duration)
        if lease is None:
            held = self.store.leases.get(KEEPER_LEASE)
            log.info("another run holds the keeper's lease (until %s): skipped", held.expires_at if held else "-")
            return {"skipped": 1, "held_until": held.expires_at if held else 0}
        holder = LeaseHolder(self.store, lease, duration, self.clock)
        try:
            return self.tick(holder.hold)
        except LeaseLost:
            log.warning("the keeper's lease expired during this run and another run took it: stopped")
            return {"lease_lost": 1}
        finally:
            holder.release()

    def tick(self, between_steps: Callable[[], None] = lambda: None) -> dict[str, int]:
        """Reconcile what fell due, then bring every pool to its size (``keep`` runs it under a lease;
        ``between_steps`` is called before each step after the first).

        Its cost grows with the work to do, not with the fleet: one query for what fell due, one
        for the pools, one BatchGetItem per 100 pools that need servers, then a transaction and a
        RunTask per batch of 10 servers started (bench/scale.py measures it). Behind a proxy it also lists the
        proxy's routes and queries every live server (``ServerLifecycle.sync_routes``): that part grows with
        the fleet: one GET, and a Query page for every MB of live server items."""
        due = list(self.store.servers.due(self.clock()))
        self.servers.reconcile(due)
        between_steps()
        builds = self.builds.reconcile()
        between_steps()
        unbalanced = [p for p in self.store.environments.pools() if p.size != p.available + p.starting]
        short = [p.environment_name for p in unbalanced if p.size > p.available + p.starting]
        stagings = self.store.environments.get_stagings(short) if short else {}
        pools = 0
        for pool in unbalanced:
            between_steps()
            try:
                self._balance(pool, stagings.get(pool.environment_name), None)
                pools += 1
            except BinderError as error:
                log.warning("could not balance pool %s: %s", pool.environment_name, error.message)
        result = {"servers_checked": len(due), "builds_checked": builds, "pools_balanced": pools}
        if self.servers.router.proxied:
            between_steps()
            try:
                synced = self.servers.sync_routes()
                result |= {"routes_added": synced.added, "routes_deleted": synced.deleted,
                           "servers_culled": synced.culled}
            except BinderError as error:
                log.warning("could not reconcile the proxy's routes: %s", error.message)
        return result
