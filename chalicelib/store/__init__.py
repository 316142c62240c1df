"""The only package that talks to DynamoDB. ``Store`` bundles one sub-store per kind of item."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.store.bindings import BindingStore
from chalicelib.store.builds import BuildStore
from chalicelib.store.dynamo import ConditionFailed, Dynamo
from chalicelib.store.environments import EnvironmentStore
from chalicelib.store.idempotency import IdempotencyRecords
from chalicelib.store.leases import Lease, LeaseStore
from chalicelib.store.servers import ServerStore
from chalicelib.store.tokens import TokenStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["ConditionFailed", "Lease", "Store"]


class Store:
    def __init__(self, table_name: str, region: str, client: DynamoDBClient | None = None) -> None:
        self.dynamo = Dynamo(table_name, region, client)
        self.bindings = BindingStore(self.dynamo)
        self.builds = BuildStore(self.dynamo)
        self.environments = EnvironmentStore(self.dynamo)
        self.idempotency = IdempotencyRecords(self.dynamo)
        self.leases = LeaseStore(self.dynamo)
        self.servers = ServerStore(self.dynamo)
        self.tokens = TokenStore(self.dynamo)

    def check(self) -> None:
        """One read, for a health check: raises whatever stops the table from answering."""
        self.dynamo.get("HEALTH", "HEALTH")
