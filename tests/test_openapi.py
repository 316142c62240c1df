"""GET /openapi.json: a valid OpenAPI document that covers every route and tells the truth.

The last test runs schemathesis against the API over real HTTP, once with an admin token and once
anonymously: every operation, generated requests, every method a path does not list (405 with an
Allow header), and every reply checked against the document (status, content type, headers,
schema; no 5xx; data the document refuses is refused).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from chalice.app import RouteEntry
from openapi_spec_validator import validate

from chalicelib import openapi
from chalicelib.auth import ALWAYS_PUBLIC, ENDPOINT_SCOPES, OWNER_OR_ADMIN
from chalicelib.config import DEFAULT_PUBLIC_ENDPOINTS
from chalicelib.openapi_operations import STREAMED
from chalicelib.routes.api import endpoint
from tests.conftest import ADMIN, World, auth, body
from tests.helpers import REPO, run_all_starting
from tests.live_api import Seeded, seed, serve

ERROR = {"$ref": "#/components/schemas/ErrorReply"}
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,ignored_auth,unsupported_method,negative_data_rejection")
MAX_EXAMPLES = 25
# No crash cache in the working tree. The coverage phase also sends every method a path does not list
# (schemathesis' default set: GET, PUT, POST, DELETE, OPTIONS, PATCH, TRACE, QUERY), which
# `unsupported_method` wants answered 405 with an Allow header.
CONFIG = """\
[cache]
enabled = false
"""


def document(client: Any) -> dict[str, Any]:
    reply = client.http.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    return dict(body(reply))


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def chalice_routes() -> set[tuple[str, str]]:
    from app import app

    return {(method, path) for path, methods in app.routes.items() for method in methods}


def test_the_document_is_valid_openapi_3_1(client: Any) -> None:
    spec = document(client)
    validate(spec)  # the OpenAPI 3.1 schema, JSON Schema 2020-12 in components, every $ref resolvable
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"] == [{"url": "/"}]


def test_every_route_and_method_is_an_operation_with_its_replies_and_errors(client: Any) -> None:
    from app import app

    spec = document(client)
    streamed = {("GET", path) for path in STREAMED}  # BinderHub's event stream, served outside Chalice
    assert {(method, path) for method, path, _ in operations(spec)} == chalice_routes() | streamed
    assert set(openapi.OPERATIONS) == chalice_routes(), "documentation for a route that no longer exists"
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations(spec):
        where = f"{method} {path}"
        assert operation["summary"], where
        params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        # every {name} of the path, the greedy {proxy+} (which Chalice leaves out of view_args) too
        assert params == re.findall(r"\{([^}]+)\}", path), where
        if (method, path) not in streamed:
            assert app.routes[path][method].view_args == [name for name in params if not name.endswith("+")], where
        statuses = {int(status): response for status, response in operation["responses"].items()}
        # the gone page (a server's path with no route behind the proxy) answers errors only
        assert any(200 <= status < 300 for status in statuses) or path == "/user/{proxy+}", where
        for status, response in statuses.items():
            assert response["content"], where
            # errors are JSON; a page or an image (text/html, image/svg+xml) is a string
            schema = response["content"].get("application/json", {}).get("schema")
            assert (schema == ERROR) == (status >= 400), where
            assert all(media == "application/json" or content["schema"] == {"type": "string"}
                       for media, content in response["content"].items()), where
            if status in (429, 503):
                assert "Retry-After" in response["headers"], where
        if "requestBody" in operation:
            assert {400, 422} <= set(statuses), where


def test_the_document_describes_binderhubs_event_stream_as_thebe_opens_it(client: Any) -> None:
    """The stream is not a Chalice route, but it is the front door: a client generator must see it."""
    stream = document(client)["paths"]["/build/{provider}/{proxy+}"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
    assert [p["name"] for p in stream["parameters"]] == ["provider", "proxy+", "Last-Event-ID"]
    assert stream["security"] == []  # public by default, as Binder's launch links are
    assert "ready" in stream["responses"]["200"]["description"]


def test_success_statuses_are_every_one_the_route_can_answer(client: Any) -> None:
    successes = {(method, path): sorted(int(s) for s in op["responses"] if s.startswith("2"))
                 for method, path, op in operations(document(client))}
    assert successes[("POST", "/builds/repos")] == [200, 202]
    assert successes[("POST", "/stagings")] == [200, 201]
    assert successes[("POST", "/deployments/{environment_name}")] == [201, 202]
    assert successes[("DELETE", "/deployments/{environment_name}/{server_id}")] == [200, 202]
    assert successes[("POST", "/builds/images")] == [201]


def test_request_bodies_are_the_request_models_by_alias(client: Any) -> None:
    spec = document(client)
    schemas = spec["components"]["schemas"]
    assert {"image-name", "limits", "services", "environment-name"} == set(schemas["StagingCreate"]["properties"])
    assert schemas["StagingCreate"]["additionalProperties"] is False
    assert schemas["ImageRegister"]["required"] == ["image-name", "image"]
    staging = spec["paths"]["/stagings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert staging == {"$ref": "#/components/schemas/StagingCreate"}


@pytest.mark.parametrize("public", [
    pytest.param(DEFAULT_PUBLIC_ENDPOINTS, id="seed-default", marks=pytest.mark.settings()),
    pytest.param((), id="nothing-public", marks=pytest.mark.settings(public_endpoints=())),
    pytest.param(tuple(ENDPOINT_SCOPES), id="everything-public",
                 marks=pytest.mark.settings(public_endpoints=tuple(ENDPOINT_SCOPES))),
])
def test_security_is_this_deployments_and_the_api_enforces_it(client: Any, world: World,
                                                              public: tuple[str, ...]) -> None:
    spec = document(client)
    assert spec["components"]["securitySchemes"]["token"] == {**spec["components"]["securitySchemes"]["token"],
                                                              "type": "apiKey", "in": "header",
                                                              "name": "Authorization"}
    names = set()
    for method, path, operation in operations(spec):
        name = operation["x-binderless-endpoint"]
        names.add(name)
        responses = set(operation["responses"])
        if name in public or name in ALWAYS_PUBLIC:
            assert operation["security"] == [], name
            assert not {"401", "403"} & responses, name
        elif name in OWNER_OR_ADMIN:
            assert operation["security"] == [{"token": ["admin"]}, {"serverToken": []}], name
            assert {"401", "403"} <= responses, name
        else:
            assert operation["security"] == [{"token": [ENDPOINT_SCOPES[name]]}], name
            assert {"401", "403"} <= responses, name
        assert world.services.auth.is_public(name) == (operation["security"] == [])
        if path in STREAMED:
            continue  # not Chalice's to serve: a refused stream is a `failed` event (test_stream_server.py)
        # Without a token, exactly the protected operations answer 401.
        reply = client.http.request(method, path.format(image_name="x", environment_name="x", server_id="x",
                                                             binder_name="x", org="x", repo="x", provider="gh",
                                                             **{"proxy+": "x"}))
        assert (reply.status_code == 401) == (operation["security"] != []), (name, reply.status_code)
    assert names == set(ENDPOINT_SCOPES) | ALWAYS_PUBLIC


def test_a_route_without_documentation_fails_to_build(client: Any) -> None:
    from app import app

    def view() -> None: ...

    documented = endpoint(app, "health")(view)  # type: ignore[arg-type]
    with pytest.raises(openapi.UndocumentedRoute, match="GET /new"):
        openapi.build_document({**app.routes, "/new": {"GET": RouteEntry(documented, "view", "/new", "GET")}},
                               ALWAYS_PUBLIC)
    with pytest.raises(openapi.UndocumentedRoute, match="not wrapped in endpoint"):
        openapi.build_document({**app.routes, "/health": {"GET": RouteEntry(view, "view", "/health", "GET")}},
                               ALWAYS_PUBLIC)


def test_the_document_is_built_once_per_process_not_at_import(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    monkeypatch.setattr(openapi, "_cache", {})
    monkeypatch.setattr(openapi, "build_document", lambda *args, **kwargs: built.append(args) or {"openapi": "3.1.0"})
    document(client)
    document(client)
    assert len(built) == 1
    code = "import sys, app; print(sorted({'chalicelib.openapi', 'chalicelib.replies'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent.parent, env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
    assert imported.stdout.strip() == "[]"


def test_servers_name_the_stage_the_document_was_served_under(world: World) -> None:
    from app import app

    event = {"requestContext": {"httpMethod": "GET", "resourcePath": "/openapi.json", "path": "/api/openapi.json",
                                "identity": {"sourceIp": "192.0.2.1"}},
             "headers": {}, "pathParameters": {}, "multiValueQueryStringParameters": None, "body": None,
             "stageVariables": {}}
    reply = app(event, None)
    assert reply["statusCode"] == 200
    assert json.loads(reply["body"])["servers"] == [{"url": "/api"}]


def tmpnb_pool(client: Any, world: World, image_name: str) -> None:
    """The default environment, its pool ready: drawn on by POST /api/spawn alone, not by the generated
    launches on the seeded environment (which would leave tmpnb's route nothing but 429s)."""
    staging = {"image-name": image_name, "environment-name": "tmpnb", "limits": {"cpu": "0.25", "memory": "512M"}}
    assert client.http.post("/stagings", body=json.dumps(staging), headers=auth()).status_code == 201
    client.http.put("/pools/tmpnb", body=json.dumps({"size": 4}), headers=auth())
    run_all_starting(client, world, "tmpnb")


BINDING = {"name": "requirements-binder", "repo": REPO}


def v1_binding(client: Any) -> None:
    """A binding of the seeded (built) repository at /bindings/binder-examples/requirements, staged at once."""
    created = client.http.post("/bindings/binder-examples/requirements", body=json.dumps(BINDING), headers=auth())
    assert created.status_code == 201 and body(created)["status"] == "completed", created.body


def with_examples(spec: dict[str, Any], seeded: Seeded) -> dict[str, Any]:
    """The document with examples that name the seeded build, staging and servers."""
    spec = json.loads(json.dumps(spec))
    for path in STREAMED:  # served by local mode's and the streaming function's servers, not Chalice's
        del spec["paths"][path]  # (their tests: test_binder_launch.py, test_stream_server.py)
    values = {"image_name": [seeded.image_name], "environment_name": [seeded.environment_name],
              "server_id": [seeded.server_id, seeded.stopped_server_id], "repository": [REPO],
              "binder_name": [seeded.environment_name], "org": ["binder-examples"], "repo": ["requirements"]}
    bodies = {"createBuild": {"repository": REPO},
              "registerImage": {"image-name": "approved-image", "image": "quay.io/jupyter/base-notebook:latest"},
              "createStaging": {"image-name": seeded.image_name, "limits": {"cpu": "0.25", "memory": "512M"}},
              "createPool": {"size": 2}, "resizePool": {"size": 1}, "createBinding": BINDING}
    for _, _, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["name"] in values:
                parameter.pop("example", None)
                parameter["examples"] = {f"seeded-{i}": {"value": v} for i, v in enumerate(values[parameter["name"]])}
        if operation["operationId"] in bodies:
            operation["requestBody"]["content"]["application/json"]["example"] = bodies[operation["operationId"]]
    return spec


# Generated pool sizes start few (moto) tasks; tmpnb's routes serve a pool of their own.
@pytest.mark.settings(max_pool_size=4, default_environment="tmpnb")
@pytest.mark.parametrize("caller", ["admin", "anonymous"])
def test_schemathesis_finds_no_failures(world: World, tmp_path: Path, caller: str) -> None:
    """As an admin every operation must answer 2xx for some request; anonymously exactly the public ones."""
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        seeded = seed(client, world)
        tmpnb_pool(client, world, seeded.image_name)
        v1_binding(client)
    with serve(app) as api:
        with urllib.request.urlopen(f"{api.url}/openapi.json", timeout=10) as reply:  # noqa: S310 (our server)
            spec = json.load(reply)
        schema, config, report = tmp_path / "openapi.json", tmp_path / "schemathesis.toml", tmp_path / "report.json"
        schema.write_text(json.dumps(with_examples(spec, seeded)))
        config.write_text(CONFIG)
        token = ["--header", f"Authorization: token {ADMIN}"] if caller == "admin" else []
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", str(schema),
             "--url", api.url, *token, "--checks", CHECKS,
             "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic", "--workers", "1",
             "--request-timeout", "10", "--suppress-health-check", "too_slow",  # a busy CI machine is not a bug
             "--report", "json", "--report-json-path", str(report), "--no-color"],
            capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)  # each run takes about a minute
        elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-3000:]
    summary = json.loads(report.read_text())
    answered = {(method, path) for method, path, status in api.app.answers if 200 <= status < 300}
    print(f"schemathesis ({caller}): {summary['operations']['tested']} operations, "
          f"{summary['test_cases']['generated']} test cases, {sum(api.app.answers.values())} requests in "
          f"{elapsed:.1f} s; answers: {sorted(api.app.answers.items())}")
    assert summary["operations"]["tested"] == len(chalice_routes())
    gone = {(method, path) for method, path in chalice_routes() if path == "/user/{proxy+}"}  # errors only
    expected = chalice_routes() - gone if caller == "admin" else {
        (method, path) for method, path, operation in operations(spec)
        if operation["security"] == [] and path not in STREAMED} - gone
    assert answered == expected, f"2xx for {answered - expected}, never for {expected - answered}"
    assert all(api.app.answers[(method, path, 410)] for method, path in gone), "the gone page"
    assert api.app.answers[("GET", "/deployments/{environment_name}/{server_id}", 410)], "the stopped server"
    unlisted = {(method, path) for method, path, _ in api.app.answers} - chalice_routes()
    assert {"TRACE", "QUERY", "PATCH"} <= {method for method, _ in unlisted}, "methods no route serves were sent"
    assert all(status == 405 for method, path, status in api.app.answers if (method, path) in unlisted
               and method != "OPTIONS")
