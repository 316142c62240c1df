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
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from chalicelib.services.launches import Event

if TYPE_CHECKING:
    from chalicelib.providers import Spec

KEEPALIVE = b":keepalive\n\n"
# Said (a comment: EventSource ignores it) when a stream ends before its launch does, at the time limit of
# whoever serves it (the AWS function's); EventSource reconnects with Last-Event-ID and follows the launch.
TIME_LIMIT = b":this stream ends at its time limit; reconnect with Last-Event-ID to follow the launch\n\n"
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
           clock: Callable[[], float] = time.monotonic, *, keepalive: float = KEEPALIVE_SECONDS,
           until: float | None = None) -> None:
    """Write ``events`` as they come (None: nothing new, a keepalive if it has been quiet for ``keepalive``
    seconds) until the last, or until ``clock()`` reaches ``until``: then the stream ends with TIME_LIMIT."""
    written = clock()
    for event in events:
        if until is not None and clock() >= until:
            write(TIME_LIMIT)
            return
        if event is not None:
            write(encode(event))
        elif clock() - written >= keepalive:
            write(KEEPALIVE)
        else:
            continue
        written = clock()


def launch_events(provider: str, spec: str, headers: Mapping[str, str], address: str) -> Iterator[Event | None]:
    """The events of ``GET /build/{provider}/{spec}`` (``headers`` with lower-case names; ``address``: the
    client's) for whichever server streams them. Whatever goes wrong is a ``failed`` event, as BinderHub
    tells it: an EventSource cannot read an error reply's body."""
    from chalicelib.context import get_services
    from chalicelib.errors import BinderError
    from chalicelib.services.launches import failed

    try:
        parsed, client = requested_launch(provider, spec, headers, address)
        return get_services().launches.follow(parsed, client=client, last_event_id=headers.get("last-event-id", ""))
    except BinderError as error:
        return iter([failed(error)])


def requested_launch(provider: str, spec: str, headers: Mapping[str, str], address: str) -> tuple[Spec, str | None]:
    """The launch asked for, and the anonymous client it counts against (None with an API token)."""
    from chalicelib.context import get_services
    from chalicelib.errors import BinderError
    from chalicelib.providers import parse
    from chalicelib.routes.api import client_key

    services = get_services()
    auth = services.auth
    for endpoint in ("builds.create", "deployments.create"):  # a launch by repository does both
        auth.authorize(endpoint, headers.get("authorization"))
    parsed = parse(provider, spec, allow_file=services.builds.builder.local_repositories)  # file://: local builds
    try:
        auth.scopes_of(headers.get("authorization"))
        return parsed, None
    except BinderError:
        return parsed, client_key(address)
