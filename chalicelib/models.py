"""Request bodies, stored records and their status tables.

Request models use the seeds' field names (``image-name``) as aliases and forbid unknown
fields, so a typo is an error rather than a silently ignored option. Records are what the
store saves; replies are shaped from them in the routes.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

from chalicelib.catalog import ServiceRequest
from chalicelib.limits import CPU_FORMS, CPU_TEXT_PATTERN, MEMORY_FORMS, MEMORY_TEXT_PATTERN
from chalicelib.repository_urls import MAX_URL_LENGTH
from chalicelib.statuses import BuildStatus as BuildStatus  # re-exported: the domain types in one place
from chalicelib.statuses import StagingStatus as StagingStatus

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
SERVER_ID_PATTERN = r"^[0-9a-f]{32}$"  # services.servers.new_server_id: 128 random bits in hex
_NAME_RE = re.compile(NAME_PATTERN)

# Strict: a JSON true is not 1 vCPU, nor "1" a number (limits.py reads the string forms itself).
RawLimit = StrictInt | StrictFloat | StrictStr


def is_valid_name(name: str) -> bool:
    """Image and environment names: lowercase, digits, '.', '_' and '-', at most 100 characters."""
    return bool(_NAME_RE.match(name))


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, str_strip_whitespace=True)


def _documented(**schema: Any) -> Callable[[dict[str, Any]], None]:
    """A field's JSON Schema with what the API checks beyond pydantic (repository_urls, limits)."""

    def extend(field_schema: dict[str, Any]) -> None:
        field_schema.update(schema)

    return extend


def _limit(pattern: str, forms: str) -> Any:
    """A cpu or memory limit: a positive number, or a string in one of ``forms`` (limits.py parses both)."""
    return Field(None, json_schema_extra=_documented(
        anyOf=[{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": pattern}, {"type": "null"}],
        description=f"Accepted forms: {forms}. It must make a Fargate (cpu, memory) pair within this deployment's "
                    "caps."))


class BuildCreate(Request):
    repository: str = Field(min_length=1, max_length=MAX_URL_LENGTH, json_schema_extra=_documented(
        format="uri", description="The repository's https URL (local mode also takes a local path or file:// URL), "
                                  "on a host the operator allows."))
    ref: str = Field("HEAD", min_length=1, max_length=255, description="A branch, tag, full refs/... name or HEAD.")
    dependencies: list[str] = Field(default_factory=list, max_length=50)


class ImageRegister(Request):
    image_name: str = Field(alias="image-name", pattern=NAME_PATTERN)
    image: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")


class LimitsRequest(Request):
    cpu: RawLimit | None = _limit(CPU_TEXT_PATTERN, CPU_FORMS)
    memory: RawLimit | None = _limit(MEMORY_TEXT_PATTERN, MEMORY_FORMS)


class StagingCreate(Request):
    image_name: str = Field(alias="image-name", pattern=NAME_PATTERN)
    limits: LimitsRequest = Field(default_factory=LimitsRequest)
    services: list[ServiceRequest] = Field(default_factory=list, max_length=5)
    environment_name: str | None = Field(None, alias="environment-name", pattern=NAME_PATTERN)


class PoolSize(Request):
    # ``minPool`` is the v1 seed's name for the same thing.
    size: StrictInt = Field(ge=0, validation_alias=AliasChoices("size", "minPool"))


class BindingCreate(Request):
    """The v1 seed's binding: what a binder is made of. ``requirements`` and ``notebooks`` are kept as
    declared and not used: repo2docker reads the repository's own files and servers open at its root."""

    name: str = Field(pattern=NAME_PATTERN, description="The binder's name: its environment-name, its pool's name.")
    repo: str = Field(min_length=1, max_length=MAX_URL_LENGTH, json_schema_extra=_documented(
        format="uri", description="The repository's https URL (built at its HEAD when the binding is created)."))
    requirements: str | None = Field(None, max_length=1024, description="Kept as declared; not used.")
    notebooks: str | None = Field(None, max_length=1024, description="Kept as declared; not used.")
    services: list[ServiceRequest] = Field(default_factory=list, max_length=5)


class Binding(BaseModel):
    """A stored binding: its declaration as POSTed, and the image it was built as."""

    path: str  # "<org>/<repo>" as first POSTed; found whatever its case
    name: str
    declaration: dict[str, Any]
    image_name: str
    created_at: int = 0


class IllegalTransition(Exception):
    """A state change the state machine forbids: a bug in the caller, never a lost race (that is
    ``ConditionFailed``, which callers may retry or re-read after)."""


def check_transition(kind: str, current: StrEnum, to: StrEnum, allowed: Mapping[Any, frozenset[Any]]) -> None:
    if to is not current and to not in allowed[current]:
        raise IllegalTransition(f"{kind} {current.value} -> {to.value}")


BUILD_TRANSITIONS: dict[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.pending: frozenset({BuildStatus.completed, BuildStatus.failed}),
    BuildStatus.failed: frozenset({BuildStatus.pending}),  # a relaunch retries a failed build
    BuildStatus.completed: frozenset(),
}


class ServerState(StrEnum):
    starting = "starting"
    available = "available"  # pooled, ready, waiting to be claimed
    running = "running"  # handed out and ready
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"


SERVER_TRANSITIONS: dict[ServerState, frozenset[ServerState]] = {
    ServerState.starting: frozenset({ServerState.available, ServerState.running, ServerState.stopping,
                                     ServerState.stopped, ServerState.failed}),
    ServerState.available: frozenset({ServerState.running, ServerState.stopping, ServerState.stopped}),
    ServerState.running: frozenset({ServerState.stopping, ServerState.stopped}),
    ServerState.stopping: frozenset({ServerState.stopped}),
    ServerState.stopped: frozenset(),
    ServerState.failed: frozenset(),
}
LIVE_STATES = frozenset({ServerState.starting, ServerState.available, ServerState.running, ServerState.stopping})


class Build(BaseModel):
    image_name: str
    status: BuildStatus
    repository: str = ""
    ref: str = ""
    commit: str = ""
    dependencies: list[str] = Field(default_factory=list)
    image: str = ""
    reason: str = ""
    handle: dict[str, str] = Field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0

    @property
    def registered(self) -> bool:
        """An operator-approved prebuilt image rather than a build of a repository."""
        return not self.repository


class Staging(BaseModel):
    environment_name: str
    image_name: str
    image: str
    source: str = ""  # what quotas count servers against: the build's repository, or image:<name>
    cpu: int
    memory: int
    services: list[dict[str, Any]] = Field(default_factory=list)
    status: StagingStatus = StagingStatus.pending
    reason: str = ""
    handle: dict[str, str] = Field(default_factory=dict)
    created_at: int = 0
    attempted_at: int = 0  # when its latest register began (0: at created_at, before retries existed)


class Pool(BaseModel):
    environment_name: str
    size: int = 0
    available: int = 0
    starting: int = 0
    running: int = 0
    live: int = 0  # every server not yet stopped, for the per-environment quota


class Server(BaseModel):
    environment_name: str
    id: str
    state: ServerState
    claimed: bool
    source: str = ""  # the staging's: its repository, or image:<name>
    # The anonymous caller it was handed out to (its address, an IPv6 one by its /64), whose count
    # of live servers it is in; empty for pooled servers until claimed, and for token holders.
    client: str = Field(default="", repr=False)
    launch: str = ""  # the platform call that started it: an event about its task finds it by this
    token: str = Field(default="", repr=False)
    launch_key: str = Field(default="", repr=False)  # a batch's secret, until the token derived from it is saved
    url: str = ""
    # Behind a proxy: the server's own URL (the proxy's target and, as its path, the route the reader's
    # ``url`` goes through); empty with no proxy, where ``url`` is the server's own.
    target: str = ""
    handle: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    created_at: int = 0
    claimed_at: int = 0
    stop_at: int = 0
    ended_at: int = 0

    @property
    def route(self) -> str:
        """Its path behind the proxy (``/user/<name>/``), "" when it has none."""
        return urlsplit(self.target).path if self.target else ""

    @property
    def location(self) -> str | None:
        """The full URL a user opens, token included; None until the server answers."""
        if not self.url or self.state not in (ServerState.available, ServerState.running):
            return None
        return f"{self.url}?token={self.token}"

    @property
    def counter(self) -> str | None:
        """Which pool counter this server is counted in, if any."""
        if self.state is ServerState.available:
            return "available"
        if self.claimed and self.state in (ServerState.starting, ServerState.running):
            return "running"
        if not self.claimed and self.state is ServerState.starting:
            return "starting"
        return None


class Token(BaseModel):
    digest: str
    name: str
    scopes: list[str]
    created_at: int = 0
    expires_at: int = 0

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
        return scopes


SCOPES = ("admin", "builds", "stagings", "deployments", "pools")
