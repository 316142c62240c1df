"""Builds and operator-registered images: ``BUILD#<image-name>`` items."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from chalicelib.models import BUILD_TRANSITIONS, Build, BuildStatus, check_transition
from chalicelib.store.counters import Counted, Quotas, RateLimit, bounded_key, build_counts, quota_error, rate_updates
from chalicelib.store.dynamo import ConditionFailed, Dynamo, assignments, serialize, values

DUE_BUILD = "DUE#BUILD"
FULL_REPOSITORY = "repository_url"  # a repository too long to be an index key, whole
NO_QUOTAS = Quotas()


def _key(image_name: str) -> tuple[str, str]:
    return f"BUILD#{image_name}", "BUILD"


def due_key(epoch: int) -> str:
    """Sort key of the by-kind index for work that falls due: zero-padded so strings sort as numbers."""
    return f"{epoch:012d}"


def _to_item(build: Build, poll_at: int | None) -> dict[str, Any]:
    pk, sk = _key(build.image_name)
    item = {"pk": pk, "sk": sk, **build.model_dump(mode="json")}
    if not build.repository:
        item.pop("repository")  # the by-repository index is sparse: registered images stay out of it
    elif (indexed := bounded_key(build.repository)) != build.repository:
        # ``repository`` is the by-repository index's partition key (2,048 bytes at most): a
        # longer URL is indexed shortened, and kept whole beside it.
        item["repository"], item[FULL_REPOSITORY] = indexed, build.repository
    if poll_at is not None:
        item["kind_pk"], item["kind_sk"] = DUE_BUILD, due_key(poll_at)
    return item


def _from_item(item: dict[str, Any]) -> Build:
    if FULL_REPOSITORY in item:
        item = {**item, "repository": item[FULL_REPOSITORY]}
    return Build.model_validate(item)


class BuildStore:
    def __init__(self, dynamo: Dynamo) -> None:
        self.db = dynamo

    def get(self, image_name: str) -> Build | None:
        item = self.db.get(*_key(image_name))
        return _from_item(item) if item else None

    def create(self, build: Build, *, poll_at: int | None, quotas: Quotas = NO_QUOTAS,
               rates: Sequence[RateLimit] = ()) -> bool:
        """Save a new build, counted with ``rates``; False if one with this image
        name exists already (then nothing is counted).

        QuotaExceeded if its repository or the service already runs its ``quotas`` of builds."""
        put = {"Put": {"TableName": self.db.table_name, "Item": serialize(_to_item(build, poll_at)),
                       "ConditionExpression": "attribute_not_exists(pk)"}}
        try:
            self._write(put, [*rate_updates(self.db, rates), *build_counts(self.db, build.repository, 1, quotas)])
        except ConditionFailed as failure:
            if failure.failed == (0,) or not failure.failed:
                return False
            raise
        return True

    def register_image(self, build: Build) -> None:
        """Save (or replace) an operator-approved image; it never replaces a repository build."""
        try:
            self.db.put(_to_item(build, None), condition="attribute_not_exists(pk) OR attribute_not_exists(repository)")
        except ConditionFailed:
            raise ConditionFailed("a repository build has this image name") from None

    def transition(self, build: Build, to: BuildStatus, *, poll_at: int | None = None, quotas: Quotas = NO_QUOTAS,
                   rates: Sequence[RateLimit] = (), **fields: Any) -> Build:
        """Move a build from its current status to ``to``; raises ConditionFailed if it moved meanwhile.

        Going ``pending`` counts it as running, within ``quotas``; leaving it, no longer."""
        check_transition("build", build.status, to, BUILD_TRANSITIONS)
        updates = {"status": to.value, "updated_at": fields.pop("updated_at", build.updated_at), **fields}
        sets, names, vals = assignments(updates)
        names["#expected"] = "status"
        vals |= values(expected=build.status.value)
        if poll_at is not None:
            sets += ", kind_pk = :due, kind_sk = :due_at"
            vals |= values(due=DUE_BUILD, due_at=due_key(poll_at))
            expression = f"SET {sets}"
        else:
            expression = f"SET {sets} REMOVE kind_pk, kind_sk"
        update = {"Update": self.db.update_args(*_key(build.image_name), expression,
                                                condition="#expected = :expected", names=names, vals=vals)}
        running = int(to is BuildStatus.pending) - int(build.status is BuildStatus.pending)
        self._write(update, [*rate_updates(self.db, rates), *build_counts(self.db, build.repository, running, quotas)])
        return build.model_copy(update={"status": to, **{k: v for k, v in updates.items() if k != "status"}})

    def _write(self, action: dict[str, Any], counted: list[Counted]) -> None:
        if not counted:
            call = "put_item" if "Put" in action else "update_item"
            self.db.call(call, **next(iter(action.values())))
            return
        try:
            self.db.transact([action, *(c.action for c in counted)])
        except ConditionFailed as failure:
            refused = quota_error(counted, failure.failed, offset=1)
            if refused:
                raise refused from None
            raise

    def latest_for(self, repository: str) -> Build | None:
        """The newest completed build of a repository, else the newest of any status."""
        newest: Build | None = None
        for item in self.db.query("repository = :repository", values(repository=bounded_key(repository)),
                                  index="by-repository", forward=False):
            build = _from_item(item)
            if build.status is BuildStatus.completed:
                return build
            newest = newest or build
        return newest

    def due(self, now: int) -> Iterator[Build]:
        """Pending builds whose completion event is overdue (the schedule polls them)."""
        for item in self.db.query("kind_pk = :due AND kind_sk <= :now", values(due=DUE_BUILD, now=due_key(now)),
                                  index="by-kind"):
            yield _from_item(item)
