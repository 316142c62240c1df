"""Notebook servers: ``ENV#<env>`` / ``SERVER#<id>`` items, and the pool counters they move.

Every state change is one conditional write on the server (guarded by its current state and
claim) and, when the server moves between pool counters, the counter update in the same
transaction. So the counters are exact and no server is ever handed out twice.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from chalicelib.backends.base import handle_id
from chalicelib.models import LIVE_STATES, SERVER_TRANSITIONS, Server, ServerState, Staging, check_transition
from chalicelib.store.counters import Counted, Quotas, RateLimit, quota_error, rate_updates, server_counts
from chalicelib.store.dynamo import ConditionFailed, Dynamo, assignments, serialize, values
from chalicelib.store.environments import STAGING, env_pk
from chalicelib.store.turns import TURNS, Turn

DUE_SERVER = "DUE#SERVER"
CLAIM_CANDIDATES = 10
CLAIM_ROUNDS = 5

NO_QUOTAS = Quotas()
TRANSACTION_ITEMS = 100  # DynamoDB's limit on the actions of one TransactWriteItems




@dataclass(frozen=True)
class Claim:
    """What a launch's first query found: a server handed out, and the environment's staging
    when it is launchable (so a cold start needs no second read)."""

    server: Server | None
    staging: Staging | None


def due_key(epoch: int) -> str:
    return f"{epoch:012d}"


def _key(server: Server) -> tuple[str, str]:
    return env_pk(server.environment_name), f"SERVER#{server.id}"


FIELD_INDEXES = ("launch", "task_id", "route")  # of _index_attributes: from the server's fields, not its state


def _index_attributes(server: Server, due_at: int | None, expires_at: int | None) -> dict[str, Any]:
    """The sparse index attributes that follow from a server's state (None = absent)."""
    return {
        "avail_env": server.environment_name if server.state is ServerState.available else None,
        "launch": server.launch or None,  # the by-launch index: an empty string cannot be a key
        "task_id": handle_id(server.handle) or None,  # present once the task is recorded
        "route": server.route or None,  # the by-route index (the gone page): once routed through a proxy
        "kind_pk": DUE_SERVER if due_at is not None else None,
        "kind_sk": due_key(due_at) if due_at is not None else None,
        "expires_at": expires_at,
    }


def _from_item(item: dict[str, Any]) -> Server:
    return Server.model_validate(item)


def _untried(items: list[dict[str, Any]], tried: Sequence[Server]) -> list[dict[str, Any]]:
    """A claim query's items less the servers tried: [] when no server is left (nothing to hand on)."""
    gone = {_key(server)[1] for server in tried}
    left = [item for item in items if item["sk"] not in gone]
    return left if any(item["sk"] != STAGING for item in left) else []


class ServerStore:
    def __init__(self, dynamo: Dynamo) -> None:
        self.db = dynamo

    def get(self, environment_name: str, server_id: str) -> Server | None:
        item = self.db.get(env_pk(environment_name), f"SERVER#{server_id}")
        return _from_item(item) if item else None

    def live(self, environment_name: str) -> Iterator[Server]:
        """Servers of an environment that have not ended."""
        for item in self.db.query("pk = :pk AND begins_with(sk, :server)",
                                  values(pk=env_pk(environment_name), server="SERVER#")):
            server = _from_item(item)
            if server.state in LIVE_STATES:
                yield server

    def of_launch(self, launch: str) -> list[Server]:
        """The servers one platform call started (at most a batch): an event finds its server here."""
        return [_from_item(item) for item in self.db.query("launch = :launch", values(launch=launch),
                                                           index="by-launch")]

    def of_route(self, route: str) -> Server | None:
        """The server a proxy route (``/user/<name>/``) was for, live or ended (until it expires)."""
        for item in self.db.query("route = :route", values(route=route), index="by-route", limit=1):
            return _from_item(item)
        return None

    def scheduled(self) -> Iterator[Server]:
        """Every live server: each has its next check scheduled (ended ones have none)."""
        for item in self.db.query("kind_pk = :due", values(due=DUE_SERVER), index="by-kind"):
            yield _from_item(item)

    def due(self, now: int) -> Iterator[Server]:
        """Servers whose next check has fallen due: slow starts, lost events, lifetimes."""
        for item in self.db.query("kind_pk = :due AND kind_sk <= :now", values(due=DUE_SERVER, now=due_key(now)),
                                  index="by-kind"):
            yield _from_item(item)

    def create(self, servers: Sequence[Server], *, due_at: int, quotas: Quotas = NO_QUOTAS,
               rates: Sequence[RateLimit] = ()) -> None:
        """Save new servers and count them, all or nothing; QuotaExceeded if a limit stops them."""
        actions: list[dict[str, Any]] = []
        buckets: dict[str, int] = {}
        for server in servers:
            pk, sk = _key(server)
            item = {"pk": pk, "sk": sk, **server.model_dump(mode="json"), **_index_attributes(server, due_at, None)}
            actions.append({"Put": {"TableName": self.db.table_name, "Item": serialize(item),
                                    "ConditionExpression": "attribute_not_exists(pk)"}})
            if server.counter:
                buckets[server.counter] = buckets.get(server.counter, 0) + 1
        first = servers[0]
        held = Counter(server.client for server in servers if server.client)
        counted = [*rate_updates(self.db, rates),
                   *server_counts(self.db, first.environment_name, first.source, buckets, len(servers), quotas,
                                  held=held, stop_at=first.stop_at)]
        self._transact(actions, counted)

    def transition(self, server: Server, to: ServerState, *, due_at: int | None = None,
                   expires_at: int | None = None, rates: Sequence[RateLimit] = (), unbound: bool = False,
                   quotas: Quotas = NO_QUOTAS, **fields: Any) -> Server:
        """Move ``server`` to state ``to`` if nobody moved it first (else ConditionFailed).

        ``unbound``: also only if no task is recorded on it yet (binding a task to its server).
        ``quotas``: the limits on the counters this move raises (a claim raises its client's)."""
        update = self._update(server, to, due_at, expires_at, unbound, fields)
        after = server.model_copy(update={"state": to, **fields})
        buckets = self._buckets(server, after)
        live = int(after.state in LIVE_STATES) - int(server.state in LIVE_STATES)
        held = self._held(server, after)
        counted = [*rate_updates(self.db, rates),
                   *server_counts(self.db, server.environment_name, server.source, buckets, live, quotas, held=held,
                                  stop_at=after.stop_at)] if buckets or live or held or rates else []
        self._transact([{"Update": update}], counted)
        return after

    def reschedule(self, servers: Sequence[tuple[Server, int]]) -> int:
        """Move the next check of servers whose state stays as it is: up to 100 in one transaction.

        Each update is conditional on the server being unchanged; a chunk that meets a changed
        server is written one by one instead, skipping the changed ones. How many moved."""
        moved = 0
        for start in range(0, len(servers), TRANSACTION_ITEMS):
            chunk = servers[start:start + TRANSACTION_ITEMS]
            updates = [self._update(server, server.state, due_at, None, False, {}) for server, due_at in chunk]
            if len(updates) > 1:
                try:
                    self.db.transact([{"Update": update} for update in updates])
                    moved += len(updates)
                    continue
                except ConditionFailed:
                    pass
            for update in updates:
                try:
                    self.db.call("update_item", **update)
                    moved += 1
                except ConditionFailed:
                    continue  # it changed meanwhile; whoever changed it set its next check
        return moved

    def _update(self, server: Server, to: ServerState, due_at: int | None, expires_at: int | None,
                unbound: bool, fields: dict[str, Any]) -> dict[str, Any]:
        """The conditional UpdateItem arguments of one transition."""
        check_transition("server", server.state, to, SERVER_TRANSITIONS)
        after = server.model_copy(update={"state": to, **fields})
        changes = {k: v for k, v in after.model_dump(mode="json").items()
                   if k in fields or k == "state"}
        was = _index_attributes(server, None, None)
        # Those that follow from the fields alone are written when they change: a claim (the hot
        # path) does not rewrite the launch and task the server already has.
        indexed = {k: v for k, v in _index_attributes(after, due_at, expires_at).items()
                   if k not in FIELD_INDEXES or v != was[k]}
        sets, names, vals = assignments(changes | {k: v for k, v in indexed.items() if v is not None})
        removed = [k for k, v in indexed.items() if v is None]
        expression = f"SET {sets}" + (f" REMOVE {', '.join(removed)}" if removed else "")
        condition = "#was = :was AND #claimed_was = :claimed_was"
        if unbound:
            condition += " AND attribute_not_exists(task_id)"
        return self.db.update_args(
            *_key(server), expression, condition=condition,
            names=names | {"#was": "state", "#claimed_was": "claimed"},
            vals=vals | values(was=server.state.value, claimed_was=server.claimed),
        )

    def claim(self, environment_name: str, *, now: int, stop_at: int, rates: Sequence[RateLimit] = (),
              client: str = "", quotas: Quotas = NO_QUOTAS) -> Claim:
        """Hand out one available server: a query, then one conditional transaction per try.

        An anonymous ``client`` holds the server from the claim on, within ``quotas.per_client``.

        The ``available`` index holds an environment's available servers and, once it is
        launchable, its staging (the oldest item, so it comes first): the same query tells a cold
        start what to start. Concurrent claimers see the same first items, so each tries a few of
        them in random order; only when every candidate of a round was taken does it ask again."""
        with TURNS.of(environment_name) as turn:  # turns.py: within one process, claims queue and share queries
            return self._claim(environment_name, turn, now=now, stop_at=stop_at, rates=rates, client=client,
                               quotas=quotas)

    def _claim(self, environment_name: str, turn: Turn, *, now: int, stop_at: int, rates: Sequence[RateLimit],
               client: str, quotas: Quotas) -> Claim:
        staging = None
        handed_out: dict[str, Any] = {"claimed": True, "claimed_at": now, "stop_at": stop_at,
                                      **({"client": client} if client else {})}
        handed_on = turn.handed_on()
        for _ in range(CLAIM_ROUNDS):
            queried = not handed_on
            items = handed_on or list(self.db.query("avail_env = :env", values(env=environment_name),
                                                    index="available", limit=CLAIM_CANDIDATES + 1))
            handed_on = []
            candidates = [_from_item(item) for item in items if item["sk"] != STAGING]
            staging = next((Staging.model_validate(item) for item in items if item["sk"] == STAGING), staging)
            random.shuffle(candidates)
            for tried, server in enumerate(candidates):
                try:
                    claimed = self.transition(server, ServerState.running, due_at=stop_at, rates=rates,
                                              quotas=quotas, **handed_out)
                except ConditionFailed:
                    continue  # somebody else claimed it (or the index lagged the table): try the next one
                turn.hand_on(_untried(items, candidates[:tried + 1]))
                return Claim(claimed, staging)
            if queried and len(items) <= CLAIM_CANDIDATES:
                break  # the pool had no more than these, and all are gone
        turn.hand_on([])
        return Claim(None, staging)

    def _transact(self, actions: list[dict[str, Any]], counted: Sequence[Counted]) -> None:
        """Write ``actions`` with the counter updates; a refused counter becomes QuotaExceeded."""
        if not counted and len(actions) == 1 and "Update" in actions[0]:
            self.db.call("update_item", **actions[0]["Update"])
            return
        try:
            self.db.transact([*actions, *(c.action for c in counted)])
        except ConditionFailed as failure:
            refused = quota_error(list(counted), failure.failed, offset=len(actions))
            if refused:
                raise refused from None
            raise

    def idle(self, environment_name: str) -> list[Server]:
        """Unclaimed servers of a pool, the ones still starting first (they cost least to lose)."""
        servers = [s for s in self.live(environment_name)
                   if not s.claimed and s.state in (ServerState.starting, ServerState.available)]
        return sorted(servers, key=lambda s: (s.state is ServerState.available, -s.created_at))

    @staticmethod
    def _held(before: Server, after: Server) -> dict[str, int]:
        """Anonymous client -> change in the live servers it holds: a client holds its live servers."""
        held: Counter[str] = Counter()
        if before.client and before.state in LIVE_STATES:
            held[before.client] -= 1
        if after.client and after.state in LIVE_STATES:
            held[after.client] += 1
        return {client: delta for client, delta in held.items() if delta}

    @staticmethod
    def _buckets(before: Server, after: Server) -> dict[str, int]:
        if before.counter == after.counter:
            return {}
        deltas = {}
        if before.counter:
            deltas[before.counter] = -1
        if after.counter:
            deltas[after.counter] = 1
        return deltas
