"""What runs around every route: the browser-origin guard, and our JSON for Chalice's own errors."""

from __future__ import annotations

from typing import Callable

from chalice.app import Request, Response

from chalicelib.context import get_services
from chalicelib.errors import BinderError, framework_error
from chalicelib.origins import OriginPolicy, policy_for
from chalicelib.routes.api import error_reply

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
        return error_reply(error)
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
        reply: Response = error_reply(framework_error(response.status_code, code, str(body.get("Message", ""))))
        reply.headers = {**response.headers, **reply.headers}  # Allow on a 405, say
        return reply
    return response
