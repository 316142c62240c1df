"""The vocabularies existing Binder clients speak: tmpnb's spawn and stats, BinderHub's providers and
health. Through the app as API Gateway would call it, on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import World, auth, body
from tests.helpers import built_image, pool_of, run_all_starting

DEFAULT = "tmpnb"


def stage_default(client: Any, world: World, pool: int) -> None:
    payload = {"image-name": built_image(client, world), "environment-name": DEFAULT}
    assert client.http.post("/stagings", body=json.dumps(payload), headers=auth()).status_code == 201
    if pool:
        client.http.put(f"/pools/{DEFAULT}", body=json.dumps({"size": pool}), headers=auth())
        run_all_starting(client, world, DEFAULT)
        assert pool_of(client, world, DEFAULT)["available"] == pool


@pytest.mark.settings(default_environment=DEFAULT)
def test_tmpnb_spawn_hands_out_the_default_pools_servers_then_says_full(client: Any, world: World) -> None:
    stage_default(client, world, pool=2)
    first = client.http.post("/api/spawn")  # anonymous, as a tmpnb page calls it
    second = client.http.post("/api/spawn")
    assert first.status_code == second.status_code == 200
    urls = [body(first)["url"], body(second)["url"]]
    assert len(set(urls)) == 2 and all("?token=" in url for url in urls)

    full = client.http.post("/api/spawn")
    assert full.status_code == 429 and body(full)["status"] == "full"  # never a cold start
    assert body(full)["error"] == "QuotaExceeded" and full.headers["Retry-After"] == "10"
    assert pool_of(client, world, DEFAULT) == {"running": 2, "available": 0, "starting": 0, "size": 2, "minPool": 2}


@pytest.mark.settings(default_environment=DEFAULT, max_servers_per_client=1)
def test_tmpnb_spawn_past_the_callers_limit_is_full_and_says_which_limit(client: Any, world: World) -> None:
    stage_default(client, world, pool=2)
    assert client.http.post("/api/spawn").status_code == 200
    refused = client.http.post("/api/spawn")
    assert refused.status_code == 429
    assert body(refused)["status"] == "full" and body(refused)["error"] and body(refused)["message"]
    assert pool_of(client, world, DEFAULT)["available"] == 1  # nothing changed


@pytest.mark.settings(default_environment=DEFAULT)
def test_tmpnb_stats_describe_the_default_pool(client: Any, world: World) -> None:
    stage_default(client, world, pool=1)
    stats = body(client.http.get("/api/stats"))
    assert {k: stats[k] for k in ("available", "capacity")} == {"available": 1, "capacity": 1}
    assert stats["version"] and stats["container_image"].startswith(world.settings.ecr_repository_uri)


def test_without_a_default_environment_tmpnbs_api_says_how_to_set_one(client: Any) -> None:
    for reply in (client.http.post("/api/spawn"), client.http.get("/api/stats")):
        assert reply.status_code == 404
        assert body(reply)["error"] == "NotFound" and "BINDERLESS_DEFAULT_ENVIRONMENT" in body(reply)["message"]


def test_repoproviders_are_binderhubs_four(client: Any) -> None:
    providers = body(client.http.get("/api/repoproviders"))
    assert [p["id"] for p in providers] == ["gh", "gl", "gist", "git"]
    assert all(p["displayName"] for p in providers)


def test_health_answers_in_binderhubs_shape_and_ours(client: Any) -> None:
    health = body(client.http.get("/health"))
    assert health["ok"] is True and health["checks"] == [{"service": "database", "ok": True}]
    assert health["status"] == "ok"


def test_an_unhealthy_database_is_binderhubs_503(client: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> None:
        raise ConnectionError("no route to DynamoDB")

    monkeypatch.setattr(world.services.store, "check", unreachable)
    reply = client.http.get("/health")
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "10"
    assert body(reply)["ok"] is False and body(reply)["checks"][0]["ok"] is False
    assert body(reply)["error"] == "Unavailable"
