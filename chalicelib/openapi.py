"""GET /openapi.json: an OpenAPI 3.1 document of every route, generated from the pydantic models.

Request bodies come from the request models (``chalicelib.models``), replies from the reply
models (``chalicelib.replies``), paths and methods from Chalice's route table, and each route's
security from its endpoint name and this deployment's public endpoints: the document describes
this deployment as it is configured. A route without an entry in ``OPERATIONS`` (or without the
``endpoint`` decorator) is an error, so a new route cannot ship undocumented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from chalice.app import RouteEntry
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from chalicelib import __version__
from chalicelib.auth import ENDPOINT_SCOPES, OWNER_OR_ADMIN
from chalicelib.openapi_operations import OPERATIONS, PATH_PARAMETERS, STREAMED, Operation
from chalicelib.replies import ErrorReply

OPENAPI_VERSION = "3.1.0"
SCHEME = "token"
SERVER_SCHEME = "serverToken"
REF = "#/components/schemas/{model}"
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}},
    429: {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
    503: {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
}
# A 409 for an Idempotency-Key still in progress says when to retry; other conflicts do not.
IN_PROGRESS_RETRY_AFTER = {"description": "Seconds to wait, when a request with this Idempotency-Key is still in "
                                          "progress.", "required": False, "schema": {"type": "integer", "minimum": 0}}
AUTH_ERRORS = {
    401: "No token, or one that is unknown, revoked or expired.",
    403: "The token does not have the scope this endpoint needs.",
}
DESCRIPTION = """\
Temporary Jupyter environments from Git repositories: build an image (`/builds`), stage it with
resources (`/stagings`), launch servers (`/deployments`), keep idle ones ready (`/pools`).

Every error is JSON `{"error": "<Code>", "message": "<what to do>"}`; any operation may also
answer 500 (`InternalError`) in that shape. Request bodies are JSON objects; they are read as JSON
whatever the Content-Type says (`application/json`, `text/plain` or
`application/x-www-form-urlencoded`), and other content types get 415.

Which endpoints need a token is this deployment's setting (`BINDERLESS_PUBLIC_ENDPOINTS`); this
document shows it as configured. Each operation's `x-binderless-endpoint` is the name that
setting uses."""


# API Gateway's greedy path parameter (`{proxy+}`), which Chalice leaves out of a route's view_args.
GREEDY = re.compile(r"\{(\w+\+)\}")


class UndocumentedRoute(LookupError):
    """A route in Chalice's table that the document cannot describe."""


class _NoFieldTitles(GenerateJsonSchema):
    """Field titles only repeat the field's name; model titles stay."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


# (model, mode) -> {"$ref": ...}, as pydantic's models_json_schema names them
Refs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]
Routes = Mapping[str, Mapping[str, RouteEntry]]  # Chalice's table: path -> method -> entry
_cache: dict[tuple[tuple[tuple[str, str, str], ...], frozenset[str], int | None], dict[str, Any]] = {}


def openapi_document(routes: Routes, is_public: Callable[[str], bool], base_path: str = "", *,
                     max_pool_size: int | None = None) -> dict[str, Any]:
    """The document for this route table, as public as ``is_public`` says and with this deployment's
    bounds (``max_pool_size``); built once per process."""
    table = tuple(sorted((path, method, endpoint_name(entry))
                         for path, methods in routes.items() for method, entry in methods.items()))
    public = frozenset(name for _, _, name in table if is_public(name))
    key = (table, public, max_pool_size)
    if key not in _cache:
        _cache[key] = build_document(routes, public, max_pool_size=max_pool_size)
    return {**_cache[key], "servers": [{"url": base_path or "/"}]}


def _streamed() -> None:
    """The view of a route Chalice does not serve (openapi_operations.STREAMED): never called."""


def endpoint_name(entry: RouteEntry) -> str:
    name = getattr(entry.view_function, "endpoint_name", None)
    if not isinstance(name, str):
        raise UndocumentedRoute(f"{entry.method} {entry.uri_pattern}: the view is not wrapped in endpoint()")
    return name


def build_document(routes: Routes, public: frozenset[str], *, max_pool_size: int | None = None) -> dict[str, Any]:
    refs, schemas = _schemas()
    if max_pool_size is not None:  # the pools service refuses more (422), so the document says so
        schemas["PoolSize"]["properties"]["size"]["maximum"] = max_pool_size
    paths: dict[str, dict[str, Any]] = {}
    for path, methods in sorted(routes.items()):
        for method, entry in sorted(methods.items()):
            operation = OPERATIONS.get((method, path))
            if operation is None:
                raise UndocumentedRoute(f"{method} {path} has no entry in openapi_operations.OPERATIONS")
            name = endpoint_name(entry)
            paths.setdefault(path, {})[method.lower()] = _operation(operation, entry, name, name in public, refs)
    for path, (name, operation) in STREAMED.items():
        entry = RouteEntry(_streamed, name, path, "GET")
        paths[path] = {"get": _operation(operation, entry, name, name in public, refs)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "binderless", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {SCHEME: {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "An API token, sent as `token <t>`, `Bearer <t>` or the bare `<t>`. Tokens carry "
                               "scopes (builds, stagings, deployments, pools); `admin` has them all. An "
                               "operation's security requirement lists the scope it needs."},
                SERVER_SCHEME: {
                    "type": "apiKey", "in": "header", "name": "Authorization",
                    "description": "A server's own token, the `token` in its location, sent like an API token. "
                                   "It opens only operations on that server."}},
            "headers": {
                "Retry-After": {"description": "Seconds to wait before trying again.", "required": True,
                                "schema": {"type": "integer", "minimum": 0}},
                "WWW-Authenticate": {"description": "How to authenticate: `token realm=\"binderless\"`.",
                                     "required": True, "schema": {"type": "string"}},
            },
        },
    }


def _schemas() -> tuple[Refs, dict[str, Any]]:
    """JSON Schemas of every request model (as validated) and reply model (as serialized)."""
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorReply, "serialization")]
    for operation in OPERATIONS.values():
        if operation.body is not None:
            inputs.append((operation.body, "validation"))
        inputs.extend((model, "serialization") for reply in operation.replies.values() for model in reply.models)
    refs, definitions = models_json_schema(list(dict.fromkeys(inputs)), by_alias=True, ref_template=REF,
                                           schema_generator=_NoFieldTitles)
    return refs, dict(sorted(definitions.get("$defs", {}).items()))


def _operation(operation: Operation, entry: RouteEntry, name: str, public: bool, refs: Refs) -> dict[str, Any]:
    security, access = _security(name, public)
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": f"{operation.description}\n\n{access}".strip(),
        "tags": [entry.uri_pattern.split("/")[1] or "index"],
        "x-binderless-endpoint": name,
        "security": security,
    }
    parameters = [_path_parameter(arg) for arg in entry.view_args + GREEDY.findall(entry.uri_pattern)]
    parameters += [{"name": query, "in": "query", "required": query not in operation.optional_query,
                    "description": text,
                    "schema": schema, "example": example}
                   for query, (text, example, schema) in operation.query.items()]
    parameters += operation.headers
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        media: dict[str, Any] = {"schema": refs[(operation.body, "validation")]}
        if operation.example is not None:
            media["example"] = operation.example
        document["requestBody"] = {"required": True, "content": {"application/json": media}}
    document["responses"] = _responses(operation, public, refs)
    return document


def _security(name: str, public: bool) -> tuple[list[dict[str, list[str]]], str]:
    """The operation's security requirement, and a sentence saying it."""
    if public:
        return [], "Public on this deployment."
    scope = ENDPOINT_SCOPES.get(name)
    if scope is None:
        raise UndocumentedRoute(f"endpoint {name!r} is neither public nor in auth.ENDPOINT_SCOPES")
    if name in OWNER_OR_ADMIN:
        return ([{SCHEME: [scope]}, {SERVER_SCHEME: []}],
                f"Needs the server's own token (the one in its location) or a token with the `{scope}` scope.")
    return [{SCHEME: [scope]}], f"Needs a token with the `{scope}` scope (or `admin`)."


def _responses(operation: Operation, public: bool, refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, reply in sorted(operation.replies.items()):
        shapes = [refs[(model, "serialization")] for model in reply.models]
        schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
        content = {"application/json": {"schema": schema}} if shapes else {}
        content.update({media: {"schema": {"type": "string"}} for media in reply.media_types})
        responses[str(status)] = {"description": reply.description, "content": content}
    errors = {**operation.errors, **({} if public else AUTH_ERRORS)}
    idempotent = any(header["name"] == "Idempotency-Key" for header in operation.headers)
    for status, text in sorted(errors.items()):
        response = {"description": text,
                    "content": {"application/json": {"schema": refs[(ErrorReply, "serialization")]}}}
        if status in ERROR_HEADERS:
            response["headers"] = ERROR_HEADERS[status]
        elif status == 409 and idempotent:
            response["headers"] = {"Retry-After": IN_PROGRESS_RETRY_AFTER}
        responses[str(status)] = response
    return responses


def _path_parameter(name: str) -> dict[str, Any]:
    if name not in PATH_PARAMETERS:
        raise UndocumentedRoute(f"path parameter {name!r} has no entry in openapi_operations.PATH_PARAMETERS")
    description, example, schema = PATH_PARAMETERS[name]
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema, "example": example}
