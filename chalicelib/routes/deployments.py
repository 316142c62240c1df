"""/deployments: launch a server for one user, follow it, list and stop servers."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.context import get_services
from chalicelib.models import Server
from chalicelib.routes.api import BODY_TYPES, anonymous_client, endpoint, idempotent, reply

deployments = Blueprint(__name__)


def server_reply(server: Server) -> dict[str, Any]:
    """What the server's owner sees: the location carries the token."""
    body: dict[str, Any] = {"id": server.id, "status": server.state.value}
    if server.location:
        body["location"] = server.location
    if server.reason:
        body["reason"] = server.reason
    return body


def listed_server(server: Server, *, admin: bool) -> dict[str, Any]:
    """What a list shows: never a server token; to an admin, the ids and URLs too.

    An id is the capability for GET /deployments/{env}/{id}, which answers the location with its
    token (a server's path never names its id): a caller with merely the ``deployments`` scope
    (a launcher page's token) sees how many servers are in which state, not whose they are."""
    body: dict[str, Any] = {"status": server.state.value}
    if admin:
        body |= {"id": server.id, "uri": f"/deployments/{server.environment_name}/{server.id}"}
        if server.location:
            body["location"] = server.url
    return body


@deployments.route("/deployments/{environment_name}", methods=["POST"], content_types=BODY_TYPES)
@endpoint(deployments, "deployments.create")
def launch(environment_name: str) -> Response:
    client = anonymous_client(deployments)

    def start() -> tuple[int, dict[str, Any]]:
        server, from_pool = get_services().deployments.launch(environment_name, client=client)
        return 201 if from_pool else 202, server_reply(server)

    return idempotent(deployments, f"deployments.create:{environment_name}", None, start)


@deployments.route("/deployments/{environment_name}", methods=["GET"])
@endpoint(deployments, "deployments.list")
def list_servers(environment_name: str) -> Response:
    services = get_services()
    admin = services.auth.is_admin(deployments.current_request.headers.get("authorization"))
    return reply([listed_server(s, admin=admin) for s in services.deployments.list(environment_name)])


@deployments.route("/deployments/{environment_name}/{server_id}", methods=["GET"])
@endpoint(deployments, "deployments.get")
def get_server(environment_name: str, server_id: str) -> Response:
    return reply(server_reply(get_services().deployments.get(environment_name, server_id)))


@deployments.route("/deployments/{environment_name}/{server_id}", methods=["DELETE"])
@endpoint(deployments, "deployments.delete")
def delete_server(environment_name: str, server_id: str) -> Response:
    """Owner or admin: the server's own token or an admin token (auth.OWNER_OR_ADMIN)."""
    services = get_services()
    header = deployments.current_request.headers.get("authorization")
    server = services.deployments.find(environment_name, server_id)
    services.auth.authorize_server("deployments.delete", header, server)
    server = services.deployments.stop(server)
    return reply(server_reply(server), 202 if server.state.value == "stopping" else 200)
