"""The vocabularies existing clients speak: tmpnb's ``/api/spawn`` and ``/api/stats``, and BinderHub's
``/api/repoproviders``. (BinderHub's ``/health`` and ``/versions`` shapes are in meta.py's replies.)

tmpnb hands out containers from its pool and nothing else: ``POST /api/spawn`` answers a ready
server's URL at once, or 429 ``{"status": "full"}`` when the pool has none; it never starts one
cold. Here the pool is that of the operator's default environment (BINDERLESS_DEFAULT_ENVIRONMENT),
and an anonymous caller's spawns count against its limits as its launches do.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib import __version__
from chalicelib.context import get_services
from chalicelib.errors import NotFound, QuotaExceeded
from chalicelib.routes.api import BODY_TYPES, anonymous_client, endpoint, error_reply, reply

compat = Blueprint(__name__)
FULL_RETRY_AFTER = 10  # seconds: about when the schedule has refilled the pool (locally, far sooner)


def default_environment() -> str:
    name = get_services().settings.default_environment
    if not name:
        raise NotFound("This deployment has no default environment for tmpnb's API; the operator sets "
                       "BINDERLESS_DEFAULT_ENVIRONMENT (an environment with a pool).")
    return name


@compat.route("/api/spawn", methods=["POST"], content_types=BODY_TYPES)
@endpoint(compat, "deployments.create")
def spawn() -> Response:
    try:
        server = get_services().deployments.claim(default_environment(), client=anonymous_client(compat))
        if server is None:
            raise QuotaExceeded("The pool has no ready server right now; try again in a moment.",
                                headers={"Retry-After": str(FULL_RETRY_AFTER)})
    except QuotaExceeded as refused:  # tmpnb's clients look for "full"; the error says which limit or why
        return error_reply(refused, "spawn", status="full")
    return reply({"url": server.location})


@compat.route("/api/stats", methods=["GET"])
@endpoint(compat, "pools.get")
def stats() -> Response:
    services = get_services()
    name = default_environment()
    pool, staging = services.pools.get(name), services.stagings.get(name)
    return reply({"available": pool.available, "capacity": pool.size, "version": __version__,
                  "container_image": staging.image})


@compat.route("/api/repoproviders", methods=["GET"])
@endpoint(compat, "repoproviders")
def repoproviders() -> Response:
    from chalicelib.providers import repoproviders as listed

    return reply(listed())
