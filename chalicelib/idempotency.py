"""Safe retries: a POST sent again with the same ``Idempotency-Key`` gets the first answer back.

Built on powertools' idempotency utility; its records are the store's (``store/idempotency.py``:
the app's own table, expiring through its TTL). A request that fails leaves no record, so its retry
runs again; a retry that arrives while the first is still running is told so (409) rather than launching twice.

"Still running" is judged by the invocation's own deadline, not the client's patience. API Gateway
gives up after 29 s (then the client sees 504 and retries), but the invocation may go on: a cold
start's initialisation is not counted in the function's timeout. So an in-progress record lasts
until the Lambda that wrote it can no longer act: its remaining time (what powertools reads from
the Lambda context) plus ``IN_FLIGHT_GRACE_MS``. A retry before then gets 409 and ``Retry-After``;
one after the first finished gets the first answer. Only an invocation that Lambda stopped at its
timeout mid-action leaves a record that expires unanswered; its retry then runs again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

from chalicelib.errors import BadRequest, Conflict, Invalid

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, as the IETF draft's keys are
Reply = tuple[int, Any]
# Past the invocation's deadline: a call in flight when Lambda stops the function (a RunTask sent
# just before the timeout may still start its task) and the clocks of two instances that differ.
IN_FLIGHT_GRACE_MS = 10_000


class _Deadline:
    """The Lambda context as powertools reads it for an in-progress record's expiry, plus the grace."""

    def __init__(self, lambda_context: Any) -> None:
        self.lambda_context = lambda_context

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.lambda_context.get_remaining_time_in_millis())) + IN_FLIGHT_GRACE_MS


class Idempotency:
    def __init__(self, records: Callable[[], BasePersistenceLayer], ttl: int) -> None:
        self.records = records  # where answers are kept, made on first use (store/idempotency.py)
        self.ttl = ttl

    def run(self, key: str | None, scope: str, payload: Any, action: Callable[[], Reply],
            lambda_context: Any = None) -> Reply:
        """``action()``'s (status, body), or the stored answer of an earlier request with ``key``."""
        if key is None:
            return action()
        if not KEY_PATTERN.fullmatch(key):
            raise BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters, e.g. a UUID.")
        from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyValidationError,
        )

        config = IdempotencyConfig(event_key_jmespath="[key, scope]", payload_validation_jmespath="payload",
                                   expires_after_seconds=self.ttl)
        # Without a Lambda context (a direct call), an in-progress record lasts until it expires (ttl).
        if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
            # powertools reads only get_remaining_time_in_millis() of the context it is given
            config.register_lambda_context(_Deadline(lambda_context))  # type: ignore[arg-type]

        @idempotent_function(data_keyword_argument="request", persistence_store=self.records(), config=config)  # type: ignore[untyped-decorator]
        def once(request: dict[str, Any]) -> dict[str, Any]:
            status, body = action()
            return {"status": status, "body": body}

        try:
            answer = once(request={"key": key, "scope": scope, "payload": payload})
        except IdempotencyAlreadyInProgressError:
            raise Conflict("A request with this Idempotency-Key is still in progress; retry in a moment.",
                           headers={"Retry-After": "1"}) from None
        except IdempotencyValidationError:
            raise Invalid("This Idempotency-Key was already used for a different request; use a new key.") from None
        return int(answer["status"]), answer["body"]
