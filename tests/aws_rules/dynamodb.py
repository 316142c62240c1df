"""DynamoDB requests: key lengths of every item written and every key read, index keys included,
and TransactWriteItems's count, one action per item and size."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.aws_rules.documented import (
    PARTITION_KEY,
    SORT_KEY,
    TRANSACTION_ACTIONS,
    TRANSACTION_ITEMS,
    TRANSACTION_SIZE,
    Found,
)

MAX_TRANSACTION_BYTES = 4 * 1024 * 1024

# The project's one table (chalicelib/store/dynamo.py, infra/): a table created through a watched
# client teaches its own schema (``TableSchema.from_create_table``).
DEFAULT_KEYS = ("pk", "sk")


KeyPair = tuple[str, str | None]  # partition key, sort key


@dataclass(frozen=True)
class TableSchema:
    keys: KeyPair
    indexes: Mapping[str, KeyPair]

    @classmethod
    def from_create_table(cls, params: Mapping[str, Any]) -> TableSchema:
        def pair(schema: list[Mapping[str, str]]) -> KeyPair:
            by_type = {element["KeyType"]: element["AttributeName"] for element in schema}
            return by_type["HASH"], by_type.get("RANGE")

        indexes = [*params.get("GlobalSecondaryIndexes", []), *params.get("LocalSecondaryIndexes", [])]
        return cls(pair(params["KeySchema"]), {index["IndexName"]: pair(index["KeySchema"]) for index in indexes})


def _project_schema() -> TableSchema:
    from chalicelib.store.dynamo import INDEXES

    return TableSchema(DEFAULT_KEYS, dict(INDEXES))



def _key_bytes(attribute: Any) -> int | None:
    """The size DynamoDB counts for a key value: UTF-8 bytes of a string, bytes of a binary."""
    if not isinstance(attribute, Mapping):
        return None
    if "S" in attribute:
        return len(str(attribute["S"]).encode())
    if "B" in attribute:
        value = attribute["B"]
        return len(value) if isinstance(value, (bytes, bytearray)) else len(str(value).encode())
    return None  # numbers are at most 38 digits


def _check_key(name: str, attribute: Any, *, partition: bool, where: str) -> Found:
    size = _key_bytes(attribute)
    if size is None:
        return
    limit, rule = (2048, PARTITION_KEY) if partition else (1024, SORT_KEY)
    if not 1 <= size <= limit:
        yield rule, f"{where}: {name} of {size} bytes"


class DynamoRules:
    """The key and transaction rules, with the schema of every table it has seen created."""

    def __init__(self) -> None:
        self.schemas: dict[str, TableSchema] = {}

    def schema(self, table: str) -> TableSchema:
        return self.schemas.get(table.rsplit("/", 1)[-1]) or _project_schema()

    def item(self, table: str, item: Mapping[str, Any], where: str) -> Found:
        """An item written: its table key and the key attributes of every index it lands in."""
        schema = self.schema(table)
        yield from self.key(table, item, where)
        for hash_key, range_key in schema.indexes.values():
            if hash_key in item:
                yield from _check_key(hash_key, item[hash_key], partition=True, where=f"{where} (index key)")
            if range_key and range_key in item:
                yield from _check_key(range_key, item[range_key], partition=False, where=f"{where} (index key)")

    def key(self, table: str, key: Mapping[str, Any], where: str) -> Found:
        hash_key, range_key = self.schema(table).keys
        if hash_key in key:
            yield from _check_key(hash_key, key[hash_key], partition=True, where=where)
        if range_key and range_key in key:
            yield from _check_key(range_key, key[range_key], partition=False, where=where)

    def update(self, params: Mapping[str, Any], where: str) -> Found:
        """UpdateItem: its key, and the index keys its SET clause assigns."""
        yield from self.key(params["TableName"], params.get("Key", {}), where)
        yield from self.item(params["TableName"], _assigned(params), f"{where} SET")

    def query(self, params: Mapping[str, Any]) -> Found:
        """Query: every value its key condition compares with a key attribute."""
        schema = self.schema(params["TableName"])
        keys = schema.indexes.get(params.get("IndexName", ""), schema.keys)
        names = params.get("ExpressionAttributeNames", {})
        values = params.get("ExpressionAttributeValues", {})
        for attribute, placeholder in re.findall(r"([#\w]+)\s*(?:=|<=|>=|<|>|BETWEEN)\s*(:\w+)",
                                                 params.get("KeyConditionExpression", "")):
            name = names.get(attribute, attribute)
            if name in keys and placeholder in values:
                yield from _check_key(name, values[placeholder], partition=name == keys[0], where="Query key condition")
        for name, placeholder in re.findall(r"begins_with\(\s*([#\w]+)\s*,\s*(:\w+)", params.get(
                "KeyConditionExpression", "")):
            if placeholder in values:
                yield from _check_key(names.get(name, name), values[placeholder], partition=False,
                                      where="Query key condition")

    def transact(self, params: Mapping[str, Any]) -> Found:
        actions = params.get("TransactItems", [])
        if len(actions) > 100:
            yield TRANSACTION_ACTIONS, f"{len(actions)} actions"
        targets: dict[tuple[str, str], int] = {}
        size = 0
        for position, entry in enumerate(actions):
            for kind, action in entry.items():
                table = action.get("TableName", "")
                where = f"TransactItems[{position}].{kind}"
                if kind == "Put":
                    item = action.get("Item", {})
                    yield from self.item(table, item, where)
                    key = {name: item.get(name) for name in self.schema(table).keys if name}
                    size += _item_size(item)
                elif kind == "Update":
                    yield from self.update(action, where)
                    key = action.get("Key", {})
                    size += _item_size(key) + _item_size(action.get("ExpressionAttributeValues", {}))
                else:
                    key = action.get("Key", {})
                    yield from self.key(table, key, where)
                    size += _item_size(key)
                target = (table, json.dumps(key, sort_keys=True, default=str))
                if target in targets:
                    yield TRANSACTION_ITEMS, f"actions {targets[target]} and {position} both target {target[1][:200]}"
                targets.setdefault(target, position)
        if size > MAX_TRANSACTION_BYTES:
            yield TRANSACTION_SIZE, f"{size} bytes of items"

    def check(self, operation: str, params: Mapping[str, Any]) -> Found:
        if operation == "CreateTable":
            self.schemas[params["TableName"]] = TableSchema.from_create_table(params)
        elif operation == "PutItem":
            yield from self.item(params["TableName"], params.get("Item", {}), "PutItem")
        elif operation in ("GetItem", "DeleteItem"):
            yield from self.key(params["TableName"], params.get("Key", {}), operation)
        elif operation == "UpdateItem":
            yield from self.update(params, "UpdateItem")
        elif operation == "Query":
            yield from self.query(params)
        elif operation == "TransactWriteItems":
            yield from self.transact(params)
        elif operation == "BatchGetItem":
            for table, request in params.get("RequestItems", {}).items():
                for key in request.get("Keys", []):
                    yield from self.key(table, key, "BatchGetItem")
        elif operation == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        yield from self.item(table, request["PutRequest"].get("Item", {}), "BatchWriteItem")
                    if "DeleteRequest" in request:
                        yield from self.key(table, request["DeleteRequest"].get("Key", {}), "BatchWriteItem")
        elif operation == "TransactGetItems":
            for entry in params.get("TransactItems", []):
                get = entry.get("Get", {})
                yield from self.key(get.get("TableName", ""), get.get("Key", {}), "TransactGetItems")


def _assigned(params: Mapping[str, Any]) -> dict[str, Any]:
    """attribute -> value of each plain ``name = :value`` assignment in an UpdateExpression's SET."""
    expression = params.get("UpdateExpression", "")
    match = re.search(r"\bSET\b(.*?)(?:\b(?:REMOVE|ADD|DELETE)\b|$)", expression, re.S)
    if not match:
        return {}
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    assigned = {}
    for attribute, placeholder in re.findall(r"([#\w]+)\s*=\s*(:\w+)\s*(?:,|$)", match[1].strip()):
        if placeholder in values:
            assigned[names.get(attribute, attribute)] = values[placeholder]
    return assigned


def _item_size(attributes: Mapping[str, Any]) -> int:
    """DynamoDB's item size: "the sum of the lengths of its attribute names and values" (an estimate
    for numbers and containers, which is all a 4 MB bound needs)."""
    return sum(len(str(name).encode()) + _value_size(value) for name, value in attributes.items())


def _value_size(value: Any) -> int:
    if not isinstance(value, Mapping) or not value:
        return len(str(value).encode())
    (kind, inner), = value.items()
    if kind in ("S", "N"):
        return len(str(inner).encode())
    if kind == "B":
        return len(inner) if isinstance(inner, (bytes, bytearray)) else len(str(inner))
    if kind == "M":
        return 3 + _item_size(inner) + len(inner)
    if kind == "L":
        return 3 + sum(_value_size(element) + 1 for element in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(element).encode()) for element in inner)
    return 1  # BOOL, NULL


