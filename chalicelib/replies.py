"""Reply models: the JSON shapes the routes answer with, for the OpenAPI document.

The routes build these shapes as dicts (``build_reply``, ``staging_reply``, ``server_reply``,
``listed_server``, ``pool_reply`` and inline ones); these models describe them exactly, so the
document can promise what the API does. Keys a reply leaves out when there is nothing to say
(``reason``, ``location``) are optional here and never null, as on the wire.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

from chalicelib.models import BuildStatus, ServerState

# An optional key's type: ``str | Absent`` is ``str | None`` in Python and just ``string`` in the schema.
Absent = SkipJsonSchema[None]


def _absent_not_null(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # the key is left out, never sent as null


def optional(description: str) -> Any:
    """A key the reply leaves out when empty: not required, and never null."""
    return Field(None, description=description, json_schema_extra=_absent_not_null)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ErrorReply(Reply):
    """Every error: a machine-readable code and a sentence saying what to do."""

    error: str = Field(description="The error's code: BadRequest, Unauthorized, Forbidden, NotFound, Conflict, "
                                   "Gone, Invalid, QuotaExceeded, Unavailable, BackendError, ...")
    message: str = Field(description="What went wrong and what to do about it.")
    status: Literal["full"] | Absent = optional("tmpnb's word on POST /api/spawn's 429, which its clients look for.")


class BuildSummary(Reply):
    image_name: str = Field(alias="image-name", description="The image's name: stage it with POST /stagings.")
    status: BuildStatus


class RepositoryBuild(Reply):
    """A build of a repository at a commit."""

    image_name: str = Field(alias="image-name")
    status: BuildStatus
    repository: str = Field(description="The repository URL, normalized.")
    ref: str = Field(description="The ref as requested.")
    commit: str = Field(description="The commit the ref resolved to.")
    dependencies: list[str]
    reason: str | Absent = optional("Why the build failed.")


class BuildLogPage(Reply):
    """A page of a build's log."""

    image_name: str = Field(alias="image-name")
    status: BuildStatus = Field(description="The build's status when this page was read.")
    lines: list[str] = Field(description="The log's lines after the cursor asked with, oldest first.")
    cursor: str = Field(description="Ask with this next time for the lines after these.")


class RegisteredImage(Reply):
    """An operator-approved prebuilt image (POST /builds/images)."""

    image_name: str = Field(alias="image-name")
    status: BuildStatus
    image: str = Field(description="The container image reference.")
    reason: str | Absent = optional("Why the image is not usable.")


class StatusReply(Reply):
    status: BuildStatus
    reason: str | Absent = optional("Why it failed.")


class StagingCreated(Reply):
    environment_name: str = Field(alias="environment-name", description="Launch it with POST /deployments/{name}.")


class LimitsReply(Reply):
    cpu: str = Field(description='vCPU, e.g. "0.5"')
    memory: str = Field(description='e.g. "1G" or "512M"')


class StagedService(Reply):
    name: str
    version: str
    params: dict[str, str]


class StagingReply(Reply):
    environment_name: str = Field(alias="environment-name")
    image_name: str = Field(alias="image-name")
    limits: LimitsReply
    services: list[StagedService]
    status: BuildStatus
    reason: str | Absent = optional("Why staging failed.")


class ServerReply(Reply):
    """A server as its owner sees it: ``location`` carries the server's token."""

    id: str = Field(description="The server's id; as secret as its location.")
    status: ServerState
    location: str | Absent = optional("The URL to open, token included; present once the server answers.")
    reason: str | Absent = optional("Why the server stopped or failed.")


class ListedServer(Reply):
    """A server in a list: never its token. Only an admin token sees ids and URLs (an id is the
    capability to read a server's location, token included); other callers see statuses."""

    id: str | Absent = optional("The server's id; listed for admin tokens only.")
    status: ServerState
    uri: str | Absent = optional("This server's path in the API; listed for admin tokens only.")
    location: str | Absent = optional("The server's URL, without its token; listed for admin tokens only, once "
                                      "the server answers.")


class ServerList(RootModel[list[ListedServer]]):
    """The environment's live servers, oldest first."""


class PoolReply(Reply):
    running: int = Field(ge=0, description="Servers handed out to users.")
    available: int = Field(ge=0, description="Idle servers ready to hand out.")
    starting: int = Field(ge=0, description="Idle servers still starting.")
    size: int = Field(ge=0, description="How many idle, ready servers to keep.")
    min_pool: int = Field(alias="minPool", ge=0, description="The v1 seed's name for `size`: always equal to it.")


class PoolMap(RootModel[dict[str, PoolReply]]):
    """Pools that keep or still have servers, keyed by environment-name."""


class BindingReply(Reply):
    """A v1 binding: its declaration as POSTed, and how far it has come."""

    name: str = Field(description="The binder's name: POST /binders/{name} launches it; /pools/{name} is its pool.")
    repo: str
    requirements: str | Absent = optional("As declared; not used (repo2docker reads the repository's own files).")
    notebooks: str | Absent = optional("As declared; not used (servers open at the repository's root).")
    services: list[StagedService] | Absent = optional("As declared.")
    image_name: str = Field(alias="image-name", description="Its build: GET /builds/repos/{image-name}.")
    status: BuildStatus = Field(description="pending (building or staging), completed (launchable) or failed.")
    reason: str | Absent = optional("What it waits for, or why it failed.")
    ignored: list[Literal["requirements", "notebooks"]] | Absent = optional(
        "The declared fields this deployment keeps but does not use.")


class Check(Reply):
    service: str
    ok: bool


class Health(Reply):
    """BinderHub's shape (``ok``, ``checks``), which Binder monitoring reads, and ours beside it."""

    ok: bool
    checks: list[Check]
    status: Literal["ok"]
    backend: Literal["aws", "local"]


class Spawned(Reply):
    """tmpnb's answer: the server's URL, token included."""

    url: str


class Stats(Reply):
    """tmpnb's ``/api/stats``, for the default environment's pool."""

    available: int
    capacity: int
    version: str
    container_image: str


class RepoProviders(RootModel[list[dict[str, Any]]]):
    """BinderHub's ``/api/repoproviders``: each provider's id, name and how a launch form asks for it."""


class Versions(Reply):
    """BinderHub's fields (``binderhub``: the version of what answers as a BinderHub; ``builder_info``:
    what builds images) and ours."""

    binderhub: str
    builder_info: dict[str, str] = Field(description="`repo2docker-version` on AWS; what builds locally.")
    binderless: str
    api: Literal["v2"]
    backend: Literal["aws", "local"]


class OpenApiDocument(BaseModel):
    """This document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
