"""What every route shares: auth, body parsing, replies, and the one error-to-response mapping."""

from __future__ import annotations

import functools
import ipaddress
import json
from typing import Any, Callable, TypeVar

from chalice.app import Blueprint, Response
from pydantic import BaseModel, ValidationError

from chalicelib.auth import hash_token
from chalicelib.context import get_services
from chalicelib.errors import BadRequest, BinderError, Invalid, describe_validation_error, to_response

Model = TypeVar("Model", bound=BaseModel)
# Bodies are parsed as JSON whatever the client calls them: `curl -d` says form-urlencoded, and a
# browser's fetch() without headers says text/plain (which also spares a CORS preflight).
BODY_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]
View = Callable[..., Response]


def endpoint(blueprint: Blueprint, name: str) -> Callable[[Callable[..., Any]], View]:
    """Check the caller may use endpoint ``name``, run the view, turn domain errors into JSON."""

    def decorate(view: Callable[..., Any]) -> View:
        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            try:
                request = blueprint.current_request
                get_services().auth.authorize(name, request.headers.get("authorization"))
                response: Response = view(**kwargs)
                return response
            except Exception as error:  # noqa: BLE001 (every error becomes a reply, in one place)
                return error_reply(error, name)

        wrapper.endpoint_name = name  # type: ignore[attr-defined]  # the OpenAPI document maps routes to names
        return wrapper

    return decorate


def error_reply(error: BaseException, where: str = "a request", **also: Any) -> Response:
    """The reply to a request (of endpoint ``where``) that ended with ``error``: ``errors.to_response`` decides it.
    ``also``: fields another vocabulary's clients read beside ours (tmpnb's ``status``, BinderHub's ``ok``)."""
    status, headers, body = to_response(error, where)
    if also:
        body = json.dumps({**also, **json.loads(body)})
    return Response(body=body, headers=dict(headers), status_code=status)


def parse_body(blueprint: Blueprint, model: type[Model]) -> Model:
    """The JSON body as ``model``: 400 for a missing or malformed body, 422 for wrong fields."""
    raw = blueprint.current_request.raw_body
    if not raw or not raw.strip():
        raise BadRequest("This request needs a JSON body.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise Invalid(describe_validation_error(error)) from None


def reply(body: Any, status: int = 200) -> Response:
    return Response(body=json.dumps(body), headers={"Content-Type": "application/json"}, status_code=status)


def query_param(blueprint: Blueprint, name: str) -> str | None:
    params = blueprint.current_request.query_params
    value: str | None = params.get(name) if params else None
    return value.strip().strip('"') if value else None  # the seed writes ?repository="https://..."


def anonymous_client(blueprint: Blueprint) -> str | None:
    """Who a caller without a valid API token is, for its rate limits and caps (``client_key`` of
    its address); None for a caller with one."""
    try:
        get_services().auth.scopes_of(blueprint.current_request.headers.get("authorization"))
        return None
    except BinderError:
        return client_key(source_address(blueprint))


def client_key(address: str) -> str:
    """One key per client: an IPv4 address as it is, an IPv6 one by its /64 (one host's or one
    site's share: an address per request costs nothing inside it). "2001:db8:1:2::9" -> "2001:db8:1:2::/64"."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: drop the zone
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def source_address(blueprint: Blueprint) -> str:
    identity = (blueprint.current_request.context or {}).get("identity") or {}
    return str(identity.get("sourceIp") or "unknown")


def idempotent(blueprint: Blueprint, scope: str, payload: Any, action: Callable[[], tuple[int, Any]]) -> Response:
    """Run ``action`` (status, body) once per ``Idempotency-Key`` and caller; a retry gets the first answer.

    Keys are per caller (its token, else its address): a key written into a public page must not
    hand every visitor the first visitor's server."""
    request = blueprint.current_request
    key = request.headers.get("idempotency-key")
    header = request.headers.get("authorization")  # who, not whether allowed: no token lookup needed
    caller = "token:" + hash_token(header)[:32] if header else source_address(blueprint)
    status, body = get_services().idempotency.run(key, f"{scope}:{caller}", payload, action,
                                                  blueprint.lambda_context)
    return reply(body, status)
