"""A Binder launch by repository: what BinderHub's ``/build/{provider}/{spec}`` event stream tells.

Resolve the ref, build the image if it is not built, stage it with the operator's default limits
under its deterministic environment name, then launch as ``POST /deployments`` does (a pool for
that environment makes it instant; quotas and rate limits apply), and say so as it goes, in
BinderHub's phases: ``waiting``, ``fetching``, ``building``, ``built``, ``launching``, then ``ready``
(with ``url`` and ``token``) or ``failed`` (with ``status_code``; 429 when a limit refused it).

Each event has an id. From the moment a server is handed to the launch, the id names it
(``server/<environment>/<id>``): a client that reconnects with ``Last-Event-ID`` (as EventSource
does) follows that same server, and after ``ready`` is told ``ready`` again; it never gets a second
server. Before that, a reconnect starts over, which repeats nothing: the build and the staging are
found, not made again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from pydantic import ValidationError

from chalicelib.errors import (
    INTERNAL_MESSAGE,
    BinderError,
    Conflict,
    Invalid,
    Unavailable,
    describe_validation_error,
)
from chalicelib.models import Build, BuildCreate, BuildStatus, LimitsRequest, Server, StagingCreate
from chalicelib.providers import Spec
from chalicelib.services.builds import BuildService
from chalicelib.services.deployments import DeploymentService
from chalicelib.services.stagings import StagingService

log = logging.getLogger(__name__)
SERVER_EVENT = "server/"
POLL_SECONDS = 0.25  # between looks at a build or a starting server: local events land within this
QUIET_BUILD_SECONDS = 10  # a build that logs nothing for this long is said to be still building


@dataclass
class Event:
    """One event of the stream: BinderHub's fields, and its id."""

    phase: str
    message: str
    id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"phase": self.phase, "message": self.message, **self.fields}


def failed(error: BinderError) -> Event:
    return Event("failed", error.message + "\n", fields={"status_code": error.status})


class LaunchService:
    def __init__(self, builds: BuildService, stagings: StagingService, deployments: DeploymentService, *,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 3600.0) -> None:
        self.builds = builds
        self.stagings = stagings
        self.deployments = deployments
        self.sleep = sleep
        self.timeout = timeout
        # Asking a local builder is reading a file; asking CodeBuild is an API call (its events come anyway).
        self.ask_builder_every = POLL_SECONDS if builds.builder.local_repositories else 5.0

    def follow(self, spec: Spec, *, client: str | None, last_event_id: str = "") -> Iterator[Event | None]:
        """The launch's events; None now and then while nothing happens (a chance to send a keepalive)."""
        try:
            if last_event_id.startswith(SERVER_EVENT):
                yield from self._until_ready(spec, *self._resumed(last_event_id))
                return
            yield from self._launch(spec, client)
        except BinderError as error:
            yield failed(error)
        except ValidationError as error:  # a ref or URL longer than a build request takes
            yield failed(Invalid(describe_validation_error(error)))
        except Exception:  # noqa: BLE001 (the stream must end in an event, or Thebe sees only a lost connection)
            log.exception("the launch of %s/%s failed", spec.provider, spec.spec())
            yield failed(BinderError(INTERNAL_MESSAGE))

    def _launch(self, spec: Spec, client: str | None) -> Iterator[Event | None]:
        yield Event("waiting", f"Resolving {spec.ref} of {spec.repository}\n")
        build = self.builds.request(BuildCreate(repository=spec.repository, ref=spec.ref), client=client)
        yield Event("fetching", f"{spec.ref} is {build.commit}\n", fields={"imageName": build.image_name})
        build = yield from self._built(build)
        yield Event("built", "Found built image, launching...\n", fields={"imageName": build.image_name})
        staging, _ = self.stagings.create(StagingCreate.model_validate(
            {"image-name": build.image_name, "limits": LimitsRequest()}))
        self.stagings.ready(staging)
        yield Event("launching", "Launching server...\n")
        server, _ = self.deployments.launch(staging.environment_name, client=client)
        yield from self._until_ready(spec, server, build)

    def _built(self, build: Build) -> Generator[Event | None, None, Build]:
        """Wait for ``build`` to end, telling its log as it comes (a ``building`` event a line, as BinderHub
        does) and, while it logs nothing, how long it has taken; the completed build, or Conflict."""
        started = ask_at = time.monotonic()
        last_told: float | None = None
        cursor, followed = "", build.status is BuildStatus.pending
        while build.status is BuildStatus.pending:
            now = time.monotonic()
            if now >= ask_at:
                page = self.builds.logs(build, cursor)
                cursor = page.cursor
                for line in page.lines:
                    yield Event("building", line + "\n")
                last_told = now if page.lines else last_told
            if last_told is None or now - last_told >= QUIET_BUILD_SECONDS:
                yield Event("building", f"Building {build.image_name} ({int(now - started)} s)\n")
                last_told = now
            else:
                yield None
            self._check_timeout(started, "the build")
            self.sleep(POLL_SECONDS)
            build = self.builds.get(build.image_name)
            if time.monotonic() >= ask_at:
                build, ask_at = self.builds.refresh(build), time.monotonic() + self.ask_builder_every
        if followed:  # what it said last, before it ended (a build found built is not retold)
            for line in self.builds.logs(build, cursor).lines:
                yield Event("building", line + "\n")
        if build.status is BuildStatus.failed:
            raise Conflict(f"The build of {build.repository} at {build.commit[:12]} failed: {build.reason}")
        return build

    def _resumed(self, last_event_id: str) -> tuple[Server, Build]:
        environment, _, server_id = last_event_id.removeprefix(SERVER_EVENT).partition("/")
        server = self.deployments.get(environment, server_id)
        staging = self.stagings.get(environment)
        return server, self.builds.get(staging.image_name)

    def _until_ready(self, spec: Spec, server: Server, build: Build) -> Iterator[Event | None]:
        event_id = f"{SERVER_EVENT}{server.environment_name}/{server.id}"
        started = time.monotonic()
        yield Event("launching", f"Server {server.id} is {server.state.value}\n", id=event_id)
        while not server.location:
            self._check_timeout(started, "the server")
            self.sleep(POLL_SECONDS)
            yield None
            server = self.deployments.get(server.environment_name, server.id)  # Gone once it has ended
        yield Event("ready", f"server running at {server.url}\n", id=event_id, fields={
            "url": server.url, "token": server.token, "image": build.image or build.image_name,
            "repo_url": spec.repository, "binder_ref_url": spec.binder_ref_url(build.commit),
            "binder_request": f"v2/{spec.provider}/{spec.spec()}",
            "binder_persistent_request": f"v2/{spec.provider}/{replace(spec, ref=build.commit).spec()}"})

    def _check_timeout(self, started: float, what: str) -> None:
        if time.monotonic() - started > self.timeout:
            raise Unavailable(f"Gave up waiting for {what} after {self.timeout:.0f} s.")
