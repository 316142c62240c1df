"""Builds: resolve a ref, name the image deterministically, build once, track to completion."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Callable

from chalicelib.backends.base import Builder, BuildEvent, BuildRequest, BuildState, RefResolver
from chalicelib.config import Settings
from chalicelib.errors import BinderError, Conflict, NotFound
from chalicelib.models import Build, BuildCreate, BuildStatus, ImageRegister
from chalicelib.repository_urls import validate_repository_url
from chalicelib.store import ConditionFailed, Store

log = logging.getLogger(__name__)


def image_name_for(repository: str, commit: str) -> str:
    """Readable and deterministic: the same repository at the same commit is the same image."""
    slug = re.sub(r"[^a-z0-9]+", "-", repository.split("://", 1)[-1].lower()).strip("-")[:60].strip("-")
    digest = hashlib.sha256(repository.encode()).hexdigest()[:6]  # two URLs with one slug stay apart
    return f"{slug}-{digest}-{commit[:12]}"


class BuildService:
    def __init__(self, settings: Settings, store: Store, builder: Builder, resolver: RefResolver,
                 clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.builder = builder
        self.resolver = resolver
        self.clock = clock

    def request(self, body: BuildCreate) -> Build:
        """The build of this repository at this ref: existing (cached) or newly started."""
        local = self.settings.backend == "local"
        repository = validate_repository_url(body.repository, allow_http=local, allow_local=local,
                                             allowed_hosts=self.settings.allowed_hosts)
        commit = self.resolver.resolve(repository, body.ref)
        image_name = image_name_for(repository, commit)
        existing = self.store.builds.get(image_name)
        if existing and existing.status is not BuildStatus.failed:
            return existing
        now = self.clock()
        if existing:
            build = self.store.builds.transition(existing, BuildStatus.pending, reason="", handle={},
                                                 updated_at=now, poll_at=now + self.settings.build_poll_after,
                                                 max_running=self.settings.max_builds_per_repository)
        else:
            build = Build(image_name=image_name, status=BuildStatus.pending, repository=repository, ref=body.ref,
                          commit=commit, dependencies=body.dependencies, created_at=now, updated_at=now)
            if not self.store.builds.create(build, poll_at=now + self.settings.build_poll_after,
                                            max_running=self.settings.max_builds_per_repository):
                return self.get(image_name)  # a concurrent request created it first
        return self._start(build)

    def _start(self, build: Build) -> Build:
        request = BuildRequest(build.image_name, build.repository, build.ref, build.commit)
        try:
            state = self.builder.start(request)
        except BinderError as error:
            self._record(build, BuildState("failed", reason=f"could not start the build: {error.message}"))
            raise
        return self._record(build, state)

    def _record(self, build: Build, state: BuildState) -> Build:
        now = self.clock()
        poll_at = now + self.settings.build_poll_after if state.status == "pending" else None
        return self.store.builds.transition(build, BuildStatus(state.status), image=state.image, reason=state.reason,
                                            handle=state.handle, updated_at=now, poll_at=poll_at)

    def get(self, image_name: str) -> Build:
        build = self.store.builds.get(image_name)
        if build is None:
            raise NotFound(f"No image named '{image_name}'. Build one with POST /builds/repos.")
        return build

    def find(self, repository: str) -> Build:
        local = self.settings.backend == "local"
        normalized = validate_repository_url(repository, allow_http=local, allow_local=local,
                                             allowed_hosts=self.settings.allowed_hosts)
        build = self.store.builds.latest_for(normalized)
        if build is None:
            raise NotFound(f"No build of {normalized} yet. Start one with POST /builds/repos.")
        return build

    def register_image(self, body: ImageRegister) -> Build:
        now = self.clock()
        build = Build(image_name=body.image_name, status=BuildStatus.completed, image=body.image,
                      created_at=now, updated_at=now)
        try:
            self.store.builds.register_image(build)
        except ConditionFailed:
            raise Conflict(f"'{body.image_name}' is the name of a repository build; choose another name.") from None
        return build

    def apply_event(self, event: BuildEvent) -> Build | None:
        """A build-state event: repeated and late events change nothing."""
        build = self.store.builds.get(event.image_name)
        if build is None or build.status is not BuildStatus.pending or event.state.status == "pending":
            return None
        if build.handle.get("build_id") != event.state.handle.get("build_id"):
            return None  # an event about an earlier attempt at this image
        try:
            return self._record(build, BuildState(event.state.status, image=build.image, reason=event.state.reason,
                                                  handle=build.handle))
        except ConditionFailed:
            return None

    def reconcile(self) -> int:
        """Poll builds whose completion event is overdue; restart ones that never started."""
        due = list(self.store.builds.due(self.clock()))
        started = [b for b in due if b.handle]
        states = self.builder.poll([b.handle for b in started]) if started else []
        # Still-pending builds are recorded too: that pushes their next poll back.
        for build, state in zip(started, states, strict=True):
            polled = BuildState(state.status, state.image or build.image, state.reason, build.handle)
            self._safely(self._record, build, polled)
        for build in due:
            if not build.handle:
                self._safely(self._start, build)
        return len(due)

    @staticmethod
    def _safely(action: Callable[..., Build], *args: object) -> None:
        try:
            action(*args)
        except (BinderError, ConditionFailed) as error:
            log.warning("build reconcile step failed: %s", error)
