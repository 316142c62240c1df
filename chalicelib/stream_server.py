"""BinderHub's ``/build/{provider}/{spec}`` event stream on AWS: the streaming function's web server.

API Gateway streams a REST API's reply only from a Lambda proxy integration in STREAM transfer
mode, which invokes the function with ``InvokeWithResponseStream``; a Python function streams through
the AWS Lambda Web Adapter layer. The adapter (``AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap``) runs the
function's handler, ``chalicelib/stream_server.sh``, which starts this server; waits until
``READY_PATH`` answers; then hands each invocation to it as an HTTP request and streams the reply
back (``AWS_LWA_INVOKE_MODE=response_stream``). scripts/single_stack.py wires the function, its layer
and the routes.

It serves ``GET /build/{provider}/{spec}`` (and under ``/api/``: a custom domain's base path mapping
``api`` reaches the function with the base path in the path) exactly as local mode's server does:
``event_stream.launch_events`` and ``event_stream.stream``, Last-Event-ID, ``failed`` events for
errors, the origin policy's CORS headers. Everything else is 404 JSON. A stream ends by itself at
``BINDERLESS_STREAM_SECONDS`` (set below the function's timeout), so the reader's EventSource sees a
clean end and reconnects with Last-Event-ID instead of a reply cut by Lambda.

    python -m chalicelib.stream_server        # PORT / AWS_LWA_PORT (8080); BINDERLESS_* as the API's

With ``BINDERLESS_BACKEND=local`` it wires local mode's backend and database (tests, a local look).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from chalicelib import event_stream
from chalicelib.errors import BinderError, NotFound, to_response

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # only the adapter, in the same sandbox, talks to it
DEFAULT_PORT = 8080  # the adapter's default AWS_LWA_PORT
READY_PATH = "/stream-ready"  # AWS_LWA_READINESS_CHECK_PATH
NO_ROUTE = NotFound("This function serves only GET /build/{provider}/{spec}; GET /openapi.json lists the API.")
# The adapter forwards API Gateway's request context in this header, overriding one a client sends
# (aws-lambda-web-adapter 1.0.0: "Override user-set x-amzn-{lambda,request}-context headers to prevent spoofing").
REQUEST_CONTEXT = "x-amzn-request-context"


@dataclass(frozen=True)
class StreamConfig:
    """The server's own settings (the app's are chalicelib.config's), read once at start."""

    port: int = DEFAULT_PORT
    keepalive: float = event_stream.KEEPALIVE_SECONDS
    seconds: float | None = None  # how long one stream may last; None: until its launch ends

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StreamConfig:
        seconds = environ.get("BINDERLESS_STREAM_SECONDS", "").strip()
        return cls(port=int(environ.get("AWS_LWA_PORT") or environ.get("PORT") or DEFAULT_PORT),
                   keepalive=float(environ.get("BINDERLESS_STREAM_KEEPALIVE") or event_stream.KEEPALIVE_SECONDS),
                   seconds=float(seconds) if seconds else None)


class StreamServer(ThreadingHTTPServer):
    daemon_threads = True  # a stream still open does not hold the process at shutdown
    request_queue_size = 128

    def __init__(self, config: StreamConfig) -> None:
        super().__init__((HOST, config.port), StreamHandler)
        self.config = config


class StreamHandler(BaseHTTPRequestHandler):
    server: StreamServer
    protocol_version = "HTTP/1.1"  # the adapter keeps its connections; a stream ends with Connection: close
    disable_nagle_algorithm = True  # each event leaves at once

    def log_message(self, format: str, *args: Any) -> None:
        """No line per request: API Gateway counts them, and paths carry repository names."""

    def do_GET(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        if urlsplit(self.path).path == READY_PATH:
            self._reply(200, {"Content-Type": "application/json"}, json.dumps({"status": "ok"}))
            return
        build = event_stream.build_request(self.path)
        if build is None:
            self._error(NO_ROUTE)
            return
        from chalicelib.routes.middleware import origin_policy

        policy = origin_policy()
        try:
            policy.check(headers)
        except BinderError as error:
            self._error(error)
            return
        events = event_stream.launch_events(*build, headers, self._client_address(headers))
        self.send_response(200)
        for name, value in {**event_stream.HEADERS, **policy.response_headers(headers.get("origin")),
                            "Connection": "close"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        config = self.server.config
        until = time.monotonic() + config.seconds if config.seconds is not None else None
        with contextlib.suppress(OSError):  # the reader went away: a reconnect with Last-Event-ID finds its server
            event_stream.stream(events, self._write_now, keepalive=config.keepalive, until=until)

    def _not_served(self) -> None:
        self._error(NO_ROUTE)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_served

    def _client_address(self, headers: Mapping[str, str]) -> str:
        """The reader's address: API Gateway's ``identity.sourceIp`` behind the adapter (every connection
        comes from the adapter), else the connection's own."""
        from chalicelib.context import get_services

        if get_services().settings.backend == "aws" and REQUEST_CONTEXT in headers:
            with contextlib.suppress(ValueError, AttributeError):
                source = json.loads(headers[REQUEST_CONTEXT]).get("identity", {}).get("sourceIp")
                if isinstance(source, str) and source:
                    return source
        return str(self.client_address[0])

    def _write_now(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, error: BinderError) -> None:
        status, headers, body = to_response(error)
        self._reply(status, {name: str(value) for name, value in headers.items()}, body)

    def _reply(self, status: int, headers: Mapping[str, str], body: str) -> None:
        payload = body.encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def prepare_backend(cleanup: ExitStack) -> None:
    """The services, built now rather than at the first stream (the adapter waits for readiness, not
    the reader); with the local backend, local mode's database and server events as well."""
    from chalicelib.config import get_settings
    from chalicelib.context import get_services

    if get_settings().backend == "local":
        from chalicelib import local

        local.start_database(cleanup)
        services = local.start_services()
        cleanup.callback(local.stop_servers, services)
        return
    get_services()


def serve(config: StreamConfig, stop: threading.Event) -> None:
    with ExitStack() as cleanup:
        prepare_backend(cleanup)
        server = StreamServer(config)
        cleanup.callback(server.server_close)
        thread = threading.Thread(target=server.serve_forever, name="stream-http", daemon=True)
        thread.start()
        cleanup.callback(server.shutdown)
        log.info("the /build/ stream server listens on http://%s:%d", HOST, config.port)
        print(f"stream server ready on http://{HOST}:{config.port}{READY_PATH}", flush=True)
        stop.wait()


def main() -> int:
    from chalicelib.logs import configure_logging

    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Lambda ends an environment with SIGTERM
        signal.signal(signum, lambda *_: stop.set())
    serve(StreamConfig.from_env(os.environ), stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
