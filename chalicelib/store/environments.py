"""Stagings and pools: ``ENV#<environment-name>`` / ``STAGING`` and ``POOL`` items.

Every environment gets a pool item (size 0) when it is staged: it holds the counters of
servers handed out, so ``GET /pools/{env}`` is one read and the counters are exact. A staging
that completes joins the ``available`` index (see ``ServerStore.claim``).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from chalicelib.models import Pool, Staging, StagingStatus
from chalicelib.store.dynamo import ConditionFailed, Dynamo, assignments, serialize, values

POOL_KIND = "POOL"
STAGING = "STAGING"


def env_pk(environment_name: str) -> str:
    return f"ENV#{environment_name}"


def _pool(item: dict[str, Any]) -> Pool:
    return Pool.model_validate(item)


class EnvironmentStore:
    def __init__(self, dynamo: Dynamo) -> None:
        self.db = dynamo

    # stagings

    def get_staging(self, environment_name: str) -> Staging | None:
        item = self.db.get(env_pk(environment_name), STAGING)
        return Staging.model_validate(item) if item else None

    def get_stagings(self, environment_names: Sequence[str]) -> dict[str, Staging]:
        """Several stagings by name, 100 to a BatchGetItem (the schedule's fills); missing ones left out."""
        keys = [(env_pk(name), STAGING) for name in environment_names]
        return {staging.environment_name: staging
                for staging in map(Staging.model_validate, self.db.batch_get(keys))}

    def create_staging(self, staging: Staging) -> bool:
        """Save a new staging and its empty pool in one transaction; False if the name is taken."""
        pk = env_pk(staging.environment_name)
        pool = Pool(environment_name=staging.environment_name)
        try:
            self.db.transact([
                {"Put": {"TableName": self.db.table_name, "ConditionExpression": "attribute_not_exists(pk)",
                         "Item": serialize({"pk": pk, "sk": STAGING, **staging.model_dump(mode="json")})}},
                {"Put": {"TableName": self.db.table_name, "ConditionExpression": "attribute_not_exists(pk)",
                         "Item": serialize({"pk": pk, "sk": "POOL", "kind_pk": POOL_KIND,
                                            "kind_sk": staging.environment_name, **pool.model_dump()})}},
            ])
        except ConditionFailed:
            return False
        return True

    def finish_staging(self, staging: Staging, **fields: Any) -> Staging:
        """Record the outcome of this attempt at a pending staging (status, reason, handle).

        A completed one joins the ``available`` index, where a launch's first query finds it. If a
        retry has superseded this attempt (``retry_staging``), its outcome is dropped and the
        staging is returned as it stands: only the newest attempt says how it went."""
        if fields.get("status") == StagingStatus.completed:
            fields = fields | {"avail_env": staging.environment_name}
        sets, names, vals = assignments(fields)
        this_attempt = "#expected = :pending AND (#attempt = :attempt OR attribute_not_exists(#attempt))"
        try:
            item = self.db.update(env_pk(staging.environment_name), STAGING, f"SET {sets}", condition=this_attempt,
                                  names=names | {"#expected": "status", "#attempt": "attempted_at"},
                                  vals=vals | values(pending="pending", attempt=staging.attempted_at))
        except ConditionFailed:
            current = self.get_staging(staging.environment_name)
            if current is None:
                raise
            return current
        return Staging.model_validate(item)

    def retry_staging(self, staging: Staging, *, now: int, stale_before: int) -> Staging | None:
        """Move a failed staging, or one pending since before ``stale_before`` (its register was cut
        off), back to pending as a new attempt; None if it is neither any more (another retry won).

        The condition is the lock: of two retries at once, one moves it and registers."""
        item_names = {"#status": "status", "#attempt": "attempted_at", "#created": "created_at", "#reason": "reason"}
        try:
            item = self.db.update(
                env_pk(staging.environment_name), STAGING, "SET #status = :pending, #reason = :none, #attempt = :now",
                condition="#status = :failed OR (#status = :pending AND (#attempt < :stale OR "
                          "(attribute_not_exists(#attempt) AND #created < :stale)))",
                names=item_names,
                vals=values(pending=StagingStatus.pending.value, failed=StagingStatus.failed.value, none="", now=now,
                            stale=stale_before))
        except ConditionFailed:
            return None
        return Staging.model_validate(item)

    # pools

    def get_pool(self, environment_name: str, *, consistent: bool = False) -> Pool | None:
        item = self.db.get(env_pk(environment_name), "POOL", consistent=consistent)
        return _pool(item) if item else None

    def pools(self) -> Iterator[Pool]:
        """Every environment's pool, in name order (one query of the by-kind index)."""
        for item in self.db.query("kind_pk = :kind", values(kind=POOL_KIND), index="by-kind"):
            yield _pool(item)

    def set_pool_size(self, environment_name: str, size: int) -> Pool:
        """Set the target size of an existing pool (it exists once the environment is staged)."""
        item = self.db.update(env_pk(environment_name), "POOL", "SET #size = :size",
                              condition="attribute_exists(pk)", names={"#size": "size"}, vals=values(size=size))
        return _pool(item)
