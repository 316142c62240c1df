"""The life of a notebook server, shared by deployments, pools and the schedule.

The item is always written before the task is started, so a crash between the two leaves
a ``starting`` server without a handle that the schedule fails after ``starting_timeout``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Callable, Sequence

from chalicelib.backends.base import Spawner, TaskState
from chalicelib.config import Settings
from chalicelib.errors import BinderError
from chalicelib.models import LIVE_STATES, Server, ServerState, Staging
from chalicelib.store import ConditionFailed, Store
from chalicelib.store.counters import Counted, Quotas

log = logging.getLogger(__name__)


def new_server_id() -> str:
    """128 random bits: an id is as good as a password for GET /deployments/{env}/{id}."""
    return secrets.token_hex(16)


class ServerLifecycle:
    def __init__(self, settings: Settings, store: Store, spawner: Spawner, clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.spawner = spawner
        self.clock = clock

    def launch(self, staging: Staging, count: int, *, claimed: bool, extra: Sequence[Counted] = ()) -> list[Server]:
        """Start ``count`` servers (at most one platform batch); claimed ones are handed out already.

        Raises QuotaExceeded, before anything starts, if they would pass a limit."""
        now, launch = self.clock(), secrets.token_hex(8)
        servers = [self._new(staging, now, claimed, launch) for _ in range(count)]
        self.store.servers.create(servers, due_at=now + self.settings.check_interval, quotas=self.quotas,
                                  extra=extra)
        try:
            results = self.spawner.start(staging.handle, [s.id for s in servers], launch)
        except BinderError as error:
            for server in servers:
                self._end(server, ServerState.failed, f"could not start: {error.message}")
            raise
        started = []
        for server, result in zip(servers, results, strict=True):
            if result.failure:
                started.append(self._end(server, ServerState.failed, f"could not start: {result.failure}"))
                continue
            try:
                started.append(self.store.servers.transition(
                    server, ServerState.starting, due_at=now + self.settings.check_interval,
                    token=result.token, handle=result.handle))
            except ConditionFailed:
                # Deleted while RunTask was in flight: nobody owns this task now, so stop it.
                self.spawner.stop(result.handle, "deleted while starting")
                started.append(self.store.servers.get(server.environment_name, server.id) or server)
        return started

    def _new(self, staging: Staging, now: int, claimed: bool, launch: str) -> Server:
        stop_at = now + self.settings.server_max_lifetime if claimed else 0
        return Server(environment_name=staging.environment_name, id=new_server_id(), state=ServerState.starting,
                      claimed=claimed, source=staging.source, launch=launch, created_at=now,
                      claimed_at=now if claimed else 0, stop_at=stop_at)

    @property
    def quotas(self) -> Quotas:
        s = self.settings
        return Quotas(servers=s.max_servers, per_environment=s.max_servers_per_environment,
                      per_repository=s.max_servers_per_repository)

    def stop(self, server: Server, reason: str) -> Server:
        """Ask the platform to stop a live server; the stop event (or the schedule) ends it."""
        if server.state not in LIVE_STATES:
            return server
        if not server.handle:
            return self._end(server, ServerState.stopped, reason)
        stopping = server
        if server.state is not ServerState.stopping:
            stopping = self.store.servers.transition(server, ServerState.stopping, reason=reason,
                                                     due_at=self.clock() + self.settings.check_interval)
        self.spawner.stop(server.handle, reason)
        return stopping

    def apply(self, server: Server, task: TaskState) -> Server:
        """Bring a stored server in line with what the platform reports about its task."""
        now = self.clock()
        if task.status == "running" and server.state is ServerState.starting:
            to = ServerState.running if server.claimed else ServerState.available
            return self.store.servers.transition(server, to, url=task.url, due_at=self._next_check(server, to, now))
        if task.status == "stopped" and server.state in LIVE_STATES:
            ended = ServerState.failed if server.state is ServerState.starting else ServerState.stopped
            return self._end(server, ended, server.reason or task.reason or "the server stopped")
        return server

    def apply_event(self, task: TaskState) -> Server | None:
        """An event names a task; events repeat and arrive out of order, so apply them idempotently."""
        arn = task.handle.get("task_arn", "")
        server = self.store.servers.by_task(arn) if arn else None
        if server is None:
            return None
        try:
            return self.apply(server, task)
        except ConditionFailed:
            fresh = self.store.servers.get(server.environment_name, server.id)  # the index lagged
            return self.apply(fresh, task) if fresh else None

    def reconcile(self, servers: Sequence[Server]) -> None:
        """Check servers whose deadline passed: lost events, slow starts, lifetimes, stuck stops."""
        now = self.clock()
        with_task = [s for s in servers if s.handle]
        tasks = self.spawner.describe([s.handle for s in with_task]) if with_task else []
        for server, task in zip(with_task, tasks, strict=True):
            try:
                self._reconcile_one(server, task, now)
            except ConditionFailed:
                log.info("server %s changed while reconciling; next run will look again", server.id)
        self._fail_lost_launches([s for s in servers if not s.handle], now)

    def _fail_lost_launches(self, servers: Sequence[Server], now: int) -> None:
        """Servers whose task was never recorded (the function died around RunTask): stop whatever
        that launch started, so no task runs unowned, then end the servers."""
        lost = [s for s in servers if s.created_at + self.settings.starting_timeout <= now]
        for launch in sorted({s.launch for s in lost if s.launch}):
            try:
                self.spawner.stop_launch(launch, "its server was lost while starting")
            except BinderError as error:
                log.warning("could not stop launch %s: %s", launch, error.message)
                lost = [s for s in lost if s.launch != launch]  # try again at the next run
        for server in lost:
            try:
                self._end(server, ServerState.failed, "the server was lost while starting; launch a new one")
            except ConditionFailed:
                continue

    def _reconcile_one(self, server: Server, task: TaskState, now: int) -> None:
        server = self.apply(server, task)
        if server.state not in LIVE_STATES:
            return
        if server.claimed and server.stop_at and server.stop_at <= now:
            self.stop(server, "maximum lifetime reached")
        elif server.state is ServerState.starting and server.created_at + self.settings.starting_timeout <= now:
            self.stop(server, f"did not start within {self.settings.starting_timeout} seconds")
        else:
            if server.state is ServerState.stopping:
                self.spawner.stop(server.handle, server.reason or "stopping")
            self.store.servers.transition(server, server.state, due_at=self._next_check(server, server.state, now))

    def _next_check(self, server: Server, state: ServerState, now: int) -> int:
        """When to look again at a live server in ``state`` if no event comes first."""
        if state is not ServerState.running:
            return now + self.settings.check_interval
        # A handed-out server: events say when it stops; look again only at its lifetime's end,
        # or sooner where the operator (or local mode, which has no events) asks for it.
        every = self.settings.running_check_interval
        return min(server.stop_at, now + every) if every else server.stop_at

    def _end(self, server: Server, state: ServerState, reason: str) -> Server:
        return self.store.servers.transition(server, state, reason=reason,
                                             expires_at=self.clock() + self.settings.stopped_retention)
