"""Browser origins on AWS stages: any page by default (as mybinder.org), the operator's list when set."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.config import Settings
from chalicelib.origins import ALLOW_HEADERS, EXPOSE_HEADERS
from tests.conftest import World, auth, body
from tests.helpers import REPO

BOOK = "https://book.example.org"


def build(client: Any, origin: str) -> Any:
    return client.http.post("/builds/repos", body=json.dumps({"repository": REPO}),
                            headers={"Origin": origin, "Content-Type": "text/plain"})


def test_any_page_may_call_an_aws_stage_by_default(client: Any, world: World) -> None:
    world.git.push(REPO)
    reply = build(client, "https://anyone.example")
    assert reply.status_code == 202, reply.body
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert set(EXPOSE_HEADERS) <= {h.strip() for h in reply.headers["Access-Control-Expose-Headers"].split(",")}


@pytest.mark.settings(cors_origins=(BOOK,))
def test_with_a_list_other_pages_are_refused_and_nothing_changes(client: Any, world: World) -> None:
    world.git.push(REPO)
    refused = build(client, "https://other.example")
    assert refused.status_code == 403 and body(refused)["error"] == "Forbidden"
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert client.http.get(f"/builds/repos?repository={REPO}", headers=auth()).status_code == 404
    assert world.codebuild.list_builds()["ids"] == []

    served = build(client, BOOK)
    assert served.status_code == 202
    assert served.headers["Access-Control-Allow-Origin"] == BOOK and served.headers["Vary"] == "Origin"
    assert client.http.get("/health").headers.get("Access-Control-Allow-Origin") is None  # no Origin, no CORS


def test_the_preflight_config_allows_what_the_readme_promises() -> None:
    from app import app

    cors = app.api.cors
    assert not isinstance(cors, bool)
    headers = cors.get_access_control_headers()
    allowed = set(headers["Access-Control-Allow-Headers"].split(","))
    assert {"Authorization", "Content-Type", "Idempotency-Key"} <= allowed and set(ALLOW_HEADERS) <= allowed
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("value", ["https://a.example/path", "a.example", "ftp://a.example", "https://u@a.example",
                                   ",".join(f"https://site-{n}.pages.example.org" for n in range(80))])
def test_a_malformed_origin_fails_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings.from_env({"BINDERLESS_CORS_ORIGINS": value})


def test_origins_are_read_as_a_list() -> None:
    settings = Settings.from_env({"BINDERLESS_CORS_ORIGINS": " https://Book.example.org/ , http://localhost:5173"})
    assert settings.cors_origins == (BOOK, "http://localhost:5173")
    assert Settings.from_env({"BINDERLESS_CORS_ORIGINS": ""}).cors_origins == ()
    assert Settings().cors_origins == ("*",)
