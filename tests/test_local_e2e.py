"""`make run`, end to end: local mode in its own process, used over real HTTP the way a person would.

The tests share one local mode (a module fixture) and run in file order: the last one stops it
with Ctrl-C (SIGINT) and checks that every notebook server and kernel went with it.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import websocket

from tests.local_mode import LocalMode, alive, call, local_mode, wait_for
from tests.local_repo import make_repository

ADMIN = "e2e-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("local-mode"), ADMIN) as mode:
        yield mode


@pytest.fixture(scope="module")
def environment(local: LocalMode, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local git repository (its absolute path), built and staged through the API."""
    repository: Path = tmp_path_factory.mktemp("repositories") / "analysis"
    make_repository(repository)
    return local.build_and_stage(repository)


def execute(base_url: str, token: str, kernel_id: str, code: str) -> str:
    """Run ``code`` in a kernel over its websocket (Jupyter's JSON messages) and return its stdout."""
    ws_url = base_url.replace("http://", "ws://", 1) + f"api/kernels/{kernel_id}/channels?token={token}"
    connection = websocket.create_connection(ws_url, timeout=30)
    msg_id = uuid.uuid4().hex
    connection.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                   "username": "e2e", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    stdout, replied, idle = [], False, False
    try:
        while not (replied and idle):
            message = json.loads(connection.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # the server's own kernel_info nudges
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif kind == "execute_reply":
                assert content["status"] == "ok", content
                replied = True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        connection.close()
    return "".join(stdout)


def test_cold_deployment_serves_the_repository_and_runs_code(local: LocalMode, environment: str) -> None:
    assert f"API          {local.base}" in local.output() and f"admin token  {ADMIN}" in local.output()
    launched = local.api("POST", f"/deployments/{environment}")
    assert launched.status == 202 and launched.body["status"] == "starting", launched.body
    server_id = launched.body["id"]
    location = wait_for(lambda: local.api("GET", f"/deployments/{environment}/{server_id}").body.get("location"),
                        30, "the cold server gets a location")
    base_url, token = location.split("?token=")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/user/[0-9a-f]{32}/", base_url), base_url
    assert server_id not in location  # the id reads the token back (GET /deployments/{env}/{id}): never in a URL
    assert call("GET", location).status == 200

    contents = call("GET", f"{base_url}api/contents?token={token}")
    assert contents.status == 200
    assert {"hello.py", "analysis.ipynb"} <= {entry["name"] for entry in contents.body["content"]}
    assert call("GET", f"{base_url}api/contents").status in (401, 403)  # no token, no files

    kernel = call("POST", f"{base_url}api/kernels?token={token}", {"name": "python3"})
    assert kernel.status == 201, kernel.body
    assert execute(base_url, token, kernel.body["id"], "print(6*7)") == "42\n"

    server = local.server(location)
    processes = [server, *server.children(recursive=True)]  # the server and its kernel
    assert len(processes) >= 2
    deleted = local.api("DELETE", f"/deployments/{environment}/{server_id}")
    assert deleted.status == 202 and deleted.body["status"] == "stopping", deleted.body
    wait_for(lambda: not any(alive(p) for p in processes), 15, "the server and its kernel exit")
    wait_for(lambda: local.api("GET", f"/deployments/{environment}/{server_id}").status == 410,
             15, "the server is reported gone")


def test_a_pool_hands_out_ready_servers_and_refills(local: LocalMode, environment: str) -> None:
    def available() -> int:
        return int(local.api("GET", f"/pools/{environment}").body["available"])

    assert local.api("POST", f"/pools/{environment}", {"size": 2}).status == 200
    wait_for(lambda: available() == 2, 30, "the pool fills to 2")
    claimed = local.api("POST", f"/deployments/{environment}")
    assert claimed.status == 201 and claimed.body["status"] == "running", claimed.body
    assert call("GET", claimed.body["location"]).status == 200  # ready the moment it is handed out
    wait_for(lambda: available() == 2, 30, "the pool refills to 2")


def test_ctrl_c_stops_local_mode_and_every_server_it_started(local: LocalMode, environment: str) -> None:
    processes = local.servers()
    assert len(processes) >= 3  # the pool's two and the one handed out, at least
    local.process.send_signal(signal.SIGINT)
    assert local.process.wait(30) == 0, local.output()
    assert [p.pid for p in processes if alive(p)] == []


def test_an_existing_dynamodb_endpoint_is_used_and_its_table_created_once(tmp_path: Path) -> None:
    """AWS_ENDPOINT_URL set (DynamoDB Local, say): no embedded database; the table is made if missing."""
    import boto3
    from moto.server import ThreadedMotoServer

    database = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    database.start()
    endpoint = "http://{}:{}".format(*database.get_host_and_port())
    try:
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id="x", aws_secret_access_key="x")
        before = set(dynamodb.list_tables()["TableNames"])  # moto's backends are the process's
        table = f"local-e2e-{uuid.uuid4().hex[:8]}"
        for run in ("first", "second"):  # the second run finds the table there already
            # No BINDERLESS_ADMIN_TOKEN: local mode makes one up and prints it.
            with local_mode(tmp_path / run, "", AWS_ENDPOINT_URL=endpoint, BINDERLESS_TABLE_NAME=table) as local:
                assert f"{endpoint} (AWS_ENDPOINT_URL)" in local.output()
                assert local.api("GET", "/pools").status == 401
                printed = re.search(r"admin token +(\S+)", local.output())
                assert printed and len(printed[1]) >= 32
                local.token = printed[1]
                assert local.api("GET", "/pools").body == {}
            assert set(dynamodb.list_tables()["TableNames"]) - before == {table}
    finally:
        # moto's backends are per process, shared by every moto server and mock in it: leave no table behind
        # for a later test of this worker (tests/test_load.py would find "binderless" there already).
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(reset, timeout=30).close()
        database.stop()
