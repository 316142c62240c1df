"""Router adapters: the proxy in front of the servers (the ``Router`` port in ``base``).

``DirectRouter`` is no proxy at all: a reader opens the server's own URL, as before there was a proxy.
``ChpRouter`` drives configurable-http-proxy's REST API (``/api/routes``), as JupyterHub's
``ConfigurableHTTPProxy`` does: ``POST /api/routes/<path>`` with ``{"target": ..., <data>}``,
``DELETE /api/routes/<path>`` (404 for a route it does not have), ``GET /api/routes`` for every route with
its ``last_activity``; each call carries ``Authorization: token <CONFIGPROXY_AUTH_TOKEN>``.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from chalicelib.backends.base import Route, Router
from chalicelib.errors import BackendError, BinderError, Unavailable
from chalicelib.lazy_clients import LazyClient

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from chalicelib.config import Settings

log = logging.getLogger(__name__)

PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+/?")
TARGET = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+/?")
MARK = "binderless"  # in the data of every route we add: the proxy's other routes ("/") are not ours
RESERVED = frozenset({"target", "last_activity", MARK})  # keys CHP keeps beside the caller's data
DEFAULT_TIMEOUT = 5.0  # seconds: a tick makes one call per changed route and must not hang on a dead proxy


def normalise_prefix(path_prefix: str) -> str:
    """``/user/x`` and ``/user/x/`` are one route, listed as ``/user/x/``. ValueError for anything else."""
    if not PREFIX.fullmatch(path_prefix) or any(part in {".", ".."} for part in path_prefix.split("/")):
        raise ValueError(f"a route prefix is a path of URL-safe segments such as /user/<name>/, not {path_prefix!r}")
    return path_prefix.rstrip("/") + "/"


def check_route(target: str, data: Mapping[str, str]) -> None:
    if not TARGET.fullmatch(target):
        raise ValueError(f"a route's target is an origin such as http://10.0.1.7:8888, not {target!r}")
    clashes = RESERVED.intersection(data)
    if clashes:
        raise ValueError(f"route data may not use the keys {sorted(clashes)}: the proxy keeps its own there")


class DirectRouter:
    """No proxy: locations are the servers' own URLs. It remembers routes in this process only, so that
    the contract holds (a caller may list what it added); nothing measures activity."""

    proxied = False

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()

    def add_route(self, path_prefix: str, target: str, data: Mapping[str, str]) -> None:
        prefix = normalise_prefix(path_prefix)
        check_route(target, data)
        with self._lock:
            self._routes[prefix] = Route(target, dict(data))

    def delete_route(self, path_prefix: str) -> None:
        with self._lock:
            self._routes.pop(normalise_prefix(path_prefix), None)

    def get_all_routes(self) -> dict[str, Route]:
        with self._lock:
            return dict(self._routes)

    def url_for(self, path_prefix: str, target: str) -> str:
        return target.rstrip("/") + normalise_prefix(path_prefix)


class ChpRouter:
    """configurable-http-proxy's REST API at ``api_url`` (``http://127.0.0.1:8001``, or the ALB's https URL on
    AWS); readers reach the routes at ``public_url``. The token goes in a header, never in a URL, a message
    or a log line."""

    proxied = True

    def __init__(self, api_url: str, token: str | Callable[[], str], public_url: str, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_url, self.public_url, self.timeout = api_url.rstrip("/"), public_url.rstrip("/"), timeout
        self._token_source = token  # a callable is asked on the first call (a secret fetched once)
        self._token_value = token if isinstance(token, str) else None
        self._opener: urllib.request.OpenerDirector | None = None

    @property
    def _token(self) -> str:
        if self._token_value is None:
            assert callable(self._token_source)
            self._token_value = self._token_source()
        return self._token_value

    def __repr__(self) -> str:
        return f"ChpRouter(api_url={self.api_url!r}, public_url={self.public_url!r})"

    @property
    def opener(self) -> urllib.request.OpenerDirector:
        # No environment proxy (the API is often 127.0.0.1), and no redirects: urllib would send our
        # Authorization header on to wherever a redirect points.
        if self._opener is None:
            self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirects())
        return self._opener

    def add_route(self, path_prefix: str, target: str, data: Mapping[str, str]) -> None:
        check_route(target, data)
        # CHP's POST replaces a route that exists (its trie's add overwrites): adding again is idempotent.
        self._call("POST", self._path(path_prefix), {**data, "target": target, MARK: True})

    def delete_route(self, path_prefix: str) -> None:
        self._call("DELETE", self._path(path_prefix), missing_ok=True)

    def get_all_routes(self) -> dict[str, Route]:
        listed = self._call("GET", "")
        if not isinstance(listed, dict):
            raise BackendError("The proxy's API answered something other than its routing table.")
        return {normalise_prefix(path): route_of(entry) for path, entry in listed.items()
                if path != "/" and isinstance(entry, dict) and entry.get(MARK) is True}

    def url_for(self, path_prefix: str, target: str) -> str:
        return self.public_url + normalise_prefix(path_prefix)

    def _path(self, path_prefix: str) -> str:
        # CHP's routes have no trailing slash, and its DELETE of "/user/x/" does not find "/user/x".
        return normalise_prefix(path_prefix).rstrip("/")

    def _call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api_url}/api/routes{path}", data=payload, method=method)  # noqa: S310
        request.add_header("Authorization", f"token {self._token}")
        if payload is not None:
            request.add_header("Content-Type", "application/json")
        log.debug("proxy API: %s /api/routes%s", method, path)
        try:
            with self.opener.open(request, timeout=self.timeout) as reply:
                text = reply.read()
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 404 and missing_ok:
                return None
            log.warning("proxy API at %s answered %s to %s /api/routes%s", self.api_url, error.code, method, path)
            raise refused(error.code) from None
        except (OSError, http.client.HTTPException) as error:  # refused, reset, unresolvable, timed out, garbled
            reason = self._scrub(getattr(error, "reason", error))
            log.warning("proxy API at %s cannot be reached: %s", self.api_url, reason)
            raise Unavailable(f"The proxy cannot be reached ({reason}); try again shortly.") from None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise BackendError("The proxy's API answered with something that is not JSON.") from None

    def _scrub(self, reason: object) -> str:
        token = self._token_value
        return str(reason).replace(token, "<token>") if token else str(reason)


def refused(status: int) -> BinderError:
    """The proxy's API said no: a wrong token is the operator's to fix; its own failures pass."""
    if status == 403:
        return BackendError("The proxy refused our token (403): the proxy's CONFIGPROXY_AUTH_TOKEN and the one "
                            "binderless is configured with differ.")
    if status >= 500:
        return Unavailable(f"The proxy failed ({status}); try again shortly.")
    return BackendError(f"The proxy's API answered {status}.")


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is raised as an HTTPError, which ``refused`` reports


def route_of(entry: Mapping[str, Any]) -> Route:
    data = {key: str(value) for key, value in entry.items() if key not in RESERVED}
    return Route(str(entry.get("target", "")), data, parse_activity(entry.get("last_activity")))


def parse_activity(value: object) -> datetime | None:
    """CHP's ``last_activity``, a JavaScript ISO date (``2026-12-02T23:03:11.123Z``), as an aware datetime."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SecretToken:
    """The proxy's token from a Secrets Manager secret (AWS), fetched on first use and kept for the life
    of the function instance; never logged."""

    secretsmanager: LazyClient[SecretsManagerClient] = LazyClient("secretsmanager")

    def __init__(self, settings: Settings, secret_id: str) -> None:
        self.settings, self.secret_id = settings, secret_id

    def __call__(self) -> str:
        try:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id)["SecretString"]
        except Exception as error:  # noqa: BLE001 (botocore's errors: the message names no secret value)
            log.warning("cannot read the proxy's token from Secrets Manager: %s", type(error).__name__)
            raise Unavailable("The proxy's token cannot be read right now; try again shortly.") from None
        return value.strip()


def router_for(settings: Settings) -> Router:
    """The Router the settings ask for: ``direct`` (no proxy) or ``chp``."""
    if settings.router == "direct":
        return DirectRouter()
    if not settings.proxy_api_url or not settings.proxy_public_url:
        raise ValueError("BINDERLESS_ROUTER=chp needs BINDERLESS_PROXY_API_URL and BINDERLESS_PROXY_PUBLIC_URL")
    token: str | Callable[[], str] = settings.proxy_auth_token
    if not token:
        if not settings.proxy_auth_token_secret:
            raise ValueError("BINDERLESS_ROUTER=chp needs BINDERLESS_PROXY_AUTH_TOKEN or "
                             "BINDERLESS_PROXY_AUTH_TOKEN_SECRET")
        token = SecretToken(settings, settings.proxy_auth_token_secret)
    return ChpRouter(settings.proxy_api_url, token, settings.proxy_public_url)
