"""``GET /v2/{provider}/{spec}``: the page a reader lands on from a Binder link or badge.

It follows the launch's event stream (``/build/...`` on the same origin), shows each phase on a
progress bar with the build log folded beneath, then sends the browser to the server:
``url + path + ?token=``, where ``path`` is BinderHub's: ``urlpath`` as given, ``labpath=X`` as
``lab/tree/X``, ``filepath=X`` as ``tree/X``. On failure it says what happened and what to do. The
page holds no token: the stream brings it, and the browser goes straight on with it.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from urllib.parse import parse_qs, quote, unquote, urlsplit

from chalicelib.page_headers import fill, page_headers

V2_PATH = re.compile(r"^(?:/api)?/v2/(?P<provider>[^/]+)/(?P<spec>.+)$")
PATH_PARAMETERS = ("urlpath", "labpath", "filepath")
PHASES = ["waiting", "fetching", "building", "built", "launching", "ready"]
V2_BASE = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")  # a stage or base path mapping; anything else is not used


def launch_request(raw_path: str) -> tuple[str, str, dict[str, str]] | None:
    """(provider, spec as sent, BinderHub's path parameters) of a ``/v2/`` request; None for other paths."""
    parts = urlsplit(raw_path)
    match = V2_PATH.match(parts.path)
    if not match:
        return None
    query = {name: values[0] for name, values in parse_qs(parts.query).items() if name in PATH_PARAMETERS}
    return match["provider"], match["spec"], query


def server_path(query: Mapping[str, str]) -> str:
    """The path on the server BinderHub's parameters ask for (the page computes the same in script)."""
    if query.get("urlpath"):
        return query["urlpath"].lstrip("/")
    if query.get("labpath"):
        return "lab/tree/" + query["labpath"].lstrip("/")
    if query.get("filepath"):
        return "tree/" + query["filepath"].lstrip("/")
    return ""


def page(provider: str, spec: str, query: Mapping[str, str], stream_prefix: str = "") -> str:
    """The launch page; ``stream_prefix`` is the path the API is served under ("/api" behind API Gateway's
    stage, or when the page itself was asked for under /api/): the stream is on the same origin."""
    return rendered(provider, spec, query, stream_prefix)[0]


def rendered(provider: str, spec: str, query: Mapping[str, str], stream_prefix: str = "") -> tuple[str, dict[str, str]]:
    """(the page, its headers): its Content-Security-Policy allows its script and style by their hashes."""
    config = {"stream": f"{stream_prefix}/build/{provider}/{spec}", "path": server_path(query), "phases": PHASES}
    # No "<" at all in the script: nothing of the link can end the element or open a comment in it.
    script = fill(SCRIPT, CONFIG=json.dumps(config).replace("<", "\\u003c"))
    body = fill(PAGE, STYLE=STYLE, TITLE=html.escape(f"{provider}/{spec}"), SCRIPT=script)
    return body, page_headers((script,), (STYLE,))


def locate(context_path: str, provider: str, uri_params: Mapping[str, str]) -> tuple[str, str]:
    """(the path the API is served under, the spec as sent) of a ``/v2/{provider}/{proxy+}`` request.

    API Gateway names the greedy parameter ``proxy``; the spec is read from the request's path, which
    keeps its escapes ("https%3A%2F%2F..."), the base being what precedes ``/v2/<provider>/``. Chalice's
    local gateway (local mode, ``chalice.test.Client``) matches ``{proxy+}`` as one segment only and names
    it ``proxy+``: ``local_path`` sends the spec quoted into that segment, so it is unquoted here."""
    base, found, rest = context_path.partition(f"/v2/{provider}/")
    base = base if found and V2_BASE.fullmatch(base) else ""
    if "proxy+" in uri_params:
        return base, unquote(uri_params["proxy+"])
    return base, rest if found else uri_params.get("proxy", "")


def local_path(raw_path: str) -> str | None:
    """A ``/v2/`` request's path as Chalice's local gateway can route it (see ``locate``); None for others."""
    parts = urlsplit(raw_path)
    match = V2_PATH.match(parts.path)
    if not match:
        return None
    path = f"/v2/{match['provider']}/{quote(match['spec'], safe='')}"
    return f"{path}?{parts.query}" if parts.query else path


STYLE = """
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; word-break: break-all; }
  #bar { height: .6rem; background: #eee; border-radius: .3rem; overflow: hidden; }
  #fill { height: 100%; width: 0; background: #f5a252; transition: width .3s; }
  #fill.failed { background: #c0392b; }
  #phase { margin: .8rem 0; font-weight: 600; }
  pre { background: #f6f6f6; padding: .6rem; max-height: 20rem; overflow: auto; font-size: .8rem; }
  #failure { color: #c0392b; }
"""

SCRIPT = """
"use strict";
const config = {{CONFIG}};
const fill = document.getElementById("fill"), phase = document.getElementById("phase");
const log = document.getElementById("log"), failure = document.getElementById("failure");
const stream = new EventSource(config.stream);
stream.onmessage = (event) => {
  const message = JSON.parse(event.data);
  log.textContent += message.message || "";
  const step = config.phases.indexOf(message.phase);
  if (step >= 0) fill.style.width = `${Math.round(100 * (step + 1) / config.phases.length)}%`;
  phase.textContent = message.phase;
  if (message.phase === "ready") {
    stream.close();
    phase.textContent = "Ready: opening the server...";
    const target = message.url + config.path;
    window.location.href = target + (target.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(message.token);
  } else if (message.phase === "failed") {
    stream.close();
    fill.classList.add("failed");
    phase.textContent = "The launch failed";
    failure.hidden = false;
    failure.textContent = message.message + (message.status_code === 429
      ? " Too many launches from here right now: wait a minute, then reload this page."
      : " Reload this page to try again; if it fails again, check the repository and its ref.");
  }
};
stream.onerror = () => {
  if (stream.readyState === EventSource.CLOSED) {
    phase.textContent = "Lost the connection to the launcher: reload this page to try again.";
  }
};
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Launching {{TITLE}} - binderless</title>
<style>{{STYLE}}</style>
</head>
<body>
<h1>Launching {{TITLE}}</h1>
<div id="bar"><div id="fill"></div></div>
<p id="phase">Starting...</p>
<p id="failure" hidden></p>
<details><summary>Build log</summary><pre id="log"></pre></details>
<script>{{SCRIPT}}</script>
</body>
</html>
"""
