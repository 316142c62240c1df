"""The API over real HTTP on 127.0.0.1, wired to moto, seeded so the happy paths are reachable."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import LocalDevServer

from chalicelib.local_http import LocalRequestHandler
from tests.conftest import World, auth, body
from tests.helpers import REPO, build_event, run_all_starting, task_event, task_of


class OneAtATime:
    """The app as Chalice's threaded local server sees it: one request at a time, each answer counted.

    In-process moto is not thread-safe, and the server gives each connection a thread. With
    ``serialise=False`` (moto's own server behind, which is safe) requests run concurrently."""

    def __init__(self, app: Chalice, serialise: bool = True) -> None:
        self._app = app
        self._lock: Any = threading.Lock() if serialise else contextlib.nullcontext()
        self._counting = threading.Lock()
        self.answers: Counter[tuple[str, str, int]] = Counter()  # (method, route, status) -> how many

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            response = self._app(event, context)
        route = event["requestContext"]
        with self._counting:
            self.answers[(route["httpMethod"], route["resourcePath"], response["statusCode"])] += 1
        return response


class QuietHandler(LocalRequestHandler):
    """Every method reaches the app (TRACE and QUERY too, which http.server would answer itself) and
    unknown paths get 404 JSON: what API Gateway answers with scripts/gateway_responses.py's responses."""

    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK, about 40 ms a request on a keep-alive connection (4x slower schemathesis runs).
    disable_nagle_algorithm = True


@dataclass
class LiveApi:
    url: str
    app: OneAtATime


@contextmanager
def serve(app: Chalice, *, serialise: bool = True) -> Iterator[LiveApi]:
    """Chalice's local server (what ``chalice local`` runs) on a free port, in a thread."""
    counted = OneAtATime(app, serialise)
    server = LocalDevServer(counted, Config.create(chalice_app=app), "127.0.0.1", 0,  # type: ignore[arg-type]
                            handler_cls=QuietHandler)
    thread = threading.Thread(target=server.server.serve_forever, name="live-api", daemon=True)
    thread.start()
    try:
        yield LiveApi(f"http://127.0.0.1:{server.server.server_address[1]}", counted)
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)


@dataclass
class Seeded:
    """Names and ids that exist, for the operations' examples."""

    image_name: str
    environment_name: str
    server_id: str
    stopped_server_id: str


def seed(client: Any, world: World) -> Seeded:
    """A completed build, a staging with a pool of ready servers, a running and a stopped server."""
    world.git.push(REPO)
    reply = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}), headers=auth())
    image_name = body(reply)["image-name"]
    build_event(client, world, image_name, "SUCCEEDED")
    staging = {"image-name": image_name, "limits": {"cpu": "0.5", "memory": "1G"}}
    environment_name = body(client.http.post("/stagings", body=json.dumps(staging), headers=auth()))[
        "environment-name"]
    client.http.put(f"/pools/{environment_name}", body=json.dumps({"size": 3}), headers=auth())
    run_all_starting(client, world, environment_name)
    running = body(client.http.post(f"/deployments/{environment_name}", headers=auth()))["id"]
    stopped = body(client.http.post(f"/deployments/{environment_name}", headers=auth()))["id"]
    client.http.delete(f"/deployments/{environment_name}/{stopped}", headers=auth())
    task_event(client, world, task_of(world, environment_name, stopped), "STOPPED")
    return Seeded(image_name, environment_name, running, stopped)
