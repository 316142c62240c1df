"""Ports: what the services need from a build system, a container platform and git hosting.

Shaped like BinderHub's BuildExecutor and JupyterHub's Spawner: a small lifecycle
(start / stop / describe) that returns an opaque, JSON-able ``handle`` the store saves. Only the
adapter that made a handle looks inside it (JupyterHub's spawner state is "a black box" to the hub);
everyone else knows one thing of it, its ``id`` (``handle_id``): the adapter's own name for the build
or task (a CodeBuild id, a task ARN, a pid), which services compare and the store indexes.
Adapters live beside this file: ``aws`` and ``local``; the Router's (the proxy in front of the servers)
in ``routers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping, Protocol, Sequence

from chalicelib.statuses import BuildStatus

Handle = dict[str, str]
HANDLE_ID = "id"  # every handle's neutral key; the rest of a handle is its adapter's own
TaskStatus = Literal["starting", "running", "stopped"]


@dataclass(frozen=True)
class BuildRequest:
    image_name: str
    repository: str
    ref: str
    commit: str


@dataclass(frozen=True)
class BuildState:
    """Where a build stands. ``image`` is the pullable image reference once known."""

    status: BuildStatus
    image: str = ""
    reason: str = ""
    handle: Handle = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", BuildStatus(self.status))  # "pending" is BuildStatus.pending


@dataclass(frozen=True)
class BuildEvent:
    image_name: str
    state: BuildState


MAX_CURSOR = 512  # characters of a log cursor: CloudWatch's forward tokens are about 60, local ones a number


@dataclass(frozen=True)
class LogPage:
    """Lines of a build's log after a cursor, and the cursor to ask from next time (the same one when
    nothing more has been logged yet)."""

    lines: list[str]
    cursor: str


class Builder(Protocol):
    # True: it builds from local paths and http:// URLs as well (local mode, on the user's own machine);
    # False: public https:// repositories only.
    local_repositories: bool
    # What builds the images, for GET /versions (BinderHub's ``builder_info``).
    info: Mapping[str, str]

    def start(self, request: BuildRequest) -> BuildState:
        """Start building, or report ``completed`` when the image already exists."""

    def poll(self, handles: Sequence[Handle]) -> list[BuildState]:
        """Current state of each build, in the same order (the schedule's reconcile)."""

    def from_event(self, detail: Mapping[str, Any]) -> BuildEvent | None:
        """Translate a platform event about a build, or None if it is not ours."""

    def logs(self, handle: Handle, cursor: str = "") -> LogPage:
        """The build's log lines after ``cursor`` ("": from the start), a page at most; no lines for a
        build nobody knows. errors.BadRequest for a cursor this builder did not give."""


class RefResolver(Protocol):
    def resolve(self, repository: str, ref: str) -> str:
        """The 40-hex commit that ``ref`` names in ``repository``.

        Raises errors.NotFound for an unknown ref, errors.BadRequest for a repository that
        cannot be read."""


@dataclass(frozen=True)
class Sidecar:
    """A service container from the operator's catalog, next to the notebook."""

    name: str
    image: str
    cpu: int
    memory: int
    port: int = 0
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a staging asks the platform to prepare. cpu in units (1024 = 1 vCPU), memory in MiB."""

    name: str
    image: str
    cpu: int
    memory: int
    sidecars: tuple[Sidecar, ...] = ()
    source: str = ""  # what the image was built from (a repository, or image:<name>): a cost-allocation label


class Stager(Protocol):
    def register(self, spec: EnvironmentSpec) -> Handle:
        """Make the environment launchable (an ECS task definition); return its handle."""


@dataclass(frozen=True)
class Launched:
    """One server the platform accepted (``handle`` set) or refused (``failure`` set).

    ``token`` is the secret the notebook server will require; the service stores it."""

    server_id: str
    token: str = field(default="", repr=False)
    handle: Handle = field(default_factory=dict)
    failure: str = ""


@dataclass(frozen=True)
class TaskState:
    """A server's process/task as the platform sees it. ``url`` is its base URL once running."""

    handle: Handle
    status: TaskStatus
    url: str = ""
    reason: str = ""
    launch: str = ""  # the ``start`` call that started it, when the platform says (events do)


class Spawner(Protocol):
    max_batch: int
    # True when every event about a task names its launch: the first one records the task on its
    # server (``ServerLifecycle.apply_event``), so starting servers costs no write after ``start``.
    # False: ``start``'s results are saved at once (local mode, which has no events).
    records_from_events: bool

    def start(self, environment: Handle, server_ids: Sequence[str], launch: str, key: str) -> list[Launched]:
        """Start one server per id (at most ``max_batch``), one result per id, same order.

        ``launch`` names this call: ``tasks_of`` finds what it started, and so do events.
        ``key`` is a random secret of this call that the caller stores with the servers: with one
        server it is that server's token; with more, each one's token is ``token_for(key, handle)``."""

    def token_for(self, key: str, handle: Handle) -> str:
        """The token of the server ``handle`` that a batch ``start`` with ``key`` started."""

    def tasks_of(self, launch: str) -> list[Handle]:
        """The servers a ``start`` call named ``launch`` started that still run (or are starting)."""

    def stop(self, handle: Handle, reason: str) -> None:
        """Ask the platform to stop a server; stopping a stopped server is not an error."""

    def describe(self, handles: Sequence[Handle]) -> list[TaskState]:
        """Current state of each server, in the same order."""

    def from_event(self, detail: Mapping[str, Any]) -> TaskState | None:
        """Translate a platform event about a task, or None if it is not ours."""


def handle_id(handle: Mapping[str, str]) -> str:
    """The build or task ``handle`` names ("" for none yet): all that is not the adapter's to read."""
    return handle.get(HANDLE_ID, "")


# The proxy's routing table (JupyterHub's ``Proxy``). A route's prefix is a server's path,
# ``/user/<name>/``, named by the spawner (a task's id; a local process's random name), never by the
# server id, which is the capability to read the server's token. It starts and ends with "/" ("/"
# itself is the proxy's default route, not the Router's to manage), its segments are URL-safe
# (letters, digits, ``-._~``) so that no adapter has to escape them. Adapters accept a prefix with or
# without its trailing slash and always list it with one (configurable-http-proxy keeps ``/user/x``;
# JupyterHub's routespecs are ``/user/x/``).
ROUTE_PREFIX = "/user/{name}/"


@dataclass(frozen=True)
class Route:
    """Where the proxy sends a prefix. ``target`` is the server's origin (``http://10.0.1.7:8888``):
    the proxy keeps the whole path, prefix included, as the server's ``base_url`` expects.
    ``data`` is the caller's own, given back as it was given. ``last_activity``: when the proxy last saw
    a successful request or websocket traffic on the route (it counts adding the route as activity);
    None where nothing measures it (no proxy)."""

    target: str
    data: Mapping[str, str] = field(default_factory=dict)
    last_activity: datetime | None = None


class Router(Protocol):
    # True when a proxy sits in front of the servers: its routes must follow the live servers, and it
    # measures their activity. False: locations are the servers' own URLs (nothing to keep in line).
    proxied: bool

    def add_route(self, path_prefix: str, target: str, data: Mapping[str, str]) -> None:
        """Send requests under ``path_prefix`` to ``target``; adding a prefix again replaces its route.
        ``target`` is an origin (``http://host:port``, no path): the server serves under the prefix itself
        (its ``base_url``), as JupyterHub's single-user servers do. ValueError for a prefix or target not of
        these shapes; errors.Unavailable when the proxy cannot be reached (the schedule adds it next tick)."""

    def delete_route(self, path_prefix: str) -> None:
        """Stop routing ``path_prefix``; deleting a route that does not exist is not an error."""

    def get_all_routes(self) -> dict[str, Route]:
        """Every route added through a Router, by prefix (with its trailing slash); not the default route."""

    def url_for(self, path_prefix: str, target: str) -> str:
        """The URL a reader opens for the route (a location, before its ``?token=``): the proxy's public URL
        and the prefix, or with no proxy the server's own, ``target`` and the prefix."""
