"""`make run` under a burst: concurrent anonymous launches over real HTTP against ``python -m chalicelib.local``.

Local mode embeds moto's DynamoDB server; it must be atomic per request on its own (not only in a
test harness), or two claims of one pooled server both pass their condition and two readers get
the same server. Five rounds against one local mode: each hands out every pooled server exactly
once, each location opens only with its own token, and the pool's counters equal its items.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from chalicelib.store import Store
from tests.load import compare_counts, run_concurrently
from tests.local_mode import LocalMode, local_mode, wait_for
from tests.local_repo import make_repository

ADMIN = "load-admin-" + secrets.token_hex(16)
# A pool of 6 and 20 launches at once from one anonymous client that may hold 8 servers: the pool,
# then 2 cold servers, then 429s.
POOL, LAUNCHES, EXTRA = 6, 20, 2
ROUNDS = 3
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Round:
    statuses: Counter[int] = field(default_factory=Counter)
    replies: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("local-load"), ADMIN,
                    BINDERLESS_MAX_SERVERS_PER_CLIENT=str(POOL + EXTRA),
                    BINDERLESS_LAUNCH_RATE_LIMIT="0", BINDERLESS_LOCAL_TICK="0.5") as mode:
        yield mode


@pytest.fixture(scope="module")
def environment(local: LocalMode, tmp_path_factory: pytest.TempPathFactory) -> str:
    repository = tmp_path_factory.mktemp("load-repositories") / "analysis"
    make_repository(repository)
    name = local.build_and_stage(repository)
    assert local.api("PUT", f"/pools/{name}", {"size": POOL}).status == 200
    return name


@pytest.fixture(scope="module")
def store(local: LocalMode) -> Store:
    """The embedded database itself, at the endpoint the banner names, to count items."""
    endpoint = re.search(r"database\s+(http://\S+)", local.output())
    assert endpoint, local.output()
    client = boto3.client("dynamodb", endpoint_url=endpoint.group(1), region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local", aws_session_token="local")
    return Store("binderless", "us-east-1", client)


def burst(local: LocalMode, environment: str) -> Round:
    """LAUNCHES anonymous POSTs released at once, one thread each."""
    result, lock, start = Round(), threading.Lock(), threading.Barrier(LAUNCHES)

    def launch(_: int) -> None:
        start.wait()
        reply = local.api("POST", f"/deployments/{environment}", admin=False)
        with lock:
            result.statuses[reply.status] += 1
            if isinstance(reply.body, dict) and "id" in reply.body:
                result.replies.append(reply.body)

    result.seconds = run_concurrently(launch, LAUNCHES, LAUNCHES)
    return result


def counters_and_items(store: Store, environment: str) -> tuple[dict[str, int], dict[str, int]]:
    """The pool's counters and the same numbers counted from its server items, read while nothing moved."""
    for _ in range(50):
        before = store.environments.get_pool(environment, consistent=True)
        servers = list(store.servers.live(environment))
        after = store.environments.get_pool(environment, consistent=True)
        assert before is not None and after is not None
        if before == after:
            return compare_counts(after, servers)
        time.sleep(0.05)
    raise AssertionError("the pool never held still")


def opens_with(location: str, token: str) -> int:
    base = location.split("?token=")[0]
    request = urllib.request.Request(base + "api/status", headers={"Authorization": f"token {token}"})
    try:
        with NO_PROXY.open(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


def pool_is_full(local: LocalMode, environment: str) -> bool:
    pool = local.api("GET", f"/pools/{environment}").body
    servers = local.api("GET", f"/deployments/{environment}").body
    return pool["available"] == POOL and pool["running"] == 0 and len(servers) == POOL


@pytest.mark.parametrize("round_number", range(1, ROUNDS + 1))
def test_a_burst_hands_out_each_pooled_server_once(local: LocalMode, environment: str, store: Store,
                                                   round_number: int) -> None:
    wait_for(lambda: pool_is_full(local, environment), 90, f"round {round_number}: the pool is full", every=0.25)

    result = burst(local, environment)

    ids = [reply["id"] for reply in result.replies]
    locations = [reply["location"] for reply in result.replies if "location" in reply]
    assert len(ids) == len(set(ids)), f"a server was handed out twice: {Counter(ids).most_common(3)}"
    assert len(locations) == len(set(locations)), "a location was handed out twice"
    assert result.statuses[201] >= POOL, result.statuses  # every pooled server went to somebody
    assert len(locations) == result.statuses[201]  # each pool hit came with its location
    assert result.statuses[201] + result.statuses[202] == POOL + EXTRA  # the client's cap held, exactly
    assert result.statuses[201] + result.statuses[202] + result.statuses[429] == LAUNCHES, result.statuses
    tokens = [location.split("?token=")[1] for location in locations]
    for number, location in enumerate(locations):
        assert opens_with(location, tokens[number]) == 200, location
        assert opens_with(location, tokens[number - 1]) == 403, "another server's token opened it"
    counters, from_items = counters_and_items(store, environment)
    assert counters == from_items, (counters, from_items)
    print(f"round {round_number}: {LAUNCHES} launches in {result.seconds * 1000:.0f} ms: "
          f"{result.statuses[201]} from the pool, {result.statuses[202]} cold, {result.statuses[429]} refused (429)")

    for reply in result.replies:  # hand everything back; the pool refills for the next round
        assert local.api("DELETE", f"/deployments/{environment}/{reply['id']}").status == 202
