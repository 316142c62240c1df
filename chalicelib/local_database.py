"""Local mode's embedded DynamoDB: moto, one request at a time, with no socket for this process.

DynamoDB makes every request atomic: a TransactWriteItems either passes all its conditions and
writes, or writes nothing, whatever else runs at once. moto's backends are not thread-safe, so two
concurrent transactions could both pass the same condition (the same pooled server handed to two
clients) or crash with "dictionary changed size during iteration". One lock serialises every
request, whichever way it comes, and each one gets the atomicity DynamoDB gives; the API's own
requests still interleave between their calls, as Lambdas do.

Two ways in, one lock:
- this process's boto3 clients: a botocore ``before-call`` handler answers a call for the
  embedded endpoint from moto's DynamoDB handler directly. A call costs half what it costs over
  HTTP (measured: a Query of 11 items 7.6 ms against 16 ms, a two-item transaction 10 ms against
  15.5 ms), and a pool claim is two calls. Answering before botocore builds, signs and sends the
  request (``before-call``, not ``before-send``) took a quarter off again: a GetItem, a Query of
  5 items and a two-item transaction, 0.76-0.80x the time (medians of 400-600 rounds, in turns);
- other processes (the operator CLI, a test counting items): moto's threaded HTTP server, at the
  endpoint the banner names.
Serving moto from a child process of its own was tried and measured: no faster (0.48 and 0.69 s
for a burst of 10, against 0.37 and 0.41 s in this process).

Requests come first. On AWS the schedule runs in a Lambda of its own; here the tick shares the
process and its interpreter lock, and a claim arriving while a tick runs waits for it: traced in one
run, the pool hits over 40 ms were those that met a tick (their handlers took up to 41 ms for 14-18 ms of
CPU, and waited up to 23 ms to be accepted).
So the tick waits for the API to be quiet (``FOREGROUND``: no request being served, and none for
``QUIET`` seconds: a reader's POST, then their GET of the location from jupyter, then the next reader's
POST), and each of its calls (``BACKGROUND``: the tick's thread) waits for no request being served;
each wait lasts at most ``YIELD_AT_MOST`` seconds, so that a steady stream of requests delays the tick
but never stops it.

Neither moto nor DynamoDB Local deletes items whose TTL attribute has passed, as DynamoDB does (within
a few days of expiry); ``Sweeper`` does, once a minute, so the table stays the size of its live items.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable

from botocore.parsers import create_parser
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from chalicelib.store import Store
    from chalicelib.store.dynamo import Dynamo

log = logging.getLogger(__name__)
TTL_ATTRIBUTE = "expires_at"  # the table's TimeToLiveSpecification (infra/, Dynamo.create_table)
SWEEP_EVERY = 60.0  # seconds between sweeps
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ONE_AT_A_TIME = threading.Lock()  # every request to the embedded database, from whichever way in
YIELD_AT_MOST = 0.5  # seconds a background call, or the tick's start, waits for the API to be idle
QUIET = 0.1  # seconds with no request before a tick starts
_PARSER = create_parser("json")  # DynamoDB's protocol (a client shares its parser between threads too)


class Foreground:
    """How many API requests are being served, and when the last one was answered: a background thread
    can wait for there to be none (``wait_idle``), or none for a while (``wait_quiet``)."""

    def __init__(self) -> None:
        self._serving = 0
        self._changed = threading.Condition()
        self._last = float("-inf")  # when the last request was answered (time.monotonic)

    @contextmanager
    def serving(self) -> Iterator[None]:
        with self._changed:
            self._serving += 1
        try:
            yield
        finally:
            with self._changed:
                self._serving -= 1
                self._last = time.monotonic()
                if not self._serving:
                    self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request is being served; False if ``timeout`` seconds passed first."""
        return self.wait_quiet(0.0, timeout)

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """True once no request is being served and none was for ``quiet`` seconds; False if ``timeout``
        seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                now = time.monotonic()
                if not self._serving and now - self._last >= quiet:
                    return True
                if now >= deadline:
                    return False
                wake = deadline if self._serving else min(deadline, self._last + quiet)
                self._changed.wait(wake - now)


FOREGROUND = Foreground()  # the local HTTP server's requests (local_http.py), streams excepted
BACKGROUND = threading.local()  # ``.active`` on a thread whose calls yield to requests (local.Ticker)


def one_at_a_time(app: WsgiApp, lock: threading.Lock = ONE_AT_A_TIME) -> WsgiApp:
    """``app`` behind ``lock``, its whole response produced inside it (moto answers lazily otherwise)."""

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


class InProcess:
    """A botocore ``before-call`` handler: a DynamoDB call for ``endpoint`` is answered by moto here,
    under the same lock as the HTTP server's; a call for anywhere else goes on its way (None).

    It takes the request botocore has validated and serialized, and gives back the HTTP response and
    what botocore's parser makes of it, as botocore's Stubber does: the client raises the same
    ``ClientError`` (a cancelled transaction's reasons included) and returns the same dict. What it
    skips is what a socket needs: building, signing and sending the request, and retrying it."""

    def __init__(self, endpoint: str, lock: threading.Lock = ONE_AT_A_TIME, foreground: Foreground = FOREGROUND,
                 yield_at_most: float = YIELD_AT_MOST) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.lock = lock
        self.foreground, self.yield_at_most = foreground, yield_at_most

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        url = params["url"]
        if not (url + "/").startswith(self.endpoint):
            return None
        from botocore.awsrequest import AWSResponse
        from botocore.endpoint import convert_to_response_dict
        from moto.core.botocore_stubber import MockRawResponse
        from moto.core.request import Request
        from moto.dynamodb.responses import DynamoHandler
        from werkzeug.exceptions import HTTPException

        body = params["body"]
        request = Request.from_primitives(params["method"], url, params["headers"],
                                          body.encode() if isinstance(body, str) else body)
        if getattr(BACKGROUND, "active", False):
            self.foreground.wait_idle(self.yield_at_most)
        with self.lock:
            try:
                status, headers, answer = DynamoHandler.dispatch(request, request.raw_url, request.headers)
            except HTTPException as error:
                status, headers, answer = error.code, error.get_headers(), error.get_body()
        response = AWSResponse(url, status, headers, MockRawResponse(answer))
        return response, _parsed(convert_to_response_dict(response, model), model)


def _parsed(response: dict[str, Any], model: Any) -> dict[str, Any]:
    """What botocore's endpoint makes of ``response``: the operation's output, or its error with the
    error's modelled fields (a cancelled transaction's ``CancellationReasons``), and no retries."""
    parsed: dict[str, Any] = _PARSER.parse(response, model.output_shape)
    code = parsed.get("Error", {}).get("Code")
    error_shape = model.service_model.shape_for_error_code(code) if code else None
    if error_shape is not None:
        parsed.update(_PARSER.parse(response, error_shape))
    parsed["ResponseMetadata"]["RetryAttempts"] = 0
    return parsed


def answer_in_process(endpoint: str) -> None:
    """This process's boto3 clients made from now on reach ``endpoint`` without a socket."""
    import boto3

    answer = InProcess(endpoint)  # the stubs type every handler as returning None; before-call's may answer
    boto3._get_default_session().events.register_first("before-call.dynamodb", answer)  # type: ignore[arg-type]


def sweep_expired(dynamo: Dynamo, now: int) -> int:
    """Delete the items whose ``expires_at`` (epoch seconds) has passed, as DynamoDB's TTL would: how many.

    Each delete is conditional on the item being expired still (a write since the scan may have moved
    its expiry on, as an idempotency record's owner or a rate window does)."""
    from chalicelib.store.dynamo import ConditionFailed

    expired: dict[str, Any] = {":now": {"N": str(now)}}
    found: list[Any] = []
    deleted = 0
    scan: dict[str, Any] = {"TableName": dynamo.table_name, "ProjectionExpression": "pk, sk",
                            "FilterExpression": f"{TTL_ATTRIBUTE} < :now", "ExpressionAttributeValues": expired}
    while True:
        page = dynamo.client.scan(**scan)
        found.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    for key in found:
        try:
            dynamo.call("delete_item", TableName=dynamo.table_name, Key=key,
                        ConditionExpression=f"{TTL_ATTRIBUTE} < :now", ExpressionAttributeValues=expired)
            deleted += 1
        except ConditionFailed:
            continue  # written since the scan: not expired any more
    return deleted


class Sweeper:
    """``sweep_expired`` on the store's table at most once every ``every`` seconds, from the scheduled tick."""

    def __init__(self, store: Store, every: float = SWEEP_EVERY, clock: Callable[[], float] = time.time) -> None:
        self.dynamo, self.every, self.clock = store.dynamo, every, clock
        self._last = float("-inf")

    def __call__(self) -> int:
        now = self.clock()
        if now - self._last < self.every:
            return 0
        self._last = now
        deleted = sweep_expired(self.dynamo, int(now))
        if deleted:
            log.info("deleted %d expired items (what DynamoDB's TTL does)", deleted)
        return deleted
