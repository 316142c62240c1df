"""Tokens: who may call what. Every protected endpoint refuses no token, a bad token, a wrong scope."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.auth import ENDPOINT_SCOPES, hash_token, parse_authorization
from chalicelib.cli import main as cli
from chalicelib.config import Settings
from chalicelib.models import Token
from tests.conftest import World, auth, body
from tests.helpers import staged, task_event, task_of

# (method, path, endpoint) for every endpoint the seeds protect by default, but for deployments.delete
# (owner or admin: its own test below).
PROTECTED = [
    ("GET", "/builds/repos/some-image/status", "builds.status"),
    ("POST", "/builds/images", "images.register"),
    ("POST", "/stagings", "stagings.create"),
    ("GET", "/stagings/some-env", "stagings.get"),
    ("GET", "/stagings/some-env/status", "stagings.status"),
    ("GET", "/deployments/some-env", "deployments.list"),
    ("GET", "/pools", "pools.list"),
    ("POST", "/pools/some-env", "pools.put"),
    ("PUT", "/pools/some-env", "pools.put"),
    ("DELETE", "/pools/some-env", "pools.delete"),
]


def call(client: Any, method: str, path: str, headers: dict[str, str]) -> Any:
    return getattr(client.http, method.lower())(path, headers=headers, body=json.dumps({"size": 1}))


def new_token(world: World, *scopes: str, ttl: int | None = None) -> str:
    plain, _ = world.services.auth.create_token("test", list(scopes), ttl=ttl)
    return plain


@pytest.mark.parametrize(("method", "path", "endpoint"), PROTECTED)
def test_protected_endpoints_refuse_missing_wrong_and_underscoped_tokens(
        client: Any, world: World, method: str, path: str, endpoint: str) -> None:
    wrong_scope = "pools" if ENDPOINT_SCOPES[endpoint] != "pools" else "builds"
    cases = [({}, 401), ({"Authorization": "token not-a-real-token"}, 401),
             ({"Authorization": f"token {new_token(world, wrong_scope)}"}, 403)]
    for headers, status in cases:
        reply = call(client, method, path, headers)
        assert reply.status_code == status, (headers, reply.body)
        assert set(body(reply)) == {"error", "message"}
    allowed = call(client, method, path, {"Authorization": f"token {new_token(world, ENDPOINT_SCOPES[endpoint])}"})
    assert allowed.status_code not in (401, 403)


def running_server(client: Any, world: World, environment: str) -> tuple[str, str]:
    """A cold-started server that has its location: (id, its own token)."""
    server_id = body(client.http.post(f"/deployments/{environment}", body=""))["id"]
    task_event(client, world, task_of(world, environment, server_id), "RUNNING")
    location = body(client.http.get(f"/deployments/{environment}/{server_id}"))["location"]
    return server_id, location.split("?token=")[1]


def test_stopping_a_server_takes_its_own_token_or_an_admin_token(client: Any, world: World) -> None:
    environment = staged(client, world)
    mine, my_token = running_server(client, world, environment)
    other, other_token = running_server(client, world, environment)
    everything_but_admin = new_token(world, "builds", "stagings", "deployments", "pools")
    expired_admin = new_token(world, "admin", ttl=60)
    world.clock.advance(61)
    refused = [({}, 401), ({"Authorization": "token not-a-real-token"}, 401),
               ({"Authorization": f"token {other_token}"}, 401), ({"Authorization": f"token {expired_admin}"}, 401),
               ({"Authorization": f"token {new_token(world, 'deployments')}"}, 403),
               ({"Authorization": f"token {everything_but_admin}"}, 403)]
    for headers, status in refused:
        reply = client.http.delete(f"/deployments/{environment}/{mine}", headers=headers)
        assert reply.status_code == status, (headers, reply.body)
        assert "server's own token" in body(reply)["message"]
        assert (status == 401) == ("WWW-Authenticate" in reply.headers)
    assert "expired" in body(client.http.delete(f"/deployments/{environment}/{mine}",
                                                headers={"Authorization": f"token {expired_admin}"}))["message"]
    assert body(client.http.get(f"/deployments/{environment}/{mine}"))["status"] == "running"

    own = client.http.delete(f"/deployments/{environment}/{mine}", headers={"Authorization": my_token})
    assert own.status_code == 202
    assert client.http.delete(f"/deployments/{environment}/{other}",
                              headers={"Authorization": f"Bearer {new_token(world, 'admin')}"}).status_code == 202
    third, _ = running_server(client, world, environment)
    assert client.http.delete(f"/deployments/{environment}/{third}", headers=auth()).status_code == 202
    missing = client.http.delete(f"/deployments/{environment}/{'0' * 32}", headers=auth())
    assert missing.status_code == 404


def test_an_operator_may_still_make_stopping_servers_public(client: Any, world: World, monkeypatch: Any) -> None:
    environment = staged(client, world)
    server_id, _ = running_server(client, world, environment)
    opened = Settings.from_env({"BINDERLESS_PUBLIC_ENDPOINTS": "deployments.create,deployments.get,deployments.delete"})
    monkeypatch.setattr(world.services.auth, "settings", opened)
    assert client.http.delete(f"/deployments/{environment}/{server_id}").status_code == 202


@pytest.mark.parametrize("header", ["token {t}", "Bearer {t}", "{t}", "bearer   {t}"])
def test_token_is_accepted_in_every_form_the_seeds_use(client: Any, world: World, header: str) -> None:
    token = new_token(world, "pools")
    assert client.http.get("/pools", headers={"Authorization": header.format(t=token)}).status_code == 200


def test_tokens_are_stored_only_as_hashes_and_expire(client: Any, world: World) -> None:
    token = new_token(world, "pools", ttl=60)
    items = world.dynamodb.scan(TableName="binderless")["Items"]
    assert token not in json.dumps(items) and hash_token(token) in json.dumps(items)

    world.clock.advance(61)

    reply = client.http.get("/pools", headers={"Authorization": f"token {token}"})
    assert reply.status_code == 401 and "expired" in body(reply)["message"]


def test_public_endpoints_are_an_operator_setting(client: Any, world: World, monkeypatch: Any) -> None:
    assert client.http.get("/pools/some-env").status_code == 404  # public by default: no 401
    closed = Settings.from_env({"BINDERLESS_PUBLIC_ENDPOINTS": "builds.create"})
    assert closed.public_endpoints == ("builds.create",)
    monkeypatch.setattr(world.services.auth, "settings", closed)
    assert client.http.get("/pools/some-env").status_code == 401


def test_cli_creates_lists_and_revokes(client: Any, world: World, capsys: Any) -> None:
    assert cli(["token", "create", "--name", "ci", "--scopes", "pools"]) == 0
    token = capsys.readouterr().out.strip()
    assert client.http.get("/pools", headers={"Authorization": f"token {token}"}).status_code == 200
    assert cli(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and token not in listing

    assert cli(["token", "revoke", listing.split()[0]]) == 0

    assert client.http.get("/pools", headers={"Authorization": f"token {token}"}).status_code == 401
    assert cli(["token", "create", "--name", "x", "--scopes", "root"]) == 1


def test_revoking_by_an_id_that_several_tokens_share_revokes_none(client: Any, world: World, capsys: Any) -> None:
    tokens = world.services.store.tokens
    shared = "0123abcd"  # two ids of 8 characters that collide: as likely as a birthday, in a long list
    for suffix, name in (("1" * 56, "first"), ("2" * 56, "second")):
        tokens.create(Token(digest=shared + suffix, name=name, scopes=["pools"], created_at=1))

    assert cli(["token", "revoke", shared]) == 1

    assert "matches 2 tokens" in capsys.readouterr().err
    assert sorted(t.name for t in tokens.all()) == ["first", "second"]
    assert cli(["token", "revoke", shared + "1111"]) == 0
    assert "(first)" in capsys.readouterr().out
    assert [t.name for t in tokens.all()] == ["second"]


def test_admin_token_from_the_environment_is_admin(client: Any) -> None:
    assert client.http.get("/pools", headers=auth()).status_code == 200


def test_parse_authorization() -> None:
    assert parse_authorization("token abc") == "abc"
    assert parse_authorization("Bearer abc") == "abc"
    assert parse_authorization("abc") == "abc"
    assert parse_authorization("") is None
    assert parse_authorization("a b c") is None
