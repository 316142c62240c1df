"""/health, /versions and /openapi.json: what monitoring, a client's feature check and tooling ask."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib import __version__
from chalicelib.context import get_services
from chalicelib.errors import Unavailable
from chalicelib.routes.api import endpoint, error_reply, reply

meta = Blueprint(__name__)


@meta.route("/health", methods=["GET"])
@endpoint(meta, "health")
def health() -> Response:
    services = get_services()
    try:
        services.store.check()
    except Exception:
        # BinderHub's 503 (``ok``, ``checks``) and our error's fields in one body: either client reads it.
        return error_reply(Unavailable("The database cannot be reached.", headers={"Retry-After": "10"}), "health",
                           ok=False, checks=[{"service": "database", "ok": False}])
    return reply({"ok": True, "checks": [{"service": "database", "ok": True}], "status": "ok",
                  "backend": services.settings.backend})


@meta.route("/versions", methods=["GET"])
@endpoint(meta, "versions")
def versions() -> Response:
    """BinderHub's shape (``binderhub``, ``builder_info``: what a federation's health check and Binder
    clients read) and ours beside it."""
    services = get_services()
    return reply({"binderhub": __version__, "builder_info": dict(services.builds.builder.info),
                  "binderless": __version__, "api": "v2", "backend": services.settings.backend})


@meta.route("/openapi.json", methods=["GET"])
@endpoint(meta, "openapi")
def openapi() -> Response:
    # Imported here: the reply models are not needed to serve anything else (import cost is the cold start).
    from chalicelib.openapi import openapi_document

    context = meta.current_request.context or {}
    # Behind API Gateway the path carries the stage (/api/openapi.json); the resource path does not.
    base_path = str(context.get("path", "")).removesuffix(str(context.get("resourcePath", "")))
    services = get_services()
    return reply(openapi_document(meta.current_app.routes, services.auth.is_public, base_path,
                                  max_pool_size=services.settings.max_pool_size))
