"""The life of a notebook server, shared by deployments, pools and the schedule.

The item is always written before the task is started, so a crash between the two leaves a
``starting`` server whose task the schedule finds by its launch (or fails after
``starting_timeout``). Where the platform's events name the launch, the task is recorded on its
server by the first event about it, not by a write after starting it (``apply_event``).
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from chalicelib.backends.base import Launched, Router, Spawner, TaskState, handle_id
from chalicelib.config import Settings
from chalicelib.errors import BinderError, Unavailable
from chalicelib.models import LIVE_STATES, Server, ServerState, Staging
from chalicelib.store import ConditionFailed, Store
from chalicelib.store.counters import Quotas, RateLimit

log = logging.getLogger(__name__)
RECORD_TRIES = 5
# A route's activity within this many seconds of its adding (or of the claim) is the adding itself (the
# proxy counts it) or a client's first look: "opened" means a request after that.
OPENED_AFTER = 1
# A route younger than this is not taken for stale: it is added before its server is saved as reachable, so
# a tick may list it before that write. Routes of servers that end are deleted as they end; this is the net.
ROUTE_GRACE = 60


@dataclass(frozen=True)
class RouteSync:
    """What one reconcile of the proxy's routes did."""

    added: int = 0
    deleted: int = 0
    culled: int = 0


def new_server_id() -> str:
    """128 random bits: an id is as good as a password for GET /deployments/{env}/{id}."""
    return secrets.token_hex(16)


def _pick(servers: Sequence[Server], task: TaskState) -> Server:
    """The unrecorded server a task goes to: spread by task id, so that the events of sibling
    tasks arriving together mostly pick different servers."""
    ordered = sorted(servers, key=lambda s: s.id)
    digest = hashlib.sha256(handle_id(task.handle).encode()).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


class ServerLifecycle:
    def __init__(self, settings: Settings, store: Store, spawner: Spawner, clock: Callable[[], int],
                 router: Router | None = None) -> None:
        from chalicelib.backends.routers import DirectRouter

        self.settings = settings
        self.store = store
        self.spawner = spawner
        self.clock = clock
        self.router: Router = router or DirectRouter()

    def launch(self, staging: Staging, count: int, *, claimed: bool, rates: Sequence[RateLimit] = (),
               client: str = "") -> list[Server]:
        """Start ``count`` servers (at most one platform batch); claimed ones are handed out already,
        to ``client`` when an anonymous caller asked (they count against its limit).

        Raises QuotaExceeded, before anything starts, if they would pass a limit. The servers
        returned carry their task's handle and token as the platform gave them."""
        now, launch, key = self.clock(), secrets.token_hex(8), secrets.token_hex(24)
        servers = [self._new(staging, now, claimed, launch, key, solo=count == 1, client=client)
                   for _ in range(count)]
        self.store.servers.create(servers, due_at=now + self.settings.check_interval, quotas=self.quotas,
                                  rates=rates)
        try:
            results = self.spawner.start(staging.handle, [s.id for s in servers], launch, key)
        except BinderError as error:
            # Whatever RunTask may have started anyway is stopped when its first event finds no live server.
            for server in servers:
                self._end(server, ServerState.failed, f"could not start: {error.message}")
            raise
        if not self.spawner.records_from_events:
            return [self._record(server, result, now) for server, result in zip(servers, results, strict=True)]
        started = [s.model_copy(update={"token": r.token, "handle": r.handle, "launch_key": ""})
                   for s, r in zip(servers, results, strict=True) if not r.failure]
        refused = [r.failure for r in results if r.failure]
        if refused:  # RunTask puts its failures last: fail that many servers, those first
            return started + self._fail_unstarted(servers, len(refused), f"could not start: {refused[0]}")
        return started

    def _record(self, server: Server, result: Launched, now: int) -> Server:
        """Save what ``start`` returned, for a platform whose events will not."""
        if result.failure:
            return self._end(server, ServerState.failed, f"could not start: {result.failure}")
        try:
            return self.store.servers.transition(server, ServerState.starting, token=result.token, handle=result.handle,
                                                 launch_key="", due_at=now + self.settings.check_interval)
        except ConditionFailed:
            # Deleted while starting: nobody owns this server now, so stop it.
            self.spawner.stop(result.handle, "deleted while starting")
            return self.store.servers.get(server.environment_name, server.id) or server

    def _fail_unstarted(self, servers: Sequence[Server], count: int, reason: str) -> list[Server]:
        """The platform started ``count`` fewer servers than asked: end that many that no task was
        recorded on (an event may already have recorded one on any of them)."""
        failed: list[Server] = []
        for server in reversed(servers):
            if len(failed) == count:
                break
            try:
                failed.append(self._end(server, ServerState.failed, reason, unbound=True))
            except ConditionFailed:
                continue
        return failed

    def _new(self, staging: Staging, now: int, claimed: bool, launch: str, key: str, *, solo: bool,
             client: str = "") -> Server:
        """A server to save before starting it: alone, its token is the launch key; in a batch, its
        token is derived from the key and its task, once known."""
        stop_at = now + self.settings.server_max_lifetime if claimed else 0
        return Server(environment_name=staging.environment_name, id=new_server_id(), state=ServerState.starting,
                      claimed=claimed, source=staging.source, client=client if claimed else "", launch=launch,
                      created_at=now,
                      claimed_at=now if claimed else 0, stop_at=stop_at,
                      token=key if solo else "", launch_key="" if solo else key)

    @property
    def quotas(self) -> Quotas:
        s = self.settings
        return Quotas(servers=s.max_servers, per_environment=s.max_servers_per_environment,
                      per_repository=s.max_servers_per_repository, per_client=s.max_servers_per_client)

    def stop(self, server: Server, reason: str) -> Server:
        """Ask the platform to stop a live server; the stop event (or the schedule) ends it.

        A server whose task is not recorded yet goes to ``stopping`` too: the event that records
        its task stops it (or the schedule, finding no task, ends it). ``server`` may be stale: an
        event that moved it meanwhile (it answered, it was recorded) costs a read and another try."""
        for _ in range(RECORD_TRIES):
            try:
                return self._stop(server, reason)
            except ConditionFailed:
                fresh = self.store.servers.get(server.environment_name, server.id)
                if fresh is None:
                    return server
                server = fresh
        raise Unavailable(f"Server '{server.id}' is changing too often to stop right now; try again.",
                          headers={"Retry-After": "1"})

    def _stop(self, server: Server, reason: str) -> Server:
        if server.state not in LIVE_STATES:
            return server
        if not server.handle and not server.launch:
            return self._end(server, ServerState.stopped, reason)
        stopping = server
        if server.state is not ServerState.stopping:
            stopping = self.store.servers.transition(server, ServerState.stopping, reason=reason,
                                                     due_at=self.clock() + self.settings.check_interval)
            self._unroute(stopping)  # its URL answers the gone page at once
        if server.handle:
            self.spawner.stop(server.handle, reason)
        return stopping

    def refresh(self, server: Server) -> Server:
        """A handed-out server still starting, asked about by its user: ask the platform now.

        ECS sends no event when a container turns HEALTHY (the RUNNING event comes before jupyter
        answers), so waiting for events and the schedule would cost a cold launch a minute or more.
        One DescribeTasks per poll of a starting server; if it fails, the stored state stands."""
        if server.state is not ServerState.starting or not server.claimed or not server.handle:
            return server
        try:
            task, = self.spawner.describe([server.handle])
            return self.apply(server, task)
        except BinderError as error:
            log.info("could not refresh server %s: %s", server.id, error.message)
            return server
        except ConditionFailed:  # an event or the schedule moved it meanwhile
            return self.store.servers.get(server.environment_name, server.id) or server

    def apply(self, server: Server, task: TaskState, *, record: bool = False) -> Server:
        """Bring a stored server in line with what the platform reports about its task.

        ``record``: the task is not on the server yet; save it (and its token) in the same write."""
        now = self.clock()
        fields: dict[str, Any] = {}
        if record:
            token = server.token or self.spawner.token_for(server.launch_key, task.handle)
            fields = {"handle": task.handle, "token": token, "launch_key": "", "unbound": True}
        if task.status == "running" and server.state is ServerState.starting:
            to = ServerState.running if server.claimed else ServerState.available
            try:
                where = self._route(server, task.url, now)
            except (BinderError, ValueError) as error:
                # Unreachable through the proxy yet: it stays starting; the next event, poll or tick tries again.
                log.warning("could not route server %s: %s", server.id, getattr(error, "message", error))
                return server
            return self.store.servers.transition(server, to, due_at=self._next_check(server, to, now),
                                                 **where, **fields)
        if task.status == "stopped" and server.state in LIVE_STATES:
            ended = ServerState.failed if server.state is ServerState.starting else ServerState.stopped
            return self._end(server, ended, server.reason or task.reason or "the server stopped", **fields)
        if server.state not in LIVE_STATES and task.status != "stopped":
            # Ended here while its task runs on (say RunTask failed for us but started it): stop it.
            self.spawner.stop(task.handle, server.reason or "its server has ended")
            return server
        if not record:
            return server
        due_at = self._next_check(server, server.state, now)
        recorded = self.store.servers.transition(server, server.state, due_at=due_at, **fields)
        if recorded.state is ServerState.stopping:  # deleted before its task was known
            self.spawner.stop(task.handle, recorded.reason or "stopping")
        return recorded

    def apply_event(self, task: TaskState) -> Server | None:
        """An event names a task and its launch; events repeat and arrive out of order, so apply
        them idempotently. The first one about a task records it on a server of its launch."""
        return self._apply_event(task)[0]

    def take_event(self, task: TaskState) -> bool:
        """``apply_event`` for a spawner that tells of its own servers and tells again until one is
        taken (local mode). False only while a server of the launch is starting with no handle yet:
        its start has not saved the handle this event is about. An event about a server that ended
        before its handle was saved (its pool deleted as it started) is taken: nobody will save it."""
        server, unsaved = self._apply_event(task)
        return server is not None or not unsaved

    def _apply_event(self, task: TaskState) -> tuple[Server | None, bool]:
        """The server the event moved (or None), and whether a server of its launch awaits its handle."""
        if not task.launch:
            return None, False  # not started by this version of binderless
        task_id = handle_id(task.handle)
        servers = self.store.servers.of_launch(task.launch)
        server = next((s for s in servers if handle_id(s.handle) == task_id), None)
        if server:
            try:
                return self.apply(server, task), False
            except ConditionFailed:
                fresh = self.store.servers.get(server.environment_name, server.id)  # the index lagged
                return (self.apply(fresh, task) if fresh else None), False
        if not self.spawner.records_from_events:
            return None, any(s.state is ServerState.starting and not s.handle for s in servers)
        unrecorded = [s for s in servers if not s.handle and s.state in LIVE_STATES]
        for _ in range(RECORD_TRIES):
            if not unrecorded:
                break
            candidate = _pick(unrecorded, task)
            try:
                return self.apply(candidate, task, record=True), False
            except ConditionFailed:
                # A sibling's event recorded it, this event came twice, or the server was deleted.
                unrecorded.remove(candidate)
                fresh = self.store.servers.get(candidate.environment_name, candidate.id)
                if fresh and handle_id(fresh.handle) == task_id:
                    return self.apply(fresh, task), False
                if fresh and not fresh.handle and fresh.state in LIVE_STATES:
                    unrecorded.append(fresh)
        if servers and not any(s.state in LIVE_STATES for s in servers) and task.status != "stopped":
            # Every server of its launch ended before the task was known: nobody owns it.
            self.spawner.stop(task.handle, "its server ended before it started")
        elif task.status != "stopped":
            # Its server is not in the index yet (it lags a moment): a later event, or the schedule, records it.
            log.info("no server of launch %s to record task %s on yet", task.launch, task_id)
        return None, False

    def reconcile(self, servers: Sequence[Server]) -> None:
        """Check servers whose deadline passed: lost events, slow starts, lifetimes, stuck stops."""
        now = self.clock()
        with_task = [s for s in servers if s.handle]
        tasks = self.spawner.describe([s.handle for s in with_task]) if with_task else []
        unchanged: list[tuple[Server, int]] = []
        for server, task in zip(with_task, tasks, strict=True):
            try:
                later = self._reconcile_one(server, task, now)
            except ConditionFailed:
                log.info("server %s changed while reconciling; next run will look again", server.id)
                continue
            if later:
                unchanged.append((server, later))
        self.store.servers.reschedule(unchanged)
        self._find_unrecorded([s for s in servers if not s.handle], now)

    def _find_unrecorded(self, servers: Sequence[Server], now: int) -> None:
        """Due servers with no task recorded: their events were lost, or the function died around
        RunTask. Ask the platform what each launch started, record it as its events would have,
        and end what never started."""
        unreachable = set()
        # A platform whose starts are recorded by the launch itself binds each process to its server
        # (local mode: its own URL path and token): another server's process must never be recorded
        # here; one without a handle is still being started, or ends below once it is too old.
        launches = {s.launch for s in servers if s.launch} if self.spawner.records_from_events else set()
        for launch in sorted(launches):
            try:
                handles = self.spawner.tasks_of(launch)
                tasks = self.spawner.describe(handles) if handles else []
            except BinderError as error:
                log.warning("could not list the tasks of launch %s: %s", launch, error.message)
                unreachable.add(launch)  # try again at the next run
                continue
            for task in tasks:
                try:
                    recorded = self.apply_event(replace(task, launch=launch))
                    if recorded:
                        self._enforce_deadlines(recorded, now)
                except (ConditionFailed, BinderError):
                    log.info("could not record a task of launch %s; next run will look again", launch)
        for server in servers:
            if server.launch not in unreachable:
                self._end_if_never_started(server, now)

    def _end_if_never_started(self, server: Server, now: int) -> None:
        fresh = self.store.servers.get(server.environment_name, server.id)
        if fresh is None or fresh.handle or fresh.state not in LIVE_STATES:
            return
        try:
            if fresh.state is ServerState.stopping:
                self._end(fresh, ServerState.stopped, fresh.reason or "stopped before it started")
            elif fresh.created_at + self.settings.starting_timeout <= now:
                self._end(fresh, ServerState.failed, "the server was lost while starting; launch a new one")
            else:
                self.store.servers.reschedule([(fresh, now + self.settings.check_interval)])
        except ConditionFailed:
            return

    def _reconcile_one(self, server: Server, task: TaskState, now: int) -> int:
        """Act on one due server; the time of its next check when nothing was written (else 0)."""
        after = self.apply(server, task)
        if self._enforce_deadlines(after, now) or after is not server:
            return 0  # stopped, or apply saved it with its next check
        if after.state is ServerState.stopping:
            self.spawner.stop(after.handle, after.reason or "stopping")
        return self._next_check(after, after.state, now)

    def _enforce_deadlines(self, server: Server, now: int) -> bool:
        """Stop a server past its lifetime or its time to start; whether it has ended or now stops."""
        if server.state not in LIVE_STATES:
            return True
        if server.claimed and server.stop_at and server.stop_at <= now:
            self.stop(server, "maximum lifetime reached")
            return True
        if server.state is ServerState.starting and server.created_at + self.settings.starting_timeout <= now:
            self.stop(server, f"did not start within {self.settings.starting_timeout} seconds")
            return True
        return False

    def _next_check(self, server: Server, state: ServerState, now: int) -> int:
        """When to look again at a live server in ``state`` if no event comes first."""
        if state is ServerState.available:
            # A safety net for a lost stop event; spread, so a pool filled at once is not checked at once.
            every = self.settings.available_check_interval
            return now + every - random.randrange(every // 4 + 1)  # noqa: S311 (spreading, not a secret)
        if state is not ServerState.running:
            return now + self.settings.check_interval
        # A handed-out server: events say when it stops; look again only at its lifetime's end,
        # or sooner where the operator (or local mode, which has no events) asks for it.
        every = self.settings.running_check_interval
        return min(server.stop_at, now + every) if every else server.stop_at

    def _end(self, server: Server, state: ServerState, reason: str, **fields: Any) -> Server:
        now = self.clock()
        ended = self.store.servers.transition(server, state, reason=reason, ended_at=now,
                                              expires_at=now + self.settings.stopped_retention, **fields)
        if server.state is not ServerState.stopping:  # a stopping server lost its route as it began to stop
            self._unroute(ended)
        return ended

    # The proxy (the Router port). Routes follow the servers: added as a server becomes reachable (before
    # its location is saved, so a location never points at a missing route), deleted as it stops, and
    # reconciled on every tick (sync_routes), which heals a restarted proxy and a failed call.

    def _route(self, server: Server, url: str, now: int) -> dict[str, Any]:
        """Where a server that answers at ``url`` (its own URL) is reached: the fields to save with it."""
        if not self.router.proxied:
            return {"url": url}
        prefix, target = _split(url)
        self.router.add_route(prefix, target, {"environment": server.environment_name, "added": str(now)})
        return {"url": self.router.url_for(prefix, target), "target": url}

    def _unroute(self, server: Server) -> None:
        if not self.router.proxied or not server.route:
            return
        try:
            self.router.delete_route(server.route)
        except BinderError as error:
            log.warning("could not delete the route of server %s (the next tick will): %s", server.id, error.message)

    def sync_routes(self) -> RouteSync:
        """Make the proxy's routes those of the live, reachable servers, and stop handed-out servers that
        the proxy saw no request for: never opened within ``never_opened_timeout`` of being handed out, or
        idle for ``idle_timeout`` since their last request (jupyterhub-idle-culler's rule, from the proxy's
        ``last_activity``). One listing of the routes and one query of the live servers; a call per change.
        Raises errors.Unavailable when the proxy cannot be listed."""
        if not self.router.proxied:
            return RouteSync()
        routes = self.router.get_all_routes()  # first: a route listed belonged to a server live by then
        now = self.clock()
        live = {s.route: s for s in self.store.servers.scheduled()
                if s.route and s.state in (ServerState.available, ServerState.running)}
        added = deleted = culled = 0
        for prefix in routes.keys() - live.keys():
            data = routes[prefix].data
            if data.get("restored") != "1" and now - int(data.get("added") or 0) < ROUTE_GRACE:
                continue  # being routed: added, its server's move to available or running not written yet
            try:
                self.router.delete_route(prefix)
                deleted += 1
            except BinderError as error:
                log.warning("could not delete the stale route %s: %s", prefix, error.message)
        for prefix, server in live.items():
            if prefix not in routes:
                try:
                    self.router.add_route(prefix, _split(server.target)[1],
                                          {"environment": server.environment_name, "added": str(now), "restored": "1"})
                    added += 1
                except (BinderError, ValueError) as error:
                    log.warning("could not restore the route of server %s: %s", server.id,
                                getattr(error, "message", error))
            elif self._cull(server, routes[prefix].last_activity, routes[prefix].data, now):
                culled += 1
        return RouteSync(added, deleted, culled)

    def _cull(self, server: Server, last_activity: datetime | None, data: Mapping[str, str], now: int) -> bool:
        """Stop ``server`` if the proxy says nobody used it; whether it was stopped."""
        if server.state is not ServerState.running or last_activity is None:
            return False
        last = last_activity.timestamp()  # to the millisecond: the seconds of "added" and claimed_at are whole
        since = max(server.claimed_at, int(data.get("added") or 0))
        opened = data.get("restored") == "1" or last > since + OPENED_AFTER
        never, idle = self.settings.never_opened_timeout, self.settings.idle_timeout
        if not opened and never and now - since >= never:
            reason = f"not opened within {never} seconds of its launch"
        elif opened and idle and now - last >= idle:
            reason = f"no activity for {idle} seconds"
        else:
            return False
        try:
            self.stop(server, reason)
        except BinderError as error:
            log.warning("could not stop unused server %s: %s", server.id, error.message)
            return False
        return True



def _split(url: str) -> tuple[str, str]:
    """A server's own URL as the proxy's route prefix (its path) and target (its origin)."""
    parts = urlsplit(url)
    return parts.path or "/", f"{parts.scheme}://{parts.netloc}"
