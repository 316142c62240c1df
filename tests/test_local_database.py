"""Local mode's embedded DynamoDB: this process's clients reach moto without a socket, other
processes through its HTTP server, and both ways take the same one-request-at-a-time lock."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib import local_database
from chalicelib.local_database import (
    BACKGROUND,
    ONE_AT_A_TIME,
    QUIET,
    AtomicMotoServer,
    Foreground,
    InProcess,
    Sweeper,
    sweep_expired,
)
from chalicelib.store import Store
from chalicelib.store.dynamo import Dynamo
from tests.load import free_port
from tests.local_mode import wait_for

CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}
TABLE = "embedded"


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:  # moto's state is the process's: leave no table behind for other tests
        reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(reset, timeout=30).close()
        server.stop()


def over_http(endpoint: str) -> Any:
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint, **CREDENTIALS)


def in_process(endpoint: str, answered_at: str | None = None) -> Any:
    """A client of ``endpoint`` answered in this process (as local mode's own clients are)."""
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, **CREDENTIALS)
    client.meta.events.register_first("before-call.dynamodb", InProcess(answered_at or endpoint))
    return client


def create_table(client: Any) -> None:
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    client.put_item(TableName=TABLE, Item={"pk": {"S": "server-1"}, "state": {"S": "available"}})


def claim(client: Any, who: str) -> bool:
    """One conditional transaction: hand server-1 to ``who`` unless somebody has it."""
    try:
        client.transact_write_items(TransactItems=[{"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "server-1"}},
            "UpdateExpression": "SET #owner = :who, #state = :running",
            "ConditionExpression": "attribute_not_exists(#owner) AND #state = :available",
            "ExpressionAttributeNames": {"#owner": "owner", "#state": "state"},
            "ExpressionAttributeValues": {":who": {"S": who}, ":running": {"S": "running"},
                                          ":available": {"S": "available"}}}}])
        return True
    except ClientError as error:
        assert error.response["Error"]["Code"] == "TransactionCanceledException"
        return False


def test_this_process_is_answered_without_a_socket_and_shares_the_servers_data(endpoint: str) -> None:
    nobody_listens = f"http://127.0.0.1:{free_port()}"
    local = in_process(nobody_listens)
    create_table(local)  # would be "connection refused" if it went over the network

    item = over_http(endpoint).get_item(TableName=TABLE, Key={"pk": {"S": "server-1"}})["Item"]
    assert item["state"] == {"S": "available"}  # the operator's CLI, in another process, sees it


def test_requests_for_other_endpoints_go_on_their_way(endpoint: str) -> None:
    elsewhere = f"http://127.0.0.1:{free_port()}"
    client = in_process(elsewhere, answered_at=endpoint)  # answers only requests for `endpoint`
    with pytest.raises(Exception, match="Could not connect"):
        client.list_tables()


def test_failed_conditions_come_back_as_dynamodb_answers_them(endpoint: str) -> None:
    local = in_process(endpoint)
    create_table(local)
    with pytest.raises(ClientError) as failed:
        local.put_item(TableName=TABLE, Item={"pk": {"S": "server-1"}}, ConditionExpression="attribute_not_exists(pk)")
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    assert claim(local, "first") and not claim(local, "second")


CALLS: dict[str, tuple[str, dict[str, Any]]] = {  # what the store sends, and how DynamoDB refuses it
    "query": ("query", {"TableName": TABLE, "KeyConditionExpression": "pk = :pk",
                        "ExpressionAttributeValues": {":pk": {"S": "server-1"}}}),
    "get an item": ("get_item", {"TableName": TABLE, "Key": {"pk": {"S": "server-1"}}}),
    "a cancelled transaction": ("transact_write_items", {"TransactItems": [
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "server-1"}}, "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "1"}}}},
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "counter"}}, "UpdateExpression": "ADD n :one",
                    "ConditionExpression": "n < :one", "ExpressionAttributeValues": {":one": {"N": "1"}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}]}),
    "a failed condition": ("update_item", {"TableName": TABLE, "Key": {"pk": {"S": "counter"}},
                                           "UpdateExpression": "ADD n :one", "ConditionExpression": "n < :one",
                                           "ExpressionAttributeValues": {":one": {"N": "1"}}}),
    "a bad expression": ("update_item", {"TableName": TABLE, "Key": {"pk": {"S": "counter"}},
                                         "UpdateExpression": "SET n = :nowhere"}),
    "no such table": ("get_item", {"TableName": "nowhere", "Key": {"pk": {"S": "server-1"}}}),
}


@pytest.mark.parametrize("call", CALLS)
def test_this_process_gets_the_answers_and_errors_a_socket_gets(endpoint: str, call: str) -> None:
    """What the store reads of an answer, or of a refusal (a cancelled transaction's reasons pick the
    quota it exceeded), is the same in this process as over HTTP, and parsed the same way."""
    local, remote = in_process(endpoint), over_http(endpoint)
    create_table(local)
    local.put_item(TableName=TABLE, Item={"pk": {"S": "counter"}, "n": {"N": "5"}})
    operation, arguments = CALLS[call]

    def answer(client: Any) -> dict[str, Any]:
        try:
            reply = getattr(client, operation)(**arguments)
        except ClientError as error:
            reply = error.response
        metadata = reply.pop("ResponseMetadata")
        reply["status"] = metadata["HTTPStatusCode"]
        return reply

    here, there = answer(local), answer(remote)
    assert here == there
    assert here["status"] == (200 if call in ("query", "get an item") else 400)
    if call == "a cancelled transaction":
        assert [reason["Code"] for reason in here["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
        assert here["CancellationReasons"][1]["Item"] == {"pk": {"S": "counter"}, "n": {"N": "5"}}


@pytest.mark.parametrize("way", ["in_process", "over_http"])
def test_a_request_waits_for_the_one_before_it_whichever_way_it_comes(endpoint: str, way: str) -> None:
    client = in_process(endpoint) if way == "in_process" else over_http(endpoint)
    create_table(client)
    done = threading.Event()
    with ONE_AT_A_TIME:  # a request is being served
        threading.Thread(target=lambda: (client.get_item(TableName=TABLE, Key={"pk": {"S": "server-1"}}),
                                         done.set()), daemon=True).start()
        assert not done.wait(0.5)
    assert done.wait(10)


def test_concurrent_claims_from_both_ways_hand_the_server_to_one(endpoint: str) -> None:
    clients = [in_process(endpoint), over_http(endpoint)]
    create_table(clients[0])
    start = threading.Barrier(16)

    def contend(number: int) -> bool:
        start.wait()
        return claim(clients[number % 2], f"claimer-{number}")

    with ThreadPoolExecutor(max_workers=16) as workers:
        won = [number for number, ok in enumerate(workers.map(contend, range(16))) if ok]

    assert len(won) == 1
    item = clients[1].get_item(TableName=TABLE, Key={"pk": {"S": "server-1"}}, ConsistentRead=True)["Item"]
    assert item["owner"] == {"S": f"claimer-{won[0]}"}


# --- TTL: what DynamoDB deletes by itself, and moto and DynamoDB Local do not -----------------------

def ttl_table() -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    Dynamo(TABLE, "us-east-1", client).create_table()
    for name, expires in (("gone", 99), ("gone-too", 100), ("later", 101), ("forever", None)):
        item = {"pk": {"S": f"SERVER#{name}"}, "sk": {"S": "SERVER#x"}, "state": {"S": "stopped"}}
        client.put_item(TableName=TABLE, Item=item | ({"expires_at": {"N": str(expires)}} if expires else {}))
    return client


def names(client: Any) -> set[str]:
    return {item["pk"]["S"].split("#")[1] for item in client.scan(TableName=TABLE)["Items"]}


def test_expired_items_are_deleted_and_no_other() -> None:
    with mock_aws():
        client = ttl_table()
        dynamo = Dynamo(TABLE, "us-east-1", client)
        assert sweep_expired(dynamo, now=101) == 2
        assert names(client) == {"later", "forever"}
        assert sweep_expired(dynamo, now=101) == 0


def test_an_item_whose_expiry_moved_on_since_the_scan_is_kept() -> None:
    with mock_aws():
        client = ttl_table()
        dynamo = Dynamo(TABLE, "us-east-1", client)
        moved: list[str] = []

        def extend_first(params: dict[str, Any], **_: Any) -> None:
            if not moved:  # somebody writes the item between the sweep's scan and its delete
                moved.append(params["Key"]["pk"]["S"])
                client.update_item(TableName=TABLE, Key=params["Key"], UpdateExpression="SET expires_at = :later",
                                   ExpressionAttributeValues={":later": {"N": "500"}})

        client.meta.events.register("provide-client-params.dynamodb.DeleteItem", extend_first)
        assert sweep_expired(dynamo, now=101) == 1
        assert names(client) == {"later", "forever", moved[0].split("#")[1]}


def test_the_sweeper_sweeps_once_a_minute_whatever_the_tick() -> None:
    with mock_aws():
        client = ttl_table()
        now = [100.5]
        sweeper = Sweeper(Store(TABLE, "us-east-1", client), every=60, clock=lambda: now[0])
        assert sweeper() == 1  # "gone" (99 < 100)
        client.put_item(TableName=TABLE, Item={"pk": {"S": "SERVER#soon"}, "sk": {"S": "SERVER#x"},
                                               "expires_at": {"N": "120"}})
        now[0] = 130.0
        assert sweeper() == 0 and "soon" in names(client)  # 30 s after the last sweep: not yet
        now[0] = 161.0
        assert sweeper() == 3 and names(client) == {"forever"}


# --- requests first: the tick's calls wait while the API serves somebody ----------------------------

def gated_client(endpoint: str, foreground: Foreground, yield_at_most: float) -> Any:
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, **CREDENTIALS)
    client.meta.events.register_first("before-call.dynamodb", InProcess(endpoint, foreground=foreground,
                                                                        yield_at_most=yield_at_most))
    return client


def call_in_thread(client: Any, background: bool) -> threading.Event:
    done = threading.Event()

    def call() -> None:
        BACKGROUND.active = background
        client.list_tables()
        done.set()

    threading.Thread(target=call, daemon=True).start()
    return done


def test_a_background_call_waits_for_the_request_being_served(endpoint: str) -> None:
    foreground = Foreground()
    client = gated_client(endpoint, foreground, yield_at_most=30)
    with foreground.serving():  # a claim is being served
        tick = call_in_thread(client, background=True)
        request = call_in_thread(client, background=False)
        assert request.wait(10)  # another request's calls never wait
        assert not tick.wait(0.5)  # the tick's does
    assert tick.wait(10)  # and goes the moment the request is answered


def test_a_background_call_waits_no_longer_than_its_bound(endpoint: str) -> None:
    foreground = Foreground()
    client = gated_client(endpoint, foreground, yield_at_most=0.2)
    with foreground.serving():  # requests that never stop coming
        assert call_in_thread(client, background=True).wait(10)  # a late tick, never a stopped one


def test_the_schedule_runs_in_the_background() -> None:
    from chalicelib.local import Ticker

    seen: list[bool] = []
    ticker = Ticker(lambda: seen.append(getattr(BACKGROUND, "active", False)), interval=0.01)
    ticker.start()
    try:
        wait_for(lambda: seen, 10, "the first tick")
    finally:
        ticker.stop()
    assert seen[0] is True and getattr(BACKGROUND, "active", False) is False  # that thread's, not this one's


# --- and the tick starts only once the API has been quiet a moment ----------------------------------

def test_quiet_is_no_request_being_served_and_none_for_a_while() -> None:
    foreground = Foreground()
    started = time.monotonic()
    assert foreground.wait_quiet(0.3, timeout=10)  # nobody was ever served
    assert time.monotonic() - started < 0.3
    served = time.monotonic()
    with foreground.serving():
        pass
    assert foreground.wait_quiet(0.3, timeout=10)
    assert time.monotonic() - served >= 0.3  # it was answered after this


def test_waiting_for_quiet_ends_at_its_bound_when_requests_keep_coming() -> None:
    foreground = Foreground()
    stop = threading.Event()

    def reader() -> None:  # a request every 50 ms: never 0.3 s of quiet
        while not stop.is_set():
            with foreground.serving():
                time.sleep(0.01)
            time.sleep(0.04)

    threading.Thread(target=reader, daemon=True).start()
    try:
        started = time.monotonic()
        assert foreground.wait_quiet(0.3, timeout=1.0) is False
        assert 1.0 <= time.monotonic() - started < 5
    finally:
        stop.set()


def test_the_tick_waits_for_the_request_being_served_and_a_quiet_moment_after(monkeypatch: Any) -> None:
    from chalicelib.local import Ticker

    monkeypatch.setattr(local_database, "YIELD_AT_MOST", 30.0)
    foreground = Foreground()
    ticks: list[float] = []
    ticker = Ticker(lambda: ticks.append(time.monotonic()), interval=0.01, foreground=foreground)
    try:
        with foreground.serving():  # a claim being served when the tick falls due
            ticker.start()
            time.sleep(0.5)
            assert ticks == []
            answered = time.monotonic()
        wait_for(lambda: ticks, 10, "the first tick")
        assert ticks[0] - answered >= QUIET
    finally:
        ticker.stop()


def test_a_stream_of_requests_delays_the_tick_but_never_stops_it() -> None:
    from chalicelib.local import Ticker

    foreground = Foreground()
    ticks: list[float] = []
    ticker = Ticker(lambda: ticks.append(time.monotonic()), interval=0.01, foreground=foreground)
    with foreground.serving():  # a request that never ends
        started = time.monotonic()
        ticker.start()
        try:
            wait_for(lambda: ticks, 10, "the first tick")
        finally:
            ticker.stop()
    assert ticks[0] - started >= local_database.YIELD_AT_MOST
