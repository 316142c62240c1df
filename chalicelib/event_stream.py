"""BinderHub's ``/build/{provider}/{spec}`` as a server-sent event stream, for whichever server streams it.

The stream stays open until ``ready`` or ``failed``: Thebe gives up at a browser's first ``error``
event, which fires whenever the server ends the response, so a stream that ends early and counts on
EventSource's reconnection fails under Thebe (thebe-core's ``server.ts``: ``es.onerror`` closes and
rejects). While nothing happens a comment goes out every 25 s, as BinderHub's keepalive does, so no
proxy on the way takes the quiet connection for a dead one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Callable
from urllib.parse import urlsplit

from chalicelib.services.launches import Event

KEEPALIVE = b":keepalive\n\n"
KEEPALIVE_SECONDS = 25.0
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}  # nginx and its kin pass each event on at once
# At the root and under /api/ (the seeds' "potentially with a leading /api/ path").
BUILD_PATH = re.compile(r"^(?:/api)?/build/(?P<provider>[^/]+)/(?P<spec>.+)$")


def build_request(raw_path: str) -> tuple[str, str] | None:
    """(provider, spec) of a ``/build/`` request's path, spec still escaped as sent; None for other paths."""
    match = BUILD_PATH.match(urlsplit(raw_path).path)
    return (match["provider"], match["spec"]) if match else None


def encode(event: Event) -> bytes:
    lines = [f"id: {event.id}"] if event.id else []
    lines.append("data: " + json.dumps(event.data()))
    return ("\n".join(lines) + "\n\n").encode()


def stream(events: Iterator[Event | None], write: Callable[[bytes], None],
           clock: Callable[[], float] = time.monotonic) -> None:
    """Write ``events`` as they come (None: nothing new, a keepalive if it has been quiet) until the last."""
    written = clock()
    for event in events:
        if event is not None:
            write(encode(event))
        elif clock() - written >= KEEPALIVE_SECONDS:
            write(KEEPALIVE)
        else:
            continue
        written = clock()
