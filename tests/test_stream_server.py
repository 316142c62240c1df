"""The AWS streaming function's web server (chalicelib/stream_server.py), run as the Lambda Web Adapter
runs it: its handler script in a subprocess, the adapter's environment (port, readiness path), read by a
real HTTP client event by event as they arrive.

The adapter itself (a Rust binary in AWS's layer) and API Gateway are not here: no internet to fetch the
layer, and nothing local imitates a STREAM integration. What runs is everything the function runs after
the adapter: the same launch code as local mode, with local mode's backend (a real build and a real
jupyter server) and, in the Lambda's own environment (BINDERLESS_BACKEND=aws), against a moto server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest

from chalicelib.event_stream import KEEPALIVE, TIME_LIMIT
from chalicelib.stream_server import READY_PATH
from tests.local_mode import PROJECT, free_port, wait_for
from tests.local_repo import make_repository

ADMIN = "stream-server-admin-token-0123456789"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
KEEPALIVE_SECONDS = 0.3
HANDLER = PROJECT / "chalicelib" / "stream_server.sh"


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)  # data, with "_id" and "_at" (s since the request)
    comments: list[tuple[float, str]] = field(default_factory=list)
    ended_at: float = 0.0

    @property
    def phases(self) -> list[str]:
        return [event["phase"] for event in self.events]


def read_stream(url: str, *, last_event_id: str = "", token: str | None = ADMIN, timeout: float = 120,
                origin: str = "") -> Stream:
    """Read a /build/ stream line by line as it arrives, noting when each event and comment came."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {}),
               **({"Authorization": f"token {token}"} if token else {}), **({"Origin": origin} if origin else {})}
    started = time.monotonic()
    with NO_PROXY.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        stream, event = Stream(response.status, dict(response.headers)), {}
        for raw in response:
            line, at = raw.decode().rstrip("\n"), time.monotonic() - started
            if line.startswith(":"):
                stream.comments.append((at, line))
            elif line.startswith("id: "):
                event["_id"] = line[4:]
            elif line.startswith("data: "):
                event.update(json.loads(line[6:]), _at=at)
            elif not line and event:
                stream.events.append(event)
                event = {}
        stream.ended_at = time.monotonic() - started
    return stream


def http_get(url: str, method: str = "GET") -> tuple[int, dict[str, str], Any]:
    try:
        with NO_PROXY.open(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def jupyter_servers(self) -> list[psutil.Process]:
        return [child for child in psutil.Process(self.process.pid).children(recursive=True)
                if any(part.startswith("--ServerApp.base_url=/user/") for part in child.cmdline())]


def start_server(work: Path, **env: str) -> Iterator[Server]:
    """The handler script as the adapter's /opt/bootstrap runs it: LAMBDA_TASK_ROOT, the adapter's port."""
    port = free_port()
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "BINDERLESS_"))}
    environ |= {"LAMBDA_TASK_ROOT": str(PROJECT), "AWS_LWA_PORT": str(port), "AWS_LWA_READINESS_CHECK_PATH": READY_PATH,
                "AWS_LWA_INVOKE_MODE": "response_stream", "AWS_DEFAULT_REGION": "us-east-1",
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                "BINDERLESS_ADMIN_TOKEN": ADMIN, "BINDERLESS_STREAM_KEEPALIVE": str(KEEPALIVE_SECONDS), **env}
    work.mkdir(parents=True, exist_ok=True)
    log = work / "stream-server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(HANDLER)], cwd=work, env=environ, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        assert process.poll() is None, f"the stream server exited:\n{log.read_text()}"
        try:
            return http_get(server.base + READY_PATH)[0] == 200
        except OSError:
            return False

    try:
        wait_for(ready, 30, "the stream server answers its readiness path")
        yield server
    finally:
        process.terminate()  # SIGTERM, as Lambda ends an environment
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """With local mode's backend and embedded database: real builds, real jupyter servers."""
    work = tmp_path_factory.mktemp("stream-local")
    yield from start_server(work, BINDERLESS_BACKEND="local", BINDERLESS_LOCAL_DIR=str(work / "binderless"),
                            BINDERLESS_CORS_ORIGINS="*", BINDERLESS_LAUNCH_RATE_LIMIT="0")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("stream-repositories") / "answer"
    make_repository(path)
    return path.as_uri()


def build_url(server: Server, repository: str, prefix: str = "") -> str:
    return f"{server.base}{prefix}/build/git/{quote(repository, safe='')}/HEAD"


def test_phases_arrive_one_by_one_and_ready_ends_the_stream(local: Server, repository: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    stream = read_stream(build_url(local, repository))

    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.phases[:2] == ["waiting", "fetching"] and stream.phases[-1] == "ready", stream.phases
    assert {"building", "built", "launching"} <= set(stream.phases)
    arrivals = [event["_at"] for event in stream.events]
    assert arrivals == sorted(arrivals)
    # Each phase went out as it happened: the first long before the server answered, not all at the end.
    assert arrivals[-1] - arrivals[0] > 0.5, arrivals
    assert stream.ended_at - arrivals[-1] < 0.5  # ready ends it: no wait for anything else
    # While the jupyter server started, nothing happened: the keepalive comment kept the stream alive.
    launching = next(event["_at"] for event in stream.events if event.get("_id"))
    assert [at for at, comment in stream.comments if comment == KEEPALIVE.decode().strip() and at > launching]
    ready = stream.events[-1]
    assert ready["url"].endswith("/") and ready["token"] and ready["repo_url"] == repository
    with capsys.disabled():
        print(f"\n  stream server, cold launch: first event {arrivals[0] * 1000:.0f} ms, ready {arrivals[-1]:.2f} s, "
              f"{len(stream.events)} events, {len(stream.comments)} keepalives")


def test_a_reconnect_with_last_event_id_follows_the_same_server(local: Server, repository: str) -> None:
    first = read_stream(build_url(local, repository))
    ready = first.events[-1]
    servers = {process.pid for process in local.jupyter_servers()}

    for prefix in ("", "/api"):
        again = read_stream(build_url(local, repository, prefix), last_event_id=ready["_id"])
        assert again.phases == ["launching", "ready"], again.phases
        assert (again.events[-1]["url"], again.events[-1]["token"]) == (ready["url"], ready["token"])

    assert {process.pid for process in local.jupyter_servers()} == servers  # none started for the reconnects


@pytest.mark.parametrize("path", ["/build/svn/some/thing", "/api/build/gh/no-repo"])
def test_a_spec_no_provider_reads_is_a_failed_event(local: Server, path: str) -> None:
    stream = read_stream(local.base + path, token=None, origin="https://book.example.org")

    assert stream.status == 200 and stream.phases == ["failed"]
    assert stream.events[0]["status_code"] == 400 and stream.events[0]["message"]
    assert stream.headers["Access-Control-Allow-Origin"] == "*"  # as on AWS: any page may launch


@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/health"), ("GET", "/builds/repos"),
                                          ("POST", "/build/gh/a/b/HEAD"), ("DELETE", "/build/gh/a/b/HEAD")])
def test_everything_else_is_404_json(local: Server, method: str, path: str) -> None:
    status, headers, body = http_get(local.base + path, method)

    assert status == 404 and headers["Content-Type"] == "application/json"
    assert set(body) == {"error", "message"} and body["error"] == "NotFound"


# ---------------------------------------------------------------- in the Lambda's environment (moto's DynamoDB)

COMMIT = "a" * 40
REPOSITORY = "https://github.com/binder-examples/requirements"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:  # moto's backends are the process's: leave no table behind for a later test of this worker
        reset = urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(reset, timeout=30).close()
        server.stop()


@pytest.fixture(scope="module")
def store(moto_endpoint: str) -> Any:
    import boto3

    from chalicelib.store import Store

    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint,
                          aws_access_key_id="test", aws_secret_access_key="test")  # noqa: S106 (moto's)
    store = Store("binderless-stream", "us-east-1", client)
    store.dynamo.create_table(if_missing=True)
    return store


@pytest.fixture(scope="module")
def on_aws(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, store: Any) -> Iterator[Server]:
    """As the function's template sets it (scripts/stream_route.py), its AWS calls reaching moto; each
    stream ends at 3 s instead of the function's 885 (room for a keepalive or two even on a busy machine)."""
    yield from start_server(tmp_path_factory.mktemp("stream-aws"), BINDERLESS_BACKEND="aws",
                            BINDERLESS_TABLE_NAME="binderless-stream", AWS_ENDPOINT_URL=moto_endpoint,
                            AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", BINDERLESS_STREAM_SECONDS="3")


def starting_server(store: Any) -> Any:
    """A launch's server, handed out and still starting (no task handle: nothing asks ECS about it)."""
    from chalicelib.models import Build, BuildStatus, Server, ServerState, Staging

    image = "github-com-binder-examples-requirements-" + COMMIT[:12]
    store.builds.create(Build(image_name=image, status=BuildStatus.completed, repository=REPOSITORY, commit=COMMIT,
                              image=f"repo:{image}", created_at=1), poll_at=100)
    store.environments.create_staging(Staging(environment_name=f"{image}-env", image_name=image, image=f"repo:{image}",
                                              cpu=1024, memory=2048))
    server = Server(environment_name=f"{image}-env", id="s1", state=ServerState.starting, claimed=True,
                    token="t" * 48, created_at=int(time.time()))
    store.servers.create([server], due_at=int(time.time()) + 600)
    return server


def test_on_aws_a_stream_ends_cleanly_at_its_time_limit_and_a_reconnect_follows_the_launch(
        on_aws: Server, store: Any) -> None:
    from chalicelib.models import ServerState

    server = starting_server(store)
    url = f"{on_aws.base}/build/gh/binder-examples/requirements/HEAD"
    event_id = f"server/{server.environment_name}/{server.id}"

    cut = read_stream(url, last_event_id=event_id, token=None)

    assert cut.phases == ["launching"] and cut.events[0]["_id"] == event_id
    assert cut.comments[-1][1] == TIME_LIMIT.decode().strip()  # said, then the stream ended by itself
    assert 2.9 < cut.ended_at < 6, cut.ended_at
    assert KEEPALIVE.decode().strip() in [comment for _, comment in cut.comments]  # quiet meanwhile

    store.servers.transition(server, ServerState.running, url="http://10.0.0.7:8888/user/s1/")
    resumed = read_stream(url, last_event_id=event_id, token=None)

    assert resumed.phases == ["launching", "ready"]
    ready = resumed.events[-1]
    assert (ready["url"], ready["token"]) == ("http://10.0.0.7:8888/user/s1/", "t" * 48)
    assert ready["binder_ref_url"] == f"{REPOSITORY}/tree/{COMMIT}" and ready["_id"] == event_id


def test_on_aws_a_local_repository_is_a_failed_event_and_any_page_may_read_it(on_aws: Server) -> None:
    stream = read_stream(f"{on_aws.base}/build/git/{quote('file:///etc', safe='')}/HEAD", token=None,
                         origin="https://book.example.org")

    assert stream.phases == ["failed"] and stream.events[0]["status_code"] == 400
    assert stream.headers["Access-Control-Allow-Origin"] == "*"
    assert http_get(on_aws.base + "/builds/repos")[0] == 404
