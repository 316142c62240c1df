"""/pools: how many idle, ready servers to keep per environment, and how many are handed out."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.context import get_services
from chalicelib.models import Pool, PoolSize
from chalicelib.routes.api import BODY_TYPES, endpoint, parse_body, reply

pools = Blueprint(__name__)


def pool_reply(pool: Pool) -> dict[str, Any]:
    # ``minPool``: the v1 seed's name for ``size``, which v1 clients read.
    return {"running": pool.running, "available": pool.available, "starting": pool.starting, "size": pool.size,
            "minPool": pool.size}


@pools.route("/pools", methods=["GET"])
@endpoint(pools, "pools.list")
def list_pools() -> Response:
    return reply({name: pool_reply(pool) for name, pool in get_services().pools.all().items()})


@pools.route("/pools/{environment_name}", methods=["GET"])
@endpoint(pools, "pools.get")
def get_pool(environment_name: str) -> Response:
    return reply(pool_reply(get_services().pools.get(environment_name)))


@pools.route("/pools/{environment_name}", methods=["POST", "PUT"], content_types=BODY_TYPES)
@endpoint(pools, "pools.put")
def resize_pool(environment_name: str) -> Response:
    size = parse_body(pools, PoolSize).size
    services = get_services()  # a v1 binder's pool: its binding is staged first if its image is built
    return reply(pool_reply(services.bindings.on_binder(environment_name,
                                                        lambda: services.pools.resize(environment_name, size))))


@pools.route("/pools/{environment_name}", methods=["DELETE"])
@endpoint(pools, "pools.delete")
def delete_pool(environment_name: str) -> Response:
    return reply(pool_reply(get_services().pools.delete(environment_name)))
