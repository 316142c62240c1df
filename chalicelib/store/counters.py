"""Counters that move in the same transaction as the thing they count, and the quotas on them.

    ENV#<env>            POOL   available / starting / running (pool buckets), live (all servers)
    QUOTA#GLOBAL         QUOTA  servers, builds: live servers and running builds in this deployment
    QUOTA#REPO#<repo>    QUOTA  servers, builds: live servers and running builds of a repository
    QUOTA#CLIENT#<client> QUOTA servers: live servers handed out to one anonymous client
    RATE#<client>        <counter>#<window start>   launches, builds: anonymous ones from one client

A client is an anonymous caller's address (an IPv6 one by its /64); <repo> is the canonical
repository (``repository_urls.canonical_repository``). A key that would pass DynamoDB's limit
(a repository URL may be 2,048 characters by itself) is shortened by ``bounded_key``.

A limit is a condition on the counter's update, so it holds under any concurrency: the
transaction that would pass it is cancelled, and ``quota_error`` names the limit it hit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from chalicelib.errors import QuotaExceeded
from chalicelib.store.dynamo import Dynamo, values
from chalicelib.store.environments import env_pk

RETRY_AFTER = "60"
# A client's count outlives the lifetime of the last server it counted by this much (DynamoDB
# TTL): by then that server has ended, so the item at 0 can go and addresses do not pile up.
CLIENT_COUNT_RETENTION = 24 * 3600
# DynamoDB: "The minimum length of a partition key value is 1 byte. The maximum length is 2048
# bytes." The same holds for an index's partition key (the by-repository index's repository).
MAX_PARTITION_KEY_BYTES = 2048
DIGEST_MARK = "#SHA256#"


def bounded_key(key: str) -> str:
    """``key`` itself when DynamoDB takes it as a partition key, else its first 1,024 bytes and
    the SHA-256 of the whole (1,096 bytes at most).

    Only keys that could never be written change, so every stored counter keeps its item, and
    the same key always gives the same value. A key that fits cannot pass for a shortened one:
    the API refuses repository URLs with a #fragment, and addresses have no "#"."""
    data = key.encode()
    if len(data) <= MAX_PARTITION_KEY_BYTES:
        return key
    head = data[:MAX_PARTITION_KEY_BYTES // 2].decode(errors="ignore")  # never half a character
    return f"{head}{DIGEST_MARK}{hashlib.sha256(data).hexdigest()}"


def quota_key(scope: str) -> str:
    """The partition key of the QUOTA item of ``scope`` ("GLOBAL", "REPO#<repo>", "CLIENT#<client>")."""
    return bounded_key(f"QUOTA#{scope}")


@dataclass(frozen=True)
class Quotas:
    """The operator's limits; 0 means none."""

    servers: int = 0
    per_environment: int = 0
    per_repository: int = 0
    per_client: int = 0
    builds: int = 0
    builds_per_repository: int = 0


@dataclass(frozen=True)
class Counted:
    """One counter update of a transaction, and what to tell the client if its limit stops it."""

    action: dict[str, Any]
    refusal: str = ""
    retry_after: str = RETRY_AFTER
    headers: tuple[tuple[str, str], ...] = ()  # more for the refusal: a rate limit's figures


def pool_update(db: Dynamo, environment_name: str, buckets: dict[str, int], live: int, cap: int) -> Counted:
    deltas = {**buckets, **({"live": live} if live else {})}
    clause = ", ".join(f"#{k} :{k}" for k in deltas)
    condition, vals = "attribute_exists(pk)", values(**deltas)
    refusal = ""
    if live > 0 and cap:
        condition += " AND (attribute_not_exists(#live) OR #live <= :most)"
        vals |= values(most=cap - live)
        refusal = f"This environment already runs its limit of {cap} servers; try again in a few minutes."
    names = {f"#{k}": k for k in deltas} | ({"#live": "live"} if refusal else {})
    return Counted({"Update": db.update_args(env_pk(environment_name), "POOL", f"ADD {clause}",
                                             condition=condition, names=names, vals=vals)}, refusal)


def quota_update(db: Dynamo, scope: str, counter: str, delta: int, cap: int, refusal: str, *,
                 expires_at: int = 0) -> Counted:
    """ADD ``delta`` to ``counter`` of QUOTA#<scope>, refused if that would pass ``cap``.

    ``expires_at``: the item's TTL, moved on by an increase; a decrease only sets a missing one."""
    kwargs: dict[str, Any] = {"names": {"#n": counter}, "vals": values(d=delta)}
    expression = "ADD #n :d"
    if expires_at:
        expiry = ":expires" if delta > 0 else "if_not_exists(expires_at, :expires)"
        expression += f" SET expires_at = {expiry}"
        kwargs["vals"] |= values(expires=expires_at)
    if delta > 0 and cap:
        kwargs["condition"] = "attribute_not_exists(#n) OR #n <= :most"
        kwargs["vals"] |= values(most=cap - delta)
    else:
        refusal = ""
    return Counted({"Update": db.update_args(quota_key(scope), "QUOTA", expression, **kwargs)}, refusal)


def server_counts(db: Dynamo, environment_name: str, source: str, buckets: dict[str, int], live: int,
                  quotas: Quotas, *, held: Mapping[str, int] | None = None, stop_at: int = 0) -> list[Counted]:
    """The counter updates for servers entering (live > 0) or leaving (live < 0) an environment.

    ``held``: anonymous client -> how many servers it starts (> 0) or stops (< 0) holding;
    ``stop_at``: the end of those servers' lifetime."""
    counted = [pool_update(db, environment_name, buckets, live, quotas.per_environment)]
    if live:
        counted.append(quota_update(
            db, "GLOBAL", "servers", live, quotas.servers,
            f"This service runs its limit of {quotas.servers} servers; try again in a few minutes."))
        if source:
            counted.append(quota_update(
                db, f"REPO#{source}", "servers", live, quotas.per_repository,
                f"{source} already has its limit of {quotas.per_repository} servers; try again later."))
    for client, delta in (held or {}).items():
        counted.append(quota_update(
            db, f"CLIENT#{client}", "servers", delta, quotas.per_client,
            f"Your address already holds its limit of {quotas.per_client} servers. Stop one "
            "(DELETE /deployments/{env}/{id}), wait until one ends, or use an API token.",
            expires_at=stop_at + CLIENT_COUNT_RETENTION))
    return counted


def build_counts(db: Dynamo, repository: str, delta: int, quotas: Quotas) -> list[Counted]:
    """The counter updates for a build of ``repository`` starting (delta > 0) or ending (< 0)."""
    if not delta or not repository:
        return []
    cap = quotas.builds_per_repository
    return [
        quota_update(db, f"REPO#{repository}", "builds", delta, cap,
                     f"{repository} already has {cap} builds running; try again when they finish."),
        quota_update(db, "GLOBAL", "builds", delta, quotas.builds,
                     f"This service runs its limit of {quotas.builds} builds at once; try again in a few minutes."),
    ]


@dataclass(frozen=True)
class RateLimit:
    """What a service asks of the store: count one ``counter`` (launches, builds) from an anonymous
    ``client`` in the same write as the launch or build, refused past ``limit`` in a ``window``."""

    client: str
    now: int
    window: int
    limit: int
    counter: str = "launches"


def rate_update(db: Dynamo, rate: RateLimit) -> Counted:
    """The counter update a ``RateLimit`` is, as one action of a transaction."""
    client, now, window, limit, counter = rate.client, rate.now, rate.window, rate.limit, rate.counter
    start = now - now % window
    return Counted({"Update": db.update_args(
        bounded_key(f"RATE#{client}"), f"{counter}#{start}", "ADD #n :one SET expires_at = :expires",
        condition="attribute_not_exists(#n) OR #n < :limit", names={"#n": counter},
        vals=values(one=1, expires=start + 2 * window, limit=limit))},
        f"Too many {counter} from your address: at most {limit} per {window} seconds. "
        "Wait a moment, or use an API token.", retry_after=str(start + window - now),
        # The rate limit's figures, as the IETF httpapi draft names them; browsers may read them (CORS exposes them).
        headers=(("RateLimit-Limit", str(limit)), ("RateLimit-Remaining", "0"),
                 ("RateLimit-Reset", str(start + window - now))))


def rate_updates(db: Dynamo, rates: Sequence[RateLimit]) -> list[Counted]:
    return [rate_update(db, rate) for rate in rates]


def quota_error(counted: list[Counted], failed: tuple[int, ...], offset: int) -> QuotaExceeded | None:
    """The QuotaExceeded for the first refused counter among the failed actions, if any.

    ``offset`` is the position of ``counted[0]`` in the transaction."""
    for index in failed:
        position = index - offset
        if 0 <= position < len(counted) and counted[position].refusal:
            refused = counted[position]
            return QuotaExceeded(refused.refusal, headers={"Retry-After": refused.retry_after, **dict(refused.headers)})
    return None
