"""Local mode's embedded DynamoDB: moto's server, one request at a time.

DynamoDB makes every request atomic: a TransactWriteItems either passes all its conditions and
writes, or writes nothing, whatever else runs at once. moto's backends are not thread-safe, and
its threaded server runs each request in a thread of its own, so two concurrent transactions can
both pass the same condition (the same pooled server handed to two clients) or crash with
"dictionary changed size during iteration". Serialising requests at the server gives each one the
atomicity DynamoDB gives; the API's own requests still interleave between their calls, as
Lambdas do. A call takes moto 5 to 10 ms of CPU here (with local_moto's speed-ups): the server runs
in a process of its own (``EmbeddedDynamoDB``), so that time is not taken from the API's.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

from moto.server import ThreadedMotoServer

PROJECT = Path(__file__).resolve().parent.parent  # where ``python -m chalicelib...`` finds this package
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def one_at_a_time(app: WsgiApp) -> WsgiApp:
    """``app`` behind a lock, its whole response produced inside it (moto answers lazily otherwise)."""
    lock = threading.Lock()

    def atomic(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return atomic


class AtomicMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` (a thread per connection) that handles one AWS request at a time."""

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = one_at_a_time(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class EmbeddedDynamoDB:
    """The embedded DynamoDB in a process of its own (``python -m chalicelib.local_database``).

    In local mode's own process moto and the API took turns on one interpreter lock: a burst of
    launches spent as long in moto as in the API, one after the other. In a process of its own moto
    runs on the other core. It ends with local mode: ``stop``, or, if local mode is killed outright,
    when its stdin (a pipe from local mode) reaches end of file."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    def start(cls, env: dict[str, str], timeout: float = 60.0) -> EmbeddedDynamoDB:
        process = subprocess.Popen([sys.executable, "-m", "chalicelib.local_database"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env, cwd=PROJECT)
        assert process.stdout is not None
        ready = threading.Timer(timeout, process.kill)  # a child that never says where it listens
        ready.start()
        try:
            line = process.stdout.readline().strip()
        finally:
            ready.cancel()
        if not line.startswith("http://"):
            process.kill()
            raise RuntimeError(f"the embedded DynamoDB did not start (exit code {process.wait()})")
        return cls(process, line)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the child's signal to go
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    """Serve on a free port of 127.0.0.1, say where on stdout, and stop when stdin ends."""
    from chalicelib import local_moto

    local_moto.install()  # moto's costs that grow with the table, gone (local_moto.py says which)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    try:
        sys.stdin.read()  # until local mode closes the pipe, or dies
    finally:
        server.stop()


if __name__ == "__main__":
    main()
