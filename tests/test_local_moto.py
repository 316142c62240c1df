"""local_moto's speed-ups change nothing a client sees: the same calls, made against moto as it is and
against moto with them, get the same answers (errors and rolled-back transactions included)."""

from __future__ import annotations

import gc
import inspect
from collections.abc import Iterator
from typing import Any, Callable

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import responses as moto_responses
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.tokens import ExpressionTokenizer  # type: ignore[attr-defined]
from moto.dynamodb.parsing.validators import ActionCountValidator
from moto.dynamodb.responses import DynamoResult

from chalicelib import local_moto
from chalicelib.store.dynamo import Dynamo

TABLE = "binderless"
FULL = {"pk": {"S": "SERVER#env"}, "sk": {"S": "a"}, "avail_env": {"S": "env"}, "created_at": {"N": "10"},
        "text": {"S": "ünïcode \"quoted\" \\ /"}, "number": {"N": "-1.5e3"}, "flag": {"BOOL": True},
        "nothing": {"NULL": True}, "map": {"M": {"inner": {"L": [{"S": "x"}, {"N": "2"}]}}},
        "names": {"SS": ["b", "a"]}, "numbers": {"NS": ["1", "2"]}}


def key(sk: str, pk: str = "SERVER#env") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def update(sk: str, expression: str, **extra: Any) -> dict[str, Any]:
    return {"Update": {"TableName": TABLE, "Key": key(sk), "UpdateExpression": expression, **extra}}


def put(sk: str, **attributes: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": {**key(sk), **attributes}}}


def missing(sk: str, **extra: Any) -> dict[str, Any]:
    return {"ConditionCheck": {"TableName": TABLE, "Key": key(sk), "ConditionExpression": "attribute_exists(pk)",
                               **extra}}


def answer(call: Callable[[], Any]) -> Any:
    """What the client gets: the reply without its request id, or the error with its reasons."""
    try:
        reply = call()
    except ClientError as error:
        return {"error": error.response["Error"], "reasons": error.response.get("CancellationReasons")}
    reply.pop("ResponseMetadata", None)
    reply.get("Table", {}).pop("CreationDateTime", None)
    return reply


def conversation() -> list[Any]:
    """Every kind of call the app makes, and the ways a transaction fails, on a fresh table."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    Dynamo(TABLE, "us-east-1", client).create_table()
    scan = lambda: client.scan(TableName=TABLE)  # noqa: E731
    calls: list[Callable[[], Any]] = [
        lambda: client.put_item(TableName=TABLE, Item=FULL),
        lambda: client.put_item(TableName=TABLE, Item=key("first", pk="POOL#env")),  # scans: partitions in order
        lambda: client.put_item(TableName=TABLE, Item={**key("c"), "avail_env": {"S": "env"},
                                                       "created_at": {"N": "11"}}),
        lambda: client.get_item(TableName=TABLE, Key=key("a")),
        lambda: client.get_item(TableName=TABLE, Key=key("nobody")),
        lambda: client.query(TableName=TABLE, IndexName="available", KeyConditionExpression="avail_env = :e",
                             ExpressionAttributeValues={":e": {"S": "env"}}, Limit=1),
        lambda: client.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": "SERVER#env"}}),
        lambda: client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="ADD hits :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="ALL_NEW"),
        # Succeeds: every action is applied.
        lambda: client.transact_write_items(TransactItems=[
            update("a", "SET #s = :s", ExpressionAttributeNames={"#s": "state"},
                   ExpressionAttributeValues={":s": {"S": "running"}}),
            put("b", created_at={"N": "12"}),
            {"Delete": {"TableName": TABLE, "Key": key("c")}}]),
        scan,
        # The last action fails: the update, the put and the delete before it are undone.
        lambda: client.transact_write_items(TransactItems=[
            update("a", "SET #s = :s", ExpressionAttributeNames={"#s": "state"},
                   ExpressionAttributeValues={":s": {"S": "stolen"}}),
            put("d", created_at={"N": "13"}),
            {"Delete": {"TableName": TABLE, "Key": key("b")}},
            update("new-in-a-new-partition", "ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}),
            missing("nobody")]),
        scan,
        # The first action fails, and says what it found.
        lambda: client.transact_write_items(TransactItems=[
            update("a", "SET x = :x", ConditionExpression="attribute_not_exists(pk)",
                   ExpressionAttributeValues={":x": {"N": "1"}}, ReturnValuesOnConditionCheckFailure="ALL_OLD"),
            put("e")]),
        scan,
        lambda: client.batch_get_item(RequestItems={TABLE: {"Keys": [key("a"), key("b"), key("nobody")]}}),
        lambda: client.delete_item(TableName=TABLE, Key=key("b"), ReturnValues="ALL_OLD"),
        lambda: client.put_item(TableName=TABLE, Item={**key("bin"), "blob": {"B": b"\x00\xffbytes"}}),
        lambda: client.get_item(TableName=TABLE, Key=key("bin")),  # bytes: moto's serializer writes it
        lambda: client.describe_table(TableName=TABLE),
        # Expressions moto refuses: two clauses of one kind.
        lambda: client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="SET x = :one SET y = :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}}),
        lambda: client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="ADD x :one REMOVE y ADD z :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}}),
        lambda: client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="REMOVE y, z SET x = :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW"),
        # Paths into maps and lists, and what the validator's processors refuse: a type mismatch, a key.
        lambda: client.update_item(TableName=TABLE, Key=key("a"), ReturnValues="ALL_NEW",
                                   UpdateExpression="SET #m.#i[1] = :v, #m.added = :v REMOVE #m.#i[0]",
                                   ExpressionAttributeNames={"#m": "map", "#i": "inner"},
                                   ExpressionAttributeValues={":v": {"S": "v"}}),
        *(lambda expression=expression: client.update_item(  # type: ignore[misc]
            TableName=TABLE, Key=key("a"), UpdateExpression=expression, ExpressionAttributeNames={"#t": "text"},
            ExpressionAttributeValues={":one": {"N": "1"}}) for expression in ("ADD #t :one", "SET x = #t + :one")),
        lambda: client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="SET sk = :v",
                                   ExpressionAttributeValues={":v": {"S": "b"}}),
        lambda: client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="SET x = nothere.y"),
        # One expression, other values each time (a parsed expression is reused: never its values).
        *(lambda value=value: client.update_item(  # type: ignore[misc]
            TableName=TABLE, Key=key("a"), UpdateExpression="SET #s = :s, t = if_not_exists(t, :s) ADD hits :one",
            ExpressionAttributeNames={"#s": "state"}, ReturnValues="ALL_NEW",
            ExpressionAttributeValues={":s": {"S": value}, ":one": {"N": "1"}}) for value in ("x", "y", "z")),
        # One condition, other values each time: it holds, it fails, a value is given it does not use, it holds.
        *(lambda values=values: client.update_item(  # type: ignore[misc]
            TableName=TABLE, Key=key("a"), UpdateExpression="SET seen = :seen",
            ConditionExpression="#s = :was AND attribute_exists(#h)",
            ExpressionAttributeNames={"#s": "state", "#h": "hits"}, ReturnValues="ALL_NEW",
            ExpressionAttributeValues={":seen": {"N": str(len(values))}, **values})
          for values in ({":was": {"S": "z"}}, {":was": {"S": "x"}}, {":was": {"S": "z"}, ":extra": {"N": "1"}},
                         {":was": {"S": "z"}})),
        # Queries over items written out of key order, in three partitions: forwards, backwards, page by page.
        *(lambda sk=sk, pk=pk, at=at: client.put_item(  # type: ignore[misc]
            TableName=TABLE, Item={**key(sk, pk=pk), "avail_env": {"S": "env"}, "created_at": {"N": at}})
          for sk, pk, at in (("q9", "SERVER#env", "5"), ("q1", "SERVER#other", "5"), ("q5", "SERVER#env", "1"),
                             ("q3", "POOL#env", "5"), ("q0", "SERVER#env", "9"))),
        *(lambda forward=forward: client.query(  # type: ignore[misc]
            TableName=TABLE, IndexName="available", KeyConditionExpression="avail_env = :e",
            ExpressionAttributeValues={":e": {"S": "env"}}, ScanIndexForward=forward) for forward in (True, False)),
        lambda: client.query(TableName=TABLE, IndexName="available", KeyConditionExpression="avail_env = :e",
                             ExpressionAttributeValues={":e": {"S": "env"}}, Limit=2,
                             ExclusiveStartKey={**key("q1", pk="SERVER#other"), "avail_env": {"S": "env"},
                                                "created_at": {"N": "5"}}),
        lambda: client.query(TableName=TABLE, KeyConditionExpression="pk = :p AND begins_with(sk, :q)",
                             ExpressionAttributeValues={":p": {"S": "SERVER#env"}, ":q": {"S": "q"}},
                             ScanIndexForward=False, Limit=2),
        scan,
    ]
    return [answer(call) for call in calls]


@pytest.fixture
def speeded_up() -> Iterator[None]:
    """local_moto installed for one test, and moto put back as it was afterwards (other tests use it)."""
    already = bool(local_moto.ORIGINALS)
    local_moto.install()
    yield
    if not already:
        originals = local_moto.ORIGINALS
        DynamoDBBackend.transact_write_items = originals["transact_write_items"]  # type: ignore[method-assign]
        vars(dynamodb_models)["copy"] = originals["copy"]
        DynamoResult.execute_result = originals["execute_result"]  # type: ignore[method-assign]
        ActionCountValidator.traverse = originals["traverse"]  # type: ignore[method-assign]
        UpdateExpressionParser.make = originals["make"]
        vars(validators)["deepcopy"] = originals["validators_deepcopy"]
        DepthFirstTraverser.traverse = originals["depth_first"]  # type: ignore[method-assign]
        Table.all_items = originals["all_items"]  # type: ignore[method-assign]
        Table.query = originals["query"]  # type: ignore[method-assign]
        vars(moto_responses)["method_names_from_class"] = originals["method_names"]
        ConditionExpressionParser.parse = originals["condition_parse"]  # type: ignore[method-assign]
        Item.__new__ = originals["item_new"]  # type: ignore[method-assign]
        originals.clear()


def test_every_answer_is_the_one_moto_gives(speeded_up: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as as_it_was:
        for where, name, saved in ((DynamoDBBackend, "transact_write_items", "transact_write_items"),
                                   (DynamoResult, "execute_result", "execute_result"),
                                   (ActionCountValidator, "traverse", "traverse"),
                                   (UpdateExpressionParser, "make", "make"),
                                   (DepthFirstTraverser, "traverse", "depth_first"),
                                   (Table, "all_items", "all_items"),
                                   (Table, "query", "query"),
                                   (ConditionExpressionParser, "parse", "condition_parse"),
                                   (Item, "__new__", "item_new")):
            as_it_was.setattr(where, name, local_moto.ORIGINALS[saved])
        as_it_was.setitem(vars(dynamodb_models), "copy", local_moto.ORIGINALS["copy"])
        as_it_was.setitem(vars(validators), "deepcopy", local_moto.ORIGINALS["validators_deepcopy"])
        as_it_was.setitem(vars(moto_responses), "method_names_from_class", local_moto.ORIGINALS["method_names"])
        with mock_aws():
            expected = conversation()
    with mock_aws():
        answers = conversation()
    assert answers == expected
    before, after_failures = answers[9], answers[11]
    assert after_failures == before and answers[13] == before  # failed transactions wrote nothing
    assert answers[10]["error"]["Code"] == answers[12]["error"]["Code"] == "TransactionCanceledException"
    assert [item["pk"]["S"] for item in before["Items"]][:2] == ["POOL#env", "SERVER#env"]


def test_a_transaction_copies_only_the_items_it_names(speeded_up: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Dynamo(TABLE, "us-east-1", client).create_table()
        for number in range(200):
            client.put_item(TableName=TABLE, Item={**key(f"{number:03}"), "n": {"N": str(number)}})
        copies: list[Item] = []
        copy_item = Item.__deepcopy__
        monkeypatch.setattr(Item, "__deepcopy__", lambda item, memo: copies.append(item) or copy_item(item, memo))
        with pytest.raises(ClientError, match="TransactionCanceled"):
            client.transact_write_items(TransactItems=[update("001", "SET n = :n", ExpressionAttributeValues={
                ":n": {"N": "-1"}}), missing("nobody")])
        # The one item it changes (moto's update copies it too), not the table's 200 (moto copied them all).
        assert {copied.range_key.value for copied in copies} == {"001"}
        item = client.get_item(TableName=TABLE, Key=key("001"))["Item"]
        assert item["n"] == {"N": "1"}  # and that one is put back


def test_an_expression_is_parsed_once_however_often_it_is_written(speeded_up: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tokenized: list[str] = []
    tokenize = ExpressionTokenizer.make_list
    monkeypatch.setattr(ExpressionTokenizer, "make_list", lambda text: tokenized.append(text) or tokenize(text))
    expression = "SET #s = :s, claimed_at = :at REMOVE avail_env"
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Dynamo(TABLE, "us-east-1", client).create_table()
        for number in range(5):
            client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression=expression,
                               ExpressionAttributeNames={"#s": "state"},
                               ExpressionAttributeValues={":s": {"S": f"s{number}"}, ":at": {"N": str(number)}})
        item = client.get_item(TableName=TABLE, Key=key("a"))["Item"]
    assert tokenized.count(expression) == 1  # moto alone: twice a call, 10 in all
    assert (item["state"], item["claimed_at"]) == ({"S": "s4"}, {"N": "4"})


def test_a_condition_is_parsed_once_for_the_same_names_and_values(speeded_up: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """moto parsed a transaction's condition three times a call: to check its names are used, to check
    it, and in the update it makes."""
    lexed: list[str] = []
    lex = ConditionExpressionParser._lex_condition_expression
    monkeypatch.setattr(ConditionExpressionParser, "_lex_condition_expression",
                        lambda parser: lexed.append(parser.condition_expression) or lex(parser))
    condition = "#s = :was"
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Dynamo(TABLE, "us-east-1", client).create_table()
        client.put_item(TableName=TABLE, Item={**key("a"), "state": {"S": "available"}})
        outcomes = []
        for was in ("available", "available", "running", "available"):
            try:
                client.transact_write_items(TransactItems=[update(
                    "a", "SET n = :n", ConditionExpression=condition, ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":was": {"S": was}, ":n": {"N": str(len(outcomes))}})])
                outcomes.append("written")
            except ClientError:
                outcomes.append("refused")
        item = client.get_item(TableName=TABLE, Key=key("a"))["Item"]
    assert outcomes == ["written", "written", "refused", "written"]  # the values are never the cached ones
    assert item["n"] == {"N": "3"}
    assert lexed.count(condition) == 4  # once a call; moto alone: 11 (three a call, two for the refused one)


def test_an_item_written_over_is_freed(speeded_up: None) -> None:
    """moto kept every version of every item for good (local mode grew by two items an UpdateItem, and
    its full garbage collections took longer with each)."""
    def items() -> list[Item]:
        gc.collect()
        return [thing for thing in gc.get_objects() if type(thing) is Item]

    already = {id(item): item for item in items()}  # another test's (held here, so no id is reused)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Dynamo(TABLE, "us-east-1", client).create_table()
        for _ in range(300):
            client.update_item(TableName=TABLE, Key=key("a"), UpdateExpression="ADD n :one",
                               ExpressionAttributeValues={":one": {"N": "1"}})
        made = [item for item in items() if id(item) not in already]
        assert len(made) == 1  # the table's one item; moto alone: 600
        assert client.get_item(TableName=TABLE, Key=key("a"))["Item"]["n"] == {"N": "300"}


def test_a_query_reads_the_table_unsorted_and_a_scan_in_key_order(speeded_up: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim's Query grew with every stopped server in the table, each one's keys converted and compared
    to sort what the Query sorts again anyway; a Scan's order shows, so it still sorts."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Dynamo(TABLE, "us-east-1", client).create_table()
        for number in range(50):
            client.put_item(TableName=TABLE, Item={**key(f"{number:03}", pk=f"SERVER#{number % 7}"),
                                                   "avail_env": {"S": "env"}, "created_at": {"N": "1"}})
        sorted_keys: list[Item] = []
        key_values = local_moto._key_values
        monkeypatch.setattr(local_moto, "_key_values", lambda item: sorted_keys.append(item) or key_values(item))
        found = client.query(TableName=TABLE, IndexName="available", KeyConditionExpression="avail_env = :e",
                             ExpressionAttributeValues={":e": {"S": "env"}}, Limit=3)["Items"]
        assert [item["sk"]["S"] for item in found] == ["000", "007", "014"]  # by created_at, then pk, then sk
        assert sorted_keys == []
        client.scan(TableName=TABLE, Limit=1)
        assert len(sorted_keys) == 50


def test_the_handlers_methods_are_listed_once(speeded_up: None, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[object] = []
    getmembers = inspect.getmembers
    monkeypatch.setattr(inspect, "getmembers", lambda *args, **kwargs: listed.append(args[0]) or getmembers(
        *args, **kwargs))
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for _ in range(3):
            client.list_tables()
    assert len(listed) <= 1  # moto listed them on every request
