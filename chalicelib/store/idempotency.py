"""Where ``chalicelib.idempotency`` keeps its records: powertools' DynamoDB persistence layer on the
app's own table (``pk = IDEMPOTENCY``, ``sk = <scope>#<hash of the key>``, expiring through the
table's TTL on ``expires_at``), sharing the store's client."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

    from chalicelib.store.dynamo import Dynamo


class IdempotencyRecords:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._lock = threading.Lock()
        self._layer: BasePersistenceLayer | None = None

    def layer(self) -> BasePersistenceLayer:
        """Built on first use: importing powertools' idempotency costs a cold start."""
        with self._lock:
            if self._layer is None:
                from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

                self._layer = DynamoDBPersistenceLayer(
                    table_name=self.dynamo.table_name, key_attr="pk", sort_key_attr="sk",
                    static_pk_value="IDEMPOTENCY", expiry_attr="expires_at", boto3_client=self.dynamo.client)
            return self._layer
