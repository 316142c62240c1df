"""/builds: build images from repositories; register operator-approved images."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.backends.base import MAX_CURSOR
from chalicelib.context import get_services
from chalicelib.errors import BadRequest
from chalicelib.models import Build, BuildCreate, BuildStatus, ImageRegister
from chalicelib.routes.api import BODY_TYPES, anonymous_client, endpoint, idempotent, parse_body, query_param, reply

builds = Blueprint(__name__)


def build_reply(build: Build) -> dict[str, Any]:
    body: dict[str, Any] = {"image-name": build.image_name, "status": build.status.value}
    if build.registered:
        body["image"] = build.image
    else:
        body |= {"repository": build.repository, "ref": build.ref, "commit": build.commit,
                 "dependencies": build.dependencies}
    if build.reason:
        body["reason"] = build.reason
    return body


@builds.route("/builds/repos", methods=["POST"], content_types=BODY_TYPES)
@endpoint(builds, "builds.create")
def create_build() -> Response:
    request = parse_body(builds, BuildCreate)
    client = anonymous_client(builds)

    def build() -> tuple[int, dict[str, Any]]:
        started = get_services().builds.request(request, client=client)
        status = 202 if started.status is BuildStatus.pending else 200
        return status, {"image-name": started.image_name, "status": started.status.value}

    return idempotent(builds, "builds.create", request.model_dump(mode="json"), build)


@builds.route("/builds/repos", methods=["GET"])
@endpoint(builds, "builds.find")
def find_build() -> Response:
    repository = query_param(builds, "repository")
    if not repository:
        raise BadRequest("Say which repository: GET /builds/repos?repository=https://github.com/user/name")
    build = get_services().builds.find(repository)
    return reply({"image-name": build.image_name, "status": build.status.value})


@builds.route("/builds/repos/{image_name}", methods=["GET"])
@endpoint(builds, "builds.get")
def get_build(image_name: str) -> Response:
    return reply(build_reply(get_services().builds.get(image_name)))


@builds.route("/builds/repos/{image_name}/status", methods=["GET"])
@endpoint(builds, "builds.status")
def build_status(image_name: str) -> Response:
    build = get_services().builds.get(image_name)
    body = {"status": build.status.value}
    if build.reason:
        body["reason"] = build.reason
    return reply(body)


@builds.route("/builds/repos/{image_name}/logs", methods=["GET"])
@endpoint(builds, "builds.logs")
def build_logs(image_name: str) -> Response:
    """A page of the build's log: its lines after ``cursor`` and the cursor to come back with (the same
    one while nothing new is logged). The build's status says whether more can come."""
    cursor = query_param(builds, "cursor") or ""
    if len(cursor) > MAX_CURSOR:
        raise BadRequest(f"cursor is at most {MAX_CURSOR} characters: pass the last reply's cursor")
    services = get_services()
    build = services.builds.get(image_name)
    page = services.builds.logs(build, cursor)
    return reply({"image-name": build.image_name, "status": build.status.value, "lines": page.lines,
                  "cursor": page.cursor})


@builds.route("/builds/images", methods=["POST"], content_types=BODY_TYPES)
@endpoint(builds, "images.register")
def register_image() -> Response:
    build = get_services().builds.register_image(parse_body(builds, ImageRegister))
    return reply(build_reply(build), 201)
