"""The v1 seed's vocabulary: ``/bindings/{org}/{repo}`` declares a binder; ``/binders/{name}`` launches it.

A binder is an environment: its name is the binding's ``name`` (any environment-name works too), its
pool is ``/pools/{name}`` (replies carry v1's ``minPool``), and ``/binders/{name}`` answers as
``/deployments/{name}`` does, in the same shapes: the seed's ``{id}`` / ``{id, location}``, with our
``status`` beside them. Names are lowercase; the seed's ``/binders/CodeNeuro-notebooks/`` finds
``codeneuro-notebooks``. Trailing slashes are optional (API Gateway and local mode drop them).
"""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.context import get_services
from chalicelib.models import BindingCreate, Server
from chalicelib.routes.api import BODY_TYPES, anonymous_client, endpoint, idempotent, parse_body, reply
from chalicelib.routes.deployments import listed_server, server_reply
from chalicelib.services.bindings import IGNORED, BindingState

v1 = Blueprint(__name__)


def binding_reply(state: BindingState) -> dict[str, Any]:
    binding = state.binding
    body: dict[str, Any] = {**binding.declaration, "image-name": binding.image_name, "status": state.status.value}
    if state.reason:
        body["reason"] = state.reason
    ignored = [field for field in IGNORED if field in binding.declaration]
    if ignored:
        body["ignored"] = ignored
    return body


def listed_binder(server: Server, *, admin: bool) -> dict[str, Any]:
    """As ``listed_server``: ids and locations to admins only, with the binder's own ``uri``."""
    body = listed_server(server, admin=admin)
    if admin:
        body["uri"] = f"/binders/{server.environment_name}/{server.id}"
    return body


@v1.route("/bindings/{org}/{repo}", methods=["POST"], content_types=BODY_TYPES)
@endpoint(v1, "bindings.create")
def create_binding(org: str, repo: str) -> Response:
    declaration = parse_body(v1, BindingCreate)
    state, created = get_services().bindings.create(org, repo, declaration, client=anonymous_client(v1))
    return reply(binding_reply(state), 201 if created else 200)


@v1.route("/bindings/{org}/{repo}", methods=["GET"])
@endpoint(v1, "bindings.get")
def get_binding(org: str, repo: str) -> Response:
    return reply(binding_reply(get_services().bindings.get(org, repo)))


@v1.route("/bindings/{org}/{repo}", methods=["HEAD"])
@endpoint(v1, "bindings.get")
def binding_exists(org: str, repo: str) -> Response:
    """200 or 404, headers only (one read: it does not look at the build)."""
    get_services().bindings.find(org, repo)
    return Response(body="", headers={"Content-Type": "application/json"}, status_code=200)


@v1.route("/binders/{binder_name}", methods=["POST"], content_types=BODY_TYPES)
@endpoint(v1, "binders.create")
def launch_binder(binder_name: str) -> Response:
    name, client, services = binder_name.lower(), anonymous_client(v1), get_services()

    def start() -> tuple[int, dict[str, Any]]:
        server, from_pool = services.bindings.on_binder(name, lambda: services.deployments.launch(name, client=client))
        return 201 if from_pool else 202, server_reply(server)

    return idempotent(v1, f"binders.create:{name}", None, start)


@v1.route("/binders/{binder_name}", methods=["GET"])
@endpoint(v1, "binders.list")
def list_binders(binder_name: str) -> Response:
    name, services = binder_name.lower(), get_services()
    admin = services.auth.is_admin(v1.current_request.headers.get("authorization"))
    servers = services.bindings.on_binder(name, lambda: services.deployments.list(name))
    return reply([listed_binder(server, admin=admin) for server in servers])


@v1.route("/binders/{binder_name}/{server_id}", methods=["GET"])
@endpoint(v1, "binders.get")
def get_binder(binder_name: str, server_id: str) -> Response:
    return reply(server_reply(get_services().deployments.get(binder_name.lower(), server_id)))
