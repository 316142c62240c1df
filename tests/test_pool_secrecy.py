"""A pooled server's token stays secret until the server is handed out.

Its location (token included) is what the next user gets; its id opens that location through the
public GET /deployments/{env}/{id} (its URL never names its id). So nothing answers an unclaimed
server's id, and lists give ids and URLs to admin tokens only.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.models import ServerState
from tests.conftest import World, auth, body
from tests.helpers import run_all_starting, staged

UNKNOWN = "f" * 32


def pooled(client: Any, world: World, size: int = 2) -> str:
    environment = staged(client, world)
    reply = client.http.put(f"/pools/{environment}", body=json.dumps({"size": size}), headers=auth())
    assert reply.status_code == 200, reply.body
    return environment


def idle_ids(world: World, environment: str) -> list[str]:
    return [s.id for s in world.services.store.servers.live(environment) if not s.claimed]


def test_an_unclaimed_server_answers_exactly_like_an_unknown_id(client: Any, world: World) -> None:
    environment = pooled(client, world)
    starting = idle_ids(world, environment)
    unknown = client.http.get(f"/deployments/{environment}/{UNKNOWN}")
    assert unknown.status_code == 404

    for server_id in starting:  # starting, then available (with a location that carries its token)
        reply = client.http.get(f"/deployments/{environment}/{server_id}")
        assert (reply.status_code, reply.headers, body(reply)) == (
            unknown.status_code, unknown.headers, json.loads(unknown.body.decode().replace(UNKNOWN, server_id)))
    run_all_starting(client, world, environment)
    available = [s for s in world.services.store.servers.live(environment) if s.state is ServerState.available]
    assert len(available) == 2 and all(s.location for s in available)
    for server in available:
        for headers in ({}, auth()):  # not even for an admin: the id is a capability, and this one is no one's
            reply = client.http.get(f"/deployments/{environment}/{server.id}", headers=headers)
            assert reply.status_code == 404 and server.token not in reply.body.decode()

    claimed = body(client.http.post(f"/deployments/{environment}"))

    assert claimed["id"] in {s.id for s in available}
    followed = client.http.get(f"/deployments/{environment}/{claimed['id']}")
    assert followed.status_code == 200 and body(followed)["location"] == claimed["location"]


def test_a_deployments_token_lists_statuses_only(client: Any, world: World) -> None:
    environment = pooled(client, world, size=3)
    run_all_starting(client, world, environment)
    handed_out = body(client.http.post(f"/deployments/{environment}"))["id"]
    launcher, _ = world.services.auth.create_token("launcher page", ["deployments"])
    servers = world.services.store.servers.live(environment)
    secrets = [s.id for s in servers] + [s.token for s in servers] + [s.url for s in servers if s.url]

    listed = client.http.get(f"/deployments/{environment}", headers=auth(launcher))

    assert listed.status_code == 200
    assert sorted(body(listed), key=lambda s: s["status"]) == [
        {"status": "available"}, {"status": "available"}, {"status": "running"}]
    assert not [secret for secret in secrets if secret in listed.body.decode()]
    assert client.http.get(f"/deployments/{environment}/{handed_out}").status_code == 200  # its owner's, still


def test_an_admin_token_lists_ids_and_urls_but_no_token(client: Any, world: World) -> None:
    environment = pooled(client, world)
    run_all_starting(client, world, environment)
    servers = {s.id: s for s in world.services.store.servers.live(environment)}

    listed = body(client.http.get(f"/deployments/{environment}", headers=auth()))

    assert {s["id"] for s in listed} == set(servers)
    for entry in listed:
        server = servers[entry["id"]]
        assert entry == {"id": server.id, "status": "available", "uri": f"/deployments/{environment}/{server.id}",
                         "location": server.url}
        assert server.token not in json.dumps(listed)


def test_a_public_list_shows_anonymous_callers_statuses_only(client: Any, world: World, monkeypatch: Any) -> None:
    environment = pooled(client, world)
    run_all_starting(client, world, environment)
    settings = world.services.auth.settings
    monkeypatch.setattr(world.services.auth, "settings", settings.model_copy(
        update={"public_endpoints": (*settings.public_endpoints, "deployments.list")}))

    for headers in ({}, {"Authorization": "token not-a-token"}):
        listed = client.http.get(f"/deployments/{environment}", headers=headers)
        assert listed.status_code == 200
        assert body(listed) == [{"status": "available"}, {"status": "available"}]
