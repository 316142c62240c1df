"""``/user/<name>/…`` with no server behind it: the proxy's default route ends here (JupyterHub's API-only
mode shows "hints about how to get back to a link to start a new server" in the same place).

It answers 410: for a browser (``Accept: text/html``) a page saying the server has ended, why and when
where the store still knows (``stopped_retention``), and a link that launches the same environment
again: its ``/v2/`` link when it was built from a repository, else the API call that launches it. For
programs, the JSON error. Nothing of the request is echoed (its query holds the server's token), and
the page's links are relative to the path the reader is on, so they work on the proxy's origin and on
the API's own (behind API Gateway's stage) alike.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Mapping
from urllib.parse import quote, unquote, urlsplit

from chalicelib.errors import Gone
from chalicelib.page_headers import fill, page_headers
from chalicelib.providers import GIST, GITHUB, GITLAB, Spec

if TYPE_CHECKING:
    from chalicelib.services.deployments import Ended

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # what a server's clients send under its path
ROUTE = re.compile(r"/user/([A-Za-z0-9._~-]{1,128})(?:/|$)")

STYLE = """\
body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}a.button{display:inline-block;padding:.5em 1em;background:#f5a252;color:#fff;
border-radius:4px;text-decoration:none}code{background:#f3f3f3;padding:0 .2em}"""

PAGE = """\
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>This server has ended</title><style>{{STYLE}}</style></head>
<body>
<h1>This Jupyter server has ended</h1>
<p>{{WHY}}</p>
<p>Temporary servers stop when they sit idle, when they reach their maximum lifetime, or when their
user shuts them down. Your work on it is gone unless you downloaded it.</p>
{{AGAIN}}
</body>
</html>
"""


def server_path(context_path: str, uri_params: Mapping[str, str]) -> str:
    """The request's path from ``/user/`` on. API Gateway gives the whole path (behind its stage);
    Chalice's local gateway matches ``{proxy+}`` as one segment, which ``local_path`` quoted the rest into."""
    if "proxy+" in uri_params:
        return "/user/" + unquote(uri_params["proxy+"])
    start = context_path.find("/user/")
    return context_path[start:] if start >= 0 else "/user/"


def local_path(raw_path: str) -> str | None:
    """A ``/user/`` request's path as Chalice's local gateway can route it; None for other paths."""
    path = urlsplit(raw_path).path
    if not path.startswith("/user/") or path == "/user/":
        return None
    return "/user/" + quote(path.removeprefix("/user/"), safe="")  # the query (a token) stays behind


def route_of(path: str) -> str:
    """``/user/<name>/`` of a request path (behind a stage or not), "" when it names none."""
    match = ROUTE.search(path)
    return f"/user/{match[1]}/" if match else ""


def to_root(path: str) -> str:
    """A relative link from ``path`` (``server_path``'s, as the reader's browser sees it from ``/user/`` on)
    to the root the proxy or the stage serves the API under."""
    return "../" * (path.count("/") - 1) or "./"  # from the path's directory: one "../" per segment above


def launch_link(repository: str, ref: str) -> str:
    """The ``/v2/`` path that builds and launches ``repository`` at ``ref`` (BinderHub's links)."""
    provider = ("gist" if repository.startswith(GIST) else "gh" if repository.startswith(GITHUB)
                else "gl" if repository.startswith(GITLAB) else "git")
    return f"v2/{provider}/{Spec(provider, repository, ref or 'HEAD').spec()}"


def error(ended: Ended | None) -> Gone:
    if ended is None:
        return Gone("No server is running at this address: it has ended, or it never existed. "
                    "Launch a new one from the link you started from.")
    why = f" ({ended.reason})" if ended.reason else ""
    return Gone(f"This server of environment '{ended.environment}' has ended{why}. "
                f"POST /deployments/{ended.environment} launches a new one.")


def page(path: str, ended: Ended | None) -> tuple[str, dict[str, str]]:
    """The HTML page and its headers."""
    root = to_root(path)
    if ended is None:
        why = "No server is running at this address: it has ended, or it never existed."
        again = (f'<p>Open the launch link you started from again, or <a href="{html.escape(root)}">start '
                 "a new one</a>.</p>")
    else:
        when = (" on " + datetime.fromtimestamp(ended.when, UTC).strftime("%Y-%m-%d at %H:%M UTC")
                if ended.when else "")
        why = f"It stopped{html.escape(when)}" + (f": {html.escape(ended.reason)}." if ended.reason else ".")
        if ended.repository:
            link = root + launch_link(ended.repository, ended.ref)
            again = (f'<p><a class="button" href="{html.escape(link)}">Launch it again</a> '
                     f"(a new server from {html.escape(ended.repository)}, {html.escape(ended.ref or 'HEAD')})</p>")
        else:
            again = (f"<p>A new server of the same environment: <code>POST /deployments/"
                     f"{html.escape(ended.environment)}</code> on this API.</p>")
    return fill(PAGE, STYLE=STYLE, WHY=why, AGAIN=again), page_headers((), (STYLE,))
