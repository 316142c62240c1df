"""Local mode's HTTP front: Chalice's local server, answering as our API does on every method and path.

Chalice's ``LocalGateway`` imitates API Gateway where we do not want it to: a path no route serves
gets 403 "Missing Authentication Token" (and, when the request has an ``Authorization`` header, a
message that quotes it back), a method ``http.server`` has no ``do_*`` for gets a 501 HTML page,
and preflights are answered from the static CORS config (``*``) without asking anyone. Here every
method reaches one handler, the origin policy is applied before anything else (preflights too),
unknown paths get 404 JSON that repeats nothing of the request, and HEAD replies have no body.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit, urlunsplit

from chalice.local import ChaliceRequestHandler, LocalGatewayException, ThreadedHTTPServer

from chalicelib import event_stream, gone_page, launch_page
from chalicelib.errors import BinderError, NotFound, to_response
from chalicelib.local_database import FOREGROUND
from chalicelib.routes.middleware import origin_policy

NO_ROUTE = NotFound("No such path in this API; GET /openapi.json lists them.")


class LocalHTTPServer(ThreadedHTTPServer):
    # socketserver listens with a backlog of 5: a burst of launches (a class opening one link, a page
    # of Thebe cells) overflows it, and every connection the kernel drops waits a second for the
    # client's SYN retry. 128 is what werkzeug and tornado ask for.
    request_queue_size = 128


class LocalRequestHandler(ChaliceRequestHandler):
    # Headers and body go out in separate writes; with Nagle's algorithm each small reply waits
    # ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def end_headers(self) -> None:
        """Say so when the connection closes after this reply (the request asked, or a stream ends it):
        a keep-alive client that is not told (the proxy in front, configurable-http-proxy, which passes a
        reader's ``Connection: close`` on to us but pools its own connections) sends its next request down
        the closing socket and answers that one 503 "socket hang up"."""
        if self.close_connection and not any(line.lower().startswith(b"connection:")
                                             for line in getattr(self, "_headers_buffer", [])):
            self.send_header("Connection", "close")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """One stderr line per request is noise in `make run`'s terminal."""

    if not TYPE_CHECKING:  # (to mypy, every attribute would look like a handler)

        def __getattr__(self, name: str) -> Callable[[], None]:
            # BaseHTTPRequestHandler looks up do_<METHOD>; every method (TRACE, QUERY, ...) comes here,
            # and the app answers 405 for the ones a route does not serve.
            if name.startswith("do_"):
                return self._generic_handle
            raise AttributeError(name)

    def _generic_handle(self) -> None:
        headers, body = self._parse_payload()
        lowered = {name.lower(): value for name, value in headers.items()}
        policy = origin_policy()
        build = event_stream.build_request(self.path) if self.command == "GET" else None
        # A /v2/ link goes to the app (routes/pages.py) with its spec as the one segment that Chalice's local
        # gateway can match for the route's {proxy+} (launch_page.locate reads it back).
        launch = launch_page.local_path(self.path) if self.command == "GET" else None
        # So does a server's path behind the proxy (the gone page, routes/pages.py), as one quoted segment.
        gone = gone_page.local_path(self.path) if self.command in gone_page.METHODS else None
        try:
            policy.check(lowered)
            if build:
                self._stream_launch(*build, lowered, policy.response_headers(lowered.get("origin")))
                return
            local = launch or gone
            with FOREGROUND.serving():  # the tick's database calls wait for it (local_database.py)
                if local:
                    response = self.local_gateway.handle_request(method=self.command, path=local, headers=headers,
                                                                 body=body)
                else:
                    response = self._route(headers, body)
        except BinderError as error:
            self._send_error(error)
            return
        except LocalGatewayException:  # no route matches the path
            self._send_error(NO_ROUTE, policy.response_headers(lowered.get("origin")))
            return
        reply_headers = {**response["headers"], **response["multiValueHeaders"]}
        if self.command == "OPTIONS" and "Access-Control-Allow-Origin" in reply_headers:
            # A preflight, answered from the static CORS config: only for the origins the policy allows.
            reply_headers.pop("Access-Control-Allow-Origin")
            reply_headers.update(policy.response_headers(lowered.get("origin")))
        response = self._handle_binary(response)
        self._send(response["statusCode"], reply_headers, response["body"])

    def _route(self, headers: dict[str, Any], body: bytes | None) -> Any:
        """The app's reply to the path as sent, else (no route) to the path without a leading ``/api``
        (the seeds: "potentially with a leading /api/ path") or without its trailing slash (v1's
        ``/bindings/{org}/{repo}/``, tmpnb's ``/api/spawn/``)."""
        tried: LocalGatewayException | None = None
        for path in alternatives(self.path):
            try:
                return self.local_gateway.handle_request(method=self.command, path=path, headers=headers, body=body)
            except LocalGatewayException as error:
                tried = tried or error
        assert tried is not None
        raise tried

    def _stream_launch(self, provider: str, spec: str, headers: dict[str, str], cors: dict[str, str]) -> None:
        """``GET /build/{provider}/{spec}``: BinderHub's event stream, written as the launch goes
        (Chalice's gateway would hold the whole reply until the launch ends), as AWS's stream server
        (chalicelib/stream_server.py) writes it."""
        events = event_stream.launch_events(provider, spec, headers, self.client_address[0])
        self.send_response(200)
        self._send_headers({**event_stream.HEADERS, **cors, "Connection": "close"})
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client went away: a reconnect with Last-Event-ID finds its server
            event_stream.stream(events, self._write_now)

    def _write_now(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    # The parent bound its own handler to these names; every method comes here instead.
    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def _send_error(self, error: BinderError, extra: dict[str, str] | None = None) -> None:
        status, headers, body = to_response(error)
        self._send(status, {**headers, **(extra or {})}, body)

    def _send(self, status: int, headers: dict[str, Any], body: str | bytes | None) -> None:
        if self.command == "HEAD" and body is not None:  # a HEAD reply has headers only
            payload = body if isinstance(body, bytes) else body.encode()
            headers = {**headers, "Content-Length": str(len(payload))}
            self._send_headers_only(status, headers)
            return
        self._send_http_response(status, headers, body)

    def _send_headers_only(self, status: int, headers: dict[str, Any]) -> None:
        self.send_response(status)
        self._send_headers(headers)


def alternatives(raw_path: str) -> list[str]:
    """``raw_path``, then the same without ``/api`` in front, then each without a trailing slash."""
    parts = urlsplit(raw_path)
    paths = [parts.path]
    if parts.path.startswith("/api/"):
        paths.append(parts.path.removeprefix("/api"))
    paths += [path.rstrip("/") for path in paths if len(path) > 1 and path.endswith("/")]
    return [urlunsplit(parts._replace(path=path)) for path in paths]
