"""An EventSource-like client for BinderHub's ``/build/`` event stream: reads it to its end, event by event."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def events(url: str, last_event_id: str = "", timeout: float = 120,
           token: str | None = None) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Read a /build/ stream to its end as EventSource does: (response headers, events, each its
    ``data`` parsed, with its ``id`` under "_id" when it had one), with ``token`` as an API token if given."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {}),
               **({"Authorization": f"token {token}"} if token else {})}
    request = urllib.request.Request(url, headers=headers)
    received: list[dict[str, Any]] = []
    with NO_PROXY.open(request, timeout=timeout) as response:
        event: dict[str, Any] = {}
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                event["_id"] = line[4:]
            elif line.startswith("data: "):
                event.update(json.loads(line[6:]))
            elif not line and event:
                received.append(event)
                event = {}
        # by name in any case: behind configurable-http-proxy (node) header names come in lower case
        return {name.title(): value for name, value in response.headers.items()}, received
