"""The DynamoDB client wrapper every store module shares: lazy client, (de)serialising, errors.

Key layout (one table, see DESIGN.md):

    pk                  sk               what
    BUILD#<image-name>  BUILD            a build or an operator-registered image
    ENV#<env>           STAGING          a staged environment
    ENV#<env>           POOL             its pool: target size and exact counters
    ENV#<env>           SERVER#<id>      a notebook server
    ENV#<env>           BINDING          the v1 binding that holds this environment's name
    BINDING#<org/repo>  BINDING          a v1 binding (its declaration), written with the item above
    TOKEN#<sha256>      TOKEN            an API token (hash only)
    LEASE#<name>        LEASE            a lease: one run at a time (the keeper's tick)

Global secondary indexes (all sparse, projecting everything):

    by-repository  repository / created_at   builds of a repository
    available      avail_env / created_at    servers while they are ``available`` (claims), and
                                             each launchable environment's staging (cold starts)
    by-launch      launch                    servers by the platform call that started them (events)
    by-route       route                     servers by their path behind the proxy (the gone page)
    by-kind        kind_pk / kind_sk         pools ("POOL"), tokens ("TOKEN") and work that
                                             falls due ("DUE#SERVER", "DUE#BUILD" by epoch)
"""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from chalicelib.errors import Unavailable
from chalicelib.lazy_clients import LazyClient

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

THROTTLING = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
})
TRANSACTION_ATTEMPTS = 4
BATCH_GET_KEYS = 100  # DynamoDB's limit for one BatchGetItem
INDEXES = {
    "by-repository": ("repository", "created_at"),
    "available": ("avail_env", "created_at"),
    "by-launch": ("launch", None),
    "by-route": ("route", None),
    "by-kind": ("kind_pk", "kind_sk"),
}


class ConditionFailed(Exception):
    """A conditional write lost: the item was not in the expected state.

    For a transaction, ``failed`` holds the positions of the actions whose condition failed."""

    def __init__(self, operation: str, failed: tuple[int, ...] = ()) -> None:
        super().__init__(operation)
        self.failed = failed


class _Collided(Exception):
    """A transaction met another on the same item (TransactionConflict): worth another try."""


def _to_attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float, Decimal)):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": str(value)}  # a StrEnum member as its value
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {k: _to_attr(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [_to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def _from_attr(attr: Mapping[str, Any]) -> Any:
    (kind, value), = attr.items()
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "M":
        return {k: _from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [_from_attr(v) for v in value]
    if kind == "NULL":
        return None
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _to_attr(v) for k, v in item.items() if v is not None}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_attr(v) for k, v in item.items()}


def values(**named: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(state="running") -> {":state": ...}."""
    return {f":{k}": _to_attr(v) for k, v in named.items()}


def assignments(fields: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``#a = :a, #b = :b`` with its names and values, for an UpdateExpression's SET."""
    clause = ", ".join(f"#{k} = :{k}" for k in fields)
    return clause, {f"#{k}": k for k in fields}, values(**fields)


class Dynamo:
    """One table, one lazily created client; translates throttling into ``Unavailable``."""

    def __init__(self, table_name: str, region: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self.region = region
        self._client = client

    client: LazyClient[DynamoDBClient] = LazyClient("dynamodb")

    def call(self, operation: str, **kwargs: Any) -> Any:
        """One DynamoDB call. Transactions that collide with another are retried a few times."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                return self._call_once(operation, kwargs)
            except _Collided:
                if attempt == TRANSACTION_ATTEMPTS:
                    break
                time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 (jitter, not a secret)
        raise Unavailable("The database is busy; try again in a moment.", headers={"Retry-After": "1"})

    def _call_once(self, operation: str, kwargs: dict[str, Any]) -> Any:
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed(operation) from None
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "") for r in error.response.get("CancellationReasons", [])]
                failed = tuple(i for i, reason in enumerate(reasons) if reason == "ConditionalCheckFailed")
                if failed and not THROTTLING & set(reasons):
                    raise ConditionFailed(operation, failed) from None
                if "TransactionConflict" in reasons:
                    raise _Collided from None
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in THROTTLING or code == "TransactionCanceledException" or status >= 500:
                raise Unavailable("The database is busy; try again in a moment.",
                                  headers={"Retry-After": "1"}) from None
            raise

    def get(self, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
        reply = self.call("get_item", TableName=self.table_name, Key=serialize({"pk": pk, "sk": sk}),
                          ConsistentRead=consistent)
        return deserialize(reply["Item"]) if "Item" in reply else None

    def put(self, item: Mapping[str, Any], *, condition: str | None = None, **expr: Any) -> None:
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Item": serialize(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        self.call("put_item", **kwargs, **expr)

    def update(self, pk: str, sk: str, expression: str, *, condition: str | None = None,
               names: Mapping[str, str] | None = None, vals: Mapping[str, Any] | None = None,
               ) -> dict[str, Any]:
        kwargs = self.update_args(pk, sk, expression, condition=condition, names=names, vals=vals)
        reply = self.call("update_item", **kwargs, ReturnValues="ALL_NEW")
        return deserialize(reply["Attributes"])

    def update_args(self, pk: str, sk: str, expression: str, *, condition: str | None = None,
                    names: Mapping[str, str] | None = None, vals: Mapping[str, Any] | None = None,
                    ) -> dict[str, Any]:
        """The arguments of one UpdateItem, for a call or a transaction's ``Update``."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Key": serialize({"pk": pk, "sk": sk}),
                                  "UpdateExpression": expression}
        if condition:
            kwargs["ConditionExpression"] = condition
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if vals:
            kwargs["ExpressionAttributeValues"] = dict(vals)
        return kwargs

    def batch_get(self, keys: Sequence[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """The items that exist among ``keys`` (pk, sk), 100 keys to a call, in no particular order."""
        for start in range(0, len(keys), BATCH_GET_KEYS):
            wanted = [serialize({"pk": pk, "sk": sk}) for pk, sk in dict.fromkeys(keys[start:start + BATCH_GET_KEYS])]
            for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
                reply = self.call("batch_get_item", RequestItems={self.table_name: {"Keys": wanted}})
                yield from map(deserialize, reply.get("Responses", {}).get(self.table_name, []))
                wanted = reply.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
                if not wanted:
                    break
                if attempt == TRANSACTION_ATTEMPTS:
                    raise Unavailable("The database is busy; try again in a moment.", headers={"Retry-After": "1"})
                time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 (jitter, not a secret)

    def transact(self, actions: Sequence[Mapping[str, Any]]) -> None:
        self.call("transact_write_items", TransactItems=list(actions))

    def query(self, condition: str, vals: Mapping[str, Any], *, index: str | None = None,
              names: Mapping[str, str] | None = None, limit: int | None = None,
              filter: str | None = None, forward: bool = True) -> Iterator[dict[str, Any]]:
        """Every matching item (following pages), or the first ``limit`` ones."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "KeyConditionExpression": condition,
                                  "ExpressionAttributeValues": dict(vals), "ScanIndexForward": forward}
        if index:
            kwargs["IndexName"] = index
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if filter:
            kwargs["FilterExpression"] = filter
        if limit:
            kwargs["Limit"] = limit
        seen = 0
        while True:
            reply = self.call("query", **kwargs)
            for item in reply.get("Items", []):
                yield deserialize(item)
                seen += 1
                if limit and seen >= limit:
                    return
            if "LastEvaluatedKey" not in reply:
                return
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def create_table(self, *, if_missing: bool = False) -> None:
        """Create the table as infra/ does (used by tests and local mode); ``if_missing``: a table of that
        name may exist already (local mode on DynamoDB Local), and then it gains the indexes a newer
        version added (as a stack update adds them on AWS), its items left as they are.

        (All of it in this one function: tests/test_iam_policy.py leaves its calls out of the Lambda role.)"""
        attributes: dict[str, Any] = {"pk": "S", "sk": "S", "repository": "S", "created_at": "N", "avail_env": "S",
                                      "launch": "S", "route": "S", "kind_pk": "S", "kind_sk": "S"}
        indexes: dict[str, Any] = {}
        for name, (hash_key, range_key) in INDEXES.items():
            schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
            if range_key:
                schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
            indexes[name] = {"IndexName": name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}

        def definitions(*names: str) -> list[Any]:
            return [{"AttributeName": k, "AttributeType": attributes[k]} for k in dict.fromkeys(names)]

        try:
            self.client.create_table(
                TableName=self.table_name,
                AttributeDefinitions=definitions(*attributes),
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                GlobalSecondaryIndexes=list(indexes.values()),
                BillingMode="PAY_PER_REQUEST",
            )
        except self.client.exceptions.ResourceInUseException:
            if not if_missing:
                raise
            table = self.client.describe_table(TableName=self.table_name)["Table"]
            missing = set(indexes) - {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
            for name in sorted(missing):
                # "You can create or delete only one global secondary index per UpdateTable operation."
                # (DynamoDB API Reference, UpdateTable)
                keys = [part["AttributeName"] for part in indexes[name]["KeySchema"]]
                self.client.update_table(TableName=self.table_name, AttributeDefinitions=definitions(*keys),
                                         GlobalSecondaryIndexUpdates=[{"Create": indexes[name]}])
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and any(  # the next index waits for this one to be built
                        index.get("IndexStatus") != "ACTIVE" for index in self.client.describe_table(
                            TableName=self.table_name)["Table"].get("GlobalSecondaryIndexes", [])):
                    time.sleep(0.5)
            return
        self.client.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
