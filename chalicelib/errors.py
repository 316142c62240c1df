"""Domain errors. Services raise these; ``to_response`` is the one place that maps an exception to HTTP.

One class per kind of mistake: a request that cannot be read at all is ``BadRequest`` (400); one that
reads but whose values are not acceptable (limits, services, names) is ``Invalid`` (422).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

log = logging.getLogger(__name__)
INTERNAL_MESSAGE = "Something went wrong on our side; try again."


class BinderError(Exception):
    """Base of every error a client may see. ``code`` is the JSON ``error`` field."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(BinderError):
    status = 400
    code = "BadRequest"


class Invalid(BinderError):
    """The request is well-formed JSON but its values are not acceptable."""

    status = 422
    code = "Invalid"


class Unauthorized(BinderError):
    status = 401
    code = "Unauthorized"


class Forbidden(BinderError):
    status = 403
    code = "Forbidden"


class NotFound(BinderError):
    status = 404
    code = "NotFound"


class Gone(BinderError):
    """The thing existed but has ended (a stopped server): launch a new one."""

    status = 410
    code = "Gone"


class Conflict(BinderError):
    status = 409
    code = "Conflict"


class QuotaExceeded(BinderError):
    status = 429
    code = "QuotaExceeded"


class Unavailable(BinderError):
    """Transient trouble (AWS throttling, capacity): the client should retry."""

    status = 503
    code = "Unavailable"


class BackendError(BinderError):
    """An AWS (or local) backend call failed in a way the client cannot fix."""

    status = 502
    code = "BackendError"


def error_body(code: str, message: str) -> str:
    return json.dumps({"error": code, "message": message})


def framework_error(status: int, code: str, message: str) -> BinderError:
    """The error of a reply the framework chose itself (Chalice's own 405 and 415), in our terms."""
    error = BinderError(message)
    error.status, error.code = status, code
    return error


def to_response(error: BaseException, where: str = "a request") -> tuple[int, dict[str, str | list[str]], str]:
    """(status, headers, body) for any exception a request ended with: a ``BinderError`` as itself;
    anything else is our bug, logged with its traceback and answered 500 with nothing of its cause."""
    if not isinstance(error, BinderError):
        log.error("unhandled error in %s", where, exc_info=error)
        error = BinderError(INTERNAL_MESSAGE)
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json", **error.headers}
    return error.status, headers, error_body(error.code, error.message)


def describe_validation_error(error: ValidationError) -> str:
    """A pydantic error as one line a client can act on: ``limits.cpu: ...; name: unknown field``."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "body"
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
