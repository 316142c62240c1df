"""Leases: ``LEASE#<name>`` / ``LEASE`` items, so that one run at a time does a job (the keeper's tick).

A lease is taken with one conditional PutItem: it succeeds if there is no lease, or if the one
there has expired. Only its owner (a random id per run) renews or releases it, conditional on
the owner id, so a run that has lost its lease cannot end the next holder's. A holder that dies
(a Lambda stopped at its timeout) simply stops renewing: its lease expires and the next run takes
it. The expiry is also the table's TTL attribute, so DynamoDB eventually deletes an abandoned one.

Expiries are epoch seconds from the caller's clock. DynamoDB has no clock of its own in a
condition, so callers leave a margin for the difference between two machines' clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.store.dynamo import ConditionFailed, Dynamo, serialize, values

LEASE = "LEASE"
NAMES = {"#owner": "owner", "#expires": "expires_at"}


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    expires_at: int  # epoch seconds; held while now < expires_at


def _key(name: str) -> tuple[str, str]:
    return f"LEASE#{name}", LEASE


class LeaseStore:
    def __init__(self, dynamo: Dynamo) -> None:
        self.db = dynamo

    def take(self, name: str, owner: str, *, now: int, expires_at: int) -> Lease | None:
        """The lease ``name`` for ``owner`` until ``expires_at``; None while another holds it."""
        pk, sk = _key(name)
        try:
            self.db.put({"pk": pk, "sk": sk, "owner": owner, "expires_at": expires_at},
                        condition="attribute_not_exists(pk) OR #expires <= :now",
                        ExpressionAttributeNames={"#expires": "expires_at"},
                        ExpressionAttributeValues=values(now=now))
        except ConditionFailed:
            return None
        return Lease(name, owner, expires_at)

    def renew(self, lease: Lease, *, expires_at: int) -> Lease | None:
        """``lease`` held until ``expires_at``; None if it is no longer its owner's (another run took
        it after it expired, or it was deleted). An expired lease nobody took is still ours: no other
        run has started in the meantime."""
        pk, sk = _key(lease.name)
        try:
            self.db.update(pk, sk, "SET #expires = :expires", condition="#owner = :owner", names=NAMES,
                           vals=values(expires=expires_at, owner=lease.owner))
        except ConditionFailed:
            return None
        return Lease(lease.name, lease.owner, expires_at)

    def release(self, lease: Lease) -> bool:
        """Free ``lease`` for the next run; False if it was no longer its owner's."""
        pk, sk = _key(lease.name)
        try:
            self.db.call("delete_item", TableName=self.db.table_name, Key=serialize({"pk": pk, "sk": sk}),
                         ConditionExpression="#owner = :owner", ExpressionAttributeNames={"#owner": "owner"},
                         ExpressionAttributeValues=values(owner=lease.owner))
        except ConditionFailed:
            return False
        return True

    def get(self, name: str) -> Lease | None:
        """The lease as stored (strongly consistent), expired or not; None if there is none."""
        item = self.db.get(*_key(name), consistent=True)
        return Lease(name, str(item["owner"]), int(item["expires_at"])) if item else None
