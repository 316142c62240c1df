"""A pool hit's DynamoDB work on moto as it is and with local mode's speed-ups, in one process.

    .venv/bin/python bench/moto_claims.py [--claims 300] [--ended 1000] [--json]

A claim is what ``ServerStore.claim`` sends: a Query of the ``available`` index, then a TransactWriteItems
of two conditional updates (the server: running, claimed, its next check; the pool's counters), on a table
that also holds ``--ended`` stopped servers (a day of use: they stay until their TTL passes). The
two variants take turns in blocks of 30 claims on the same table, so each meets the machine in the same
state: moto as it is, ``chalicelib/local_moto.py``'s first three speed-ups, and all of them (its ORIGINALS
put back in turn). Prints the medians, the p95s and the ratios (lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import responses as moto_responses  # noqa: E402
from moto.dynamodb import models as dynamodb_models  # noqa: E402
from moto.dynamodb.comparisons import ConditionExpressionParser  # noqa: E402
from moto.dynamodb.models import DynamoDBBackend  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402
from moto.dynamodb.parsing import validators  # noqa: E402
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]  # noqa: E402
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]  # noqa: E402
from moto.dynamodb.parsing.validators import ActionCountValidator  # noqa: E402
from moto.dynamodb.responses import DynamoResult  # noqa: E402

from chalicelib import local_moto  # noqa: E402
from chalicelib.store.dynamo import Dynamo  # noqa: E402

TABLE, ENV, SERVERS, BLOCK = "binderless", "env", 40, 30
# (owner, attribute, ORIGINALS key): what local_moto.install() replaces
REPLACED = [(DynamoDBBackend, "transact_write_items", "transact_write_items"),
            (DynamoResult, "execute_result", "execute_result"),
            (ActionCountValidator, "traverse", "traverse"),
            (UpdateExpressionParser, "make", "make"),
            (DepthFirstTraverser, "traverse", "depth_first"),
            (Table, "all_items", "all_items"),
            (Table, "query", "query"),
            (ConditionExpressionParser, "parse", "condition_parse")]
MODULES = [(vars(dynamodb_models), "copy", "copy"), (vars(validators), "deepcopy", "validators_deepcopy"),
           (vars(moto_responses), "method_names_from_class", "method_names")]


def variants() -> dict[str, Callable[[], None]]:
    """name -> a function that puts that variant in place."""
    local_moto.install()
    faster = [vars(owner)[name] if isinstance(owner, type) else owner[name] for owner, name, _ in [*REPLACED, *MODULES]]
    originals = [local_moto.ORIGINALS[key] for _, _, key in [*REPLACED, *MODULES]]

    def put(values: list[Any]) -> None:
        for (owner, name, _), value in zip([*REPLACED, *MODULES], values, strict=True):
            if isinstance(owner, type):
                setattr(owner, name, value)
            else:
                owner[name] = value

    # The first three speed-ups alone (before reuse_parsed_expressions, walk_trees_once_per_kind,
    # sort_items_by_key_values, queries_leave_the_table_unsorted, list_each_handlers_methods_once and
    # reuse_parsed_conditions).
    expressions = {"make", "depth_first", "validators_deepcopy", "all_items", "query", "method_names",
                   "condition_parse"}
    earlier = [original if key in expressions else fast
               for (_, _, key), original, fast in zip([*REPLACED, *MODULES], originals, faster, strict=True)]
    return {"moto": lambda: put(originals), "local_moto_first_three": lambda: put(earlier),
            "local_moto": lambda: put(faster)}


def claim(client: Any, number: int) -> None:
    client.query(TableName=TABLE, IndexName="available", KeyConditionExpression="avail_env = :env",
                 ExpressionAttributeValues={":env": {"S": ENV}}, Limit=4)
    client.transact_write_items(TransactItems=[
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": f"SERVER#{ENV}"}, "sk": {"S": f"s{number % SERVERS:03}"}},
                    "UpdateExpression": "SET #was = :to, #claimed_was = :claimed, claimed_at = :at, stop_at = :stop, "
                                        "due_at = :stop, kind_sk = :kind",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": {"#was": "state", "#claimed_was": "claimed"},
                    "ExpressionAttributeValues": {":to": {"S": "running"}, ":claimed": {"BOOL": True},
                                                  ":at": {"N": str(number)}, ":stop": {"N": str(number + 21600)},
                                                  ":kind": {"S": f"{number + 21600:012}"}}}},
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": f"POOL#{ENV}"}, "sk": {"S": "POOL"}},
                    "UpdateExpression": "ADD available :down, running :up", "ConditionExpression": "available > :none",
                    "ExpressionAttributeValues": {":down": {"N": "-1"}, ":up": {"N": "1"}, ":none": {"N": "0"}}}}])


def measure(claims: int, ended: int) -> dict[str, list[float]]:
    switch = variants()
    timings: dict[str, list[float]] = {name: [] for name in switch}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Dynamo(TABLE, "us-east-1", client).create_table()
        for number in range(SERVERS):
            client.put_item(TableName=TABLE, Item={
                "pk": {"S": f"SERVER#{ENV}"}, "sk": {"S": f"s{number:03}"}, "state": {"S": "available"},
                "claimed": {"BOOL": False}, "avail_env": {"S": ENV}, "created_at": {"N": str(number)}})
        for number in range(ended):
            client.put_item(TableName=TABLE, Item={
                "pk": {"S": f"SERVER#old-{number % 50}"}, "sk": {"S": f"e{number:05}"}, "state": {"S": "stopped"},
                "claimed": {"BOOL": True}, "created_at": {"N": str(number)}, "expires_at": {"N": "86400"},
                "reason": {"S": "culled: idle for 600 s"}, "location": {"S": f"http://127.0.0.1:8000/user/{number:032x}/"}})
        client.put_item(TableName=TABLE, Item={"pk": {"S": f"POOL#{ENV}"}, "sk": {"S": "POOL"},
                                               "available": {"N": str(10 * claims)}, "running": {"N": "0"}})
        done = 0
        while done < claims:
            for name, put in switch.items():
                put()
                for number in range(done, min(done + BLOCK, claims)):
                    started = time.perf_counter()
                    claim(client, number)
                    timings[name].append(time.perf_counter() - started)
            done += BLOCK
        switch["local_moto"]()
    return timings


def summary(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "median": statistics.median(samples),
            "p95": statistics.quantiles(samples, n=20, method="inclusive")[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--ended", type=int, default=1000, help="stopped servers in the table besides the pool")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    results = {name: summary(samples) for name, samples in measure(options.claims, options.ended).items()}
    results["ended"] = {"n": options.ended}
    for name, peer in (("ratio", "moto"), ("ratio_first_three", "local_moto_first_three")):
        results[name] = {q: results["local_moto"][q] / results[peer][q] for q in ("median", "p95")}
    for name in ("moto", "local_moto_first_three", "local_moto"):
        print(f"{name:<31} median {results[name]['median'] * 1000:6.2f} ms   p95 {results[name]['p95'] * 1000:6.2f} ms"
              f"   (n={results[name]['n']})")
    print(f"local_moto / moto: {results['ratio']['median']:.2f} (median), {results['ratio']['p95']:.2f} (p95); "
          f"over the first three: {results['ratio_first_three']['median']:.2f} (median), "
          f"{results['ratio_first_three']['p95']:.2f} (p95)")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
