"""What runs around every route: the browser-origin guard, and our JSON for Chalice's own errors."""

from __future__ import annotations

from typing import Callable

from chalice.app import Request, Response

from chalicelib.context import get_services
from chalicelib.errors import BinderError, error_body, to_response
from chalicelib.origins import OriginPolicy, policy_for

Handler = Callable[[Request], Response]


def origin_policy() -> OriginPolicy:
    settings = get_services().settings
    return policy_for(settings.cors_origins, local=settings.backend == "local", allow_remote=settings.allow_remote)


def guard_origins(request: Request, get_response: Handler) -> Response:
    """Refuse pages from origins the operator has not listed before any view runs (so nothing
    changes and nothing is revealed); tell allowed pages so in Access-Control-Allow-Origin."""
    policy = origin_policy()
    try:
        policy.check(request.headers)
    except BinderError as error:
        status, headers, body = to_response(error)
        return Response(body=body, headers=dict(headers), status_code=status)
    response = get_response(request)
    response.headers.pop("Access-Control-Allow-Origin", None)  # Chalice's static "*", for listed origins only
    response.headers.update(policy.response_headers(request.headers.get("origin")))
    return response


def errors_as_json(request: Request, get_response: Handler) -> Response:
    """Chalice answers unknown methods and content types itself; give those our shape too."""
    response = get_response(request)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        code = str(body["Code"]).removesuffix("Error") or "Error"
        return Response(body=error_body(code, str(body.get("Message", ""))),
                        headers={**response.headers, "Content-Type": "application/json"},
                        status_code=response.status_code)
    return response
