"""The OpenAPI document states the constraints the API enforces: what its schemas refuse, the API
refuses (400/422, or 404 for a path no name can match), and what they accept gets past validation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from chalicelib.errors import Invalid
from chalicelib.limits import CPU_TEXT_PATTERN, MEMORY_TEXT_PATTERN, parse_cpu, parse_memory
from chalicelib.services.servers import new_server_id
from tests.conftest import World, auth, body
from tests.helpers import REPO, built_image, run_all_starting

MAX_POOL = 2


def document(client: Any) -> dict[str, Any]:
    return dict(body(client.http.get("/openapi.json")))


def valid(spec: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    validator = Draft202012Validator({**schema, "components": spec["components"]},
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    return validator.is_valid(value)


def model(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def parameter(spec: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    schema, = (p["schema"] for p in spec["paths"][path][method]["parameters"] if p["name"] == name)
    return dict(schema)


def post(client: Any, path: str, payload: Any) -> Any:
    return client.http.post(path, body=json.dumps(payload), headers=auth())


@pytest.mark.settings(max_pool_size=MAX_POOL)
def test_what_the_schemas_refuse_the_api_refuses_and_what_they_accept_it_takes(client: Any, world: World) -> None:
    spec = document(client)
    image = built_image(client, world)
    long_url = "https://github.com/binder-examples/" + "r" * 2020  # 2,055 characters
    refused = [
        ("/builds/repos", "BuildCreate", {"repository": long_url}),
        ("/builds/repos", "BuildCreate", {"repository": "github.com/binder-examples/requirements"}),  # no scheme
        ("/builds/repos", "BuildCreate", {"repository": REPO, "ref": ""}),
        ("/builds/repos", "BuildCreate", {"repository": REPO, "ref": "r" * 256}),
        ("/builds/images", "ImageRegister", {"image-name": "Scipy", "image": "quay.io/jupyter/scipy-notebook"}),
        ("/stagings", "StagingCreate", {"image-name": "Not an image name"}),
        ("/stagings", "StagingCreate", {"image-name": image, "environment-name": "-leading-dash"}),
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"cpu": "lots"}}),
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"cpu": True}}),
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"memory": -512}}),
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"memory": "1 TB"}}),
        ("/stagings", "StagingCreate", {"image-name": image, "services": [{"name": "postgres"}] * 6}),
    ]
    for path, name, payload in refused:
        assert not valid(spec, model(name), payload), payload
        reply = post(client, path, payload)
        assert reply.status_code in (400, 422), (payload, reply.status_code, reply.body)

    accepted = [
        ("/builds/repos", "BuildCreate", {"repository": REPO, "ref": "HEAD"}, 200),  # built already
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"cpu": " 2 vCPU", "memory": "4GiB"}}, 201),
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"cpu": 0.25, "memory": 512}}, 201),
        ("/stagings", "StagingCreate", {"image-name": image, "limits": {"cpu": "500m", "memory": "1G"},
                                        "environment-name": "my.env_1"}, 201),
    ]
    for path, name, payload, status in accepted:
        assert valid(spec, model(name), payload), payload
        reply = post(client, path, payload)
        assert reply.status_code == status, (payload, reply.body)

    environment = "my.env_1"
    assert spec["components"]["schemas"]["PoolSize"]["properties"]["size"]["maximum"] == MAX_POOL
    assert not valid(spec, model("PoolSize"), {"size": MAX_POOL + 1})
    assert post(client, f"/pools/{environment}", {"size": MAX_POOL + 1}).status_code == 422
    assert valid(spec, model("PoolSize"), {"size": MAX_POOL})
    assert post(client, f"/pools/{environment}", {"size": MAX_POOL}).status_code == 200


def test_path_and_query_parameters_say_what_can_exist(client: Any, world: World) -> None:
    spec = document(client)
    server_id = parameter(spec, "/deployments/{environment_name}/{server_id}", "get", "server_id")
    environment = parameter(spec, "/stagings/{environment_name}", "get", "environment_name")
    image = parameter(spec, "/builds/repos/{image_name}", "get", "image_name")
    repository = parameter(spec, "/builds/repos", "get", "repository")

    assert all(valid(spec, server_id, new_server_id()) for _ in range(20))
    assert not valid(spec, server_id, "9F3C" + "0" * 28) and not valid(spec, server_id, "0" * 31)
    name = built_image(client, world)
    assert valid(spec, image, name) and not valid(spec, image, name.upper())
    assert client.http.get(f"/builds/repos/{name.upper()}").status_code == 404
    assert not valid(spec, environment, "Bad.Env")
    assert client.http.get("/stagings/Bad.Env", headers=auth()).status_code == 404
    assert repository["format"] == "uri" and repository["maxLength"] == 2048
    assert not valid(spec, repository, "not a url")
    assert client.http.get("/builds/repos?repository=not%20a%20url").status_code == 400


def cpu_pattern_or_not() -> Any:
    matching = st.from_regex(CPU_TEXT_PATTERN, fullmatch=True)
    return st.one_of(matching, st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(cpu_pattern_or_not(), st.one_of(st.from_regex(MEMORY_TEXT_PATTERN, fullmatch=True), st.text(max_size=12)))
def test_the_documented_limit_patterns_are_the_forms_the_parser_reads(cpu: str, memory: str) -> None:
    for text, pattern, parse in ((cpu, CPU_TEXT_PATTERN, parse_cpu), (memory, MEMORY_TEXT_PATTERN, parse_memory)):
        documented = re.fullmatch(pattern, text) is not None
        try:
            parse(text)
            understood = True
        except Invalid as error:
            understood = "not understood" not in error.message
        # The pattern leaves out signs ("+1", "-1"): the parser reads them, and refuses all but "+".
        if not text.strip().startswith(("+", "-")):
            assert documented == understood, (text, documented, understood)


def test_pooled_servers_have_ids_the_document_describes(client: Any, world: World) -> None:
    spec = document(client)
    server_id = parameter(spec, "/deployments/{environment_name}/{server_id}", "delete", "server_id")
    image = built_image(client, world)
    environment = body(post(client, "/stagings", {"image-name": image}))["environment-name"]
    post(client, f"/pools/{environment}", {"size": 2})
    run_all_starting(client, world, environment)
    ids = [s.id for s in world.services.store.servers.live(environment)]
    assert len(ids) == 2 and all(valid(spec, server_id, i) for i in ids)
