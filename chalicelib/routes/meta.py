"""/health and /versions: what an operator's monitoring and a client's feature check ask."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib import __version__
from chalicelib.context import get_services
from chalicelib.errors import Unavailable
from chalicelib.routes.api import endpoint, reply

meta = Blueprint(__name__)


@meta.route("/health", methods=["GET"])
@endpoint(meta, "health")
def health() -> Response:
    services = get_services()
    try:
        services.store.dynamo.get("HEALTH", "HEALTH")
    except Exception:
        raise Unavailable("The database cannot be reached.", headers={"Retry-After": "10"}) from None
    return reply({"status": "ok", "backend": services.settings.backend})


@meta.route("/versions", methods=["GET"])
@endpoint(meta, "versions")
def versions() -> Response:
    return reply({"binderless": __version__, "api": "v2", "backend": get_services().settings.backend})
