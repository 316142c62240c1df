"""/stagings: an image plus limits and services, made launchable."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.context import get_services
from chalicelib.limits import Limits
from chalicelib.models import Staging, StagingCreate
from chalicelib.routes.api import BODY_TYPES, endpoint, parse_body, reply

stagings = Blueprint(__name__)


def staging_reply(staging: Staging) -> dict[str, Any]:
    body: dict[str, Any] = {
        "environment-name": staging.environment_name,
        "image-name": staging.image_name,
        "limits": Limits(cpu=staging.cpu, memory=staging.memory).describe(),
        "services": staging.services,
        "status": staging.status.value,
    }
    if staging.reason:
        body["reason"] = staging.reason
    return body


@stagings.route("/stagings", methods=["POST"], content_types=BODY_TYPES)
@endpoint(stagings, "stagings.create")
def create_staging() -> Response:
    staging, created = get_services().stagings.create(parse_body(stagings, StagingCreate))
    return reply({"environment-name": staging.environment_name}, 201 if created else 200)


@stagings.route("/stagings/{environment_name}", methods=["GET"])
@endpoint(stagings, "stagings.get")
def get_staging(environment_name: str) -> Response:
    return reply(staging_reply(get_services().stagings.get(environment_name)))


@stagings.route("/stagings/{environment_name}/status", methods=["GET"])
@endpoint(stagings, "stagings.status")
def staging_status(environment_name: str) -> Response:
    staging = get_services().stagings.get(environment_name)
    body = {"status": staging.status.value}
    if staging.reason:
        body["reason"] = staging.reason
    return reply(body)
