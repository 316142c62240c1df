"""What the AWS adapters share: error mapping and batching (their lazy clients: chalicelib.lazy_clients)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from chalicelib import errors

# Codes AWS uses for "slow down / try again": the client should retry, not give up.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServerException",
    }
)
RETRY_AFTER = {"Retry-After": "5"}

T = TypeVar("T")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, "" for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Message", ""))


def domain_error(exc: Exception, operation: str) -> errors.BinderError:
    """Map an AWS failure to the domain error a client sees.

    Only the operation and AWS's error code go into the message: AWS messages may quote
    request parameters, and ours carry repository URLs and batch keys."""
    code = error_code(exc)
    if code in THROTTLING_CODES:
        return errors.Unavailable(f"{operation} is throttled by AWS; retry shortly", headers=dict(RETRY_AFTER))
    return errors.BackendError(f"{operation} failed ({code or type(exc).__name__})")


@contextmanager
def aws_errors(operation: str) -> Iterator[None]:
    """Turn botocore errors raised inside the block into domain errors."""
    try:
        yield
    except Exception as exc:
        # Imported here, not at module level: botocore is only needed once a call failed.
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, (ClientError, BotoCoreError)):
            raise domain_error(exc, operation) from exc
        raise


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (AWS batch APIs take 100 ids a call)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
