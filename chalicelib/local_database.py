"""Local mode's embedded DynamoDB: moto's server, one request at a time.

DynamoDB makes every request atomic: a TransactWriteItems either passes all its conditions and
writes, or writes nothing, whatever else runs at once. moto's backends are not thread-safe, and
its threaded server runs each request in a thread of its own, so two concurrent transactions can
both pass the same condition (the same pooled server handed to two clients) or crash with
"dictionary changed size during iteration". Serialising requests at the server gives each one the
atomicity DynamoDB gives; the API's own requests still interleave between their calls, as
Lambdas do. A call takes moto 4 to 16 ms of CPU here (with local_moto's speed-ups). Serving moto from
a child process of its own was tried and measured: no faster (0.48 and 0.69 s for a burst of 10,
against 0.37 and 0.41 s in this process), so it stays in local mode's process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Callable

from moto.server import ThreadedMotoServer

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
