"""Builds: resolve a ref, name the image deterministically, build once, track to completion."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Callable

from chalicelib.backends.base import Builder, BuildEvent, BuildRequest, BuildState, LogPage, RefResolver, handle_id
from chalicelib.config import Settings
from chalicelib.errors import BinderError, Conflict, NotFound
from chalicelib.models import Build, BuildCreate, BuildStatus, ImageRegister
from chalicelib.repository_urls import canonical_repository, validate_repository_url
from chalicelib.store import ConditionFailed, Store
from chalicelib.store.counters import Quotas, RateLimit

log = logging.getLogger(__name__)


def image_name_for(repository: str, commit: str) -> str:
    """Deterministic, readable and not forgeable: the same canonical repository at the same commit
    is the same image, and no other repository or commit can be given (or squat) its name.

    ``<slug>-<commit[:12]>-<digest>``, at most 100 characters (models.NAME_PATTERN; also an ECR tag
    and a directory name): the slug and short commit are for people, the digest (128 bits of
    sha256 over the repository and the full commit) is what tells images apart."""
    slug = re.sub(r"[^a-z0-9]+", "-", repository.split("://", 1)[-1].lower()).strip("-")[:54].strip("-")
    digest = hashlib.sha256(f"{repository}\0{commit}".encode()).hexdigest()[:32]
    short = re.sub(r"[^a-z0-9]", "", commit.lower())[:12]
    return "-".join(part for part in (slug or "repository", short, digest) if part)


def _check_same_image(build: Build, repository: str, commit: str) -> Build:
    """``build`` if it is this repository at this commit; Conflict if something else holds its name
    (an operator-registered image, or a record from before names were derived as they are now)."""
    if build.repository != repository or build.commit != commit:
        raise Conflict(f"The image name '{build.image_name}' is taken by another image, not {repository} "
                       f"at {commit}; ask the operator to remove that image.")
    return build


class BuildService:
    def __init__(self, settings: Settings, store: Store, builder: Builder, resolver: RefResolver,
                 clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.builder = builder
        self.resolver = resolver
        self.clock = clock

    def request(self, body: BuildCreate, *, client: str | None = None) -> Build:
        """The build of this repository at this ref: existing (cached) or newly started.

        ``client`` is an anonymous caller (``routes.api.anonymous_client``): a build it starts
        counts against its rate limit, in the same write as the build; a cached one costs nothing."""
        repository = self._canonical(body.repository)
        commit = self.resolver.resolve(repository, body.ref)
        image_name = image_name_for(repository, commit)
        existing = self.store.builds.get(image_name)
        if existing:
            _check_same_image(existing, repository, commit)
            if existing.status is not BuildStatus.failed:
                return existing
        now = self.clock()
        poll_at, quotas, rates = now + self.settings.build_poll_after, self._quotas, self._rate(client, now)
        if existing:
            build = self.store.builds.transition(existing, BuildStatus.pending, reason="", handle={},
                                                 updated_at=now, poll_at=poll_at, quotas=quotas, rates=rates)
        else:
            build = Build(image_name=image_name, status=BuildStatus.pending, repository=repository, ref=body.ref,
                          commit=commit, dependencies=body.dependencies, created_at=now, updated_at=now)
            if not self.store.builds.create(build, poll_at=poll_at, quotas=quotas, rates=rates):
                # A concurrent request created it first (or something else holds the name).
                return _check_same_image(self.get(image_name), repository, commit)
        return self._start(build)

    def _canonical(self, url: str) -> str:
        """The validated URL's canonical repository: what builds are stored, found and counted by."""
        local = self.builder.local_repositories
        return canonical_repository(validate_repository_url(url, allow_http=local, allow_local=local,
                                                            allowed_hosts=self.settings.allowed_hosts))

    @property
    def _quotas(self) -> Quotas:
        return Quotas(builds=self.settings.max_builds, builds_per_repository=self.settings.max_builds_per_repository)

    def _rate(self, client: str | None, now: int) -> list[RateLimit]:
        limit = self.settings.build_rate_limit
        if not client or not limit:
            return []
        return [RateLimit(client, now, self.settings.build_rate_window, limit, counter="builds")]

    def _start(self, build: Build) -> Build:
        request = BuildRequest(build.image_name, build.repository, build.ref, build.commit)
        try:
            state = self.builder.start(request)
        except BinderError as error:
            self._record(build, BuildState(BuildStatus.failed, reason=f"could not start the build: {error.message}"))
            raise
        return self._record(build, state)

    def _record(self, build: Build, state: BuildState) -> Build:
        now = self.clock()
        poll_at = now + self.settings.build_poll_after if state.status is BuildStatus.pending else None
        return self.store.builds.transition(build, BuildStatus(state.status), image=state.image, reason=state.reason,
                                            handle=state.handle, updated_at=now, poll_at=poll_at)

    def get(self, image_name: str) -> Build:
        build = self.store.builds.get(image_name)
        if build is None:
            raise NotFound(f"No image named '{image_name}'. Build one with POST /builds/repos.")
        return build

    def refresh(self, build: Build) -> Build:
        """A pending build, asked about by someone waiting on it: ask the builder now rather than at the
        schedule's next poll (one poll call; if it fails or says pending, the stored build stands)."""
        if build.status is not BuildStatus.pending or not build.handle:
            return build
        try:
            state, = self.builder.poll([build.handle])
        except BinderError as error:
            log.info("could not poll build %s: %s", build.image_name, error.message)
            return build
        if state.status is BuildStatus.pending:
            return build
        try:
            return self._record(build, BuildState(state.status, state.image or build.image, state.reason, build.handle))
        except ConditionFailed:  # an event or the schedule recorded it meanwhile
            return self.get(build.image_name)

    def logs(self, build: Build, cursor: str = "") -> LogPage:
        """The build's log after ``cursor``: what repo2docker (AWS) or git and pip (local) said. An image
        that was registered, or found built, has no log here."""
        if not build.handle:
            return LogPage([], cursor)
        return self.builder.logs(build.handle, cursor)

    def find(self, repository: str) -> Build:
        canonical = self._canonical(repository)
        build = self.store.builds.latest_for(canonical)
        if build is None:
            raise NotFound(f"No build of {canonical} yet. Start one with POST /builds/repos.")
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
        if build is None or build.status is not BuildStatus.pending or event.state.status is BuildStatus.pending:
            return None
        if handle_id(build.handle) != handle_id(event.state.handle):
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
