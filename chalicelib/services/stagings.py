"""Stagings: an image plus resources and services, made launchable as an environment."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Callable

from chalicelib.backends.base import EnvironmentSpec, Stager
from chalicelib.catalog import resolve_services
from chalicelib.config import Settings
from chalicelib.errors import BinderError, Conflict, Invalid, NotFound
from chalicelib.limits import resolve_limits
from chalicelib.models import Build, BuildStatus, Staging, StagingCreate, StagingStatus
from chalicelib.store import Store

# A staging still pending this long had its register cut off (the function was killed, or DynamoDB
# failed after ECS answered): the next identical POST /stagings registers it again. Four times the
# API function's 30 s timeout (.chalice/config.json), so no live register is overtaken on a stock
# stage; if one is (a stage with a longer timeout), finish_staging keeps the newest attempt's outcome,
# so the race costs a spare task-definition revision, never a wrong status.
STALE_PENDING_STAGING = 120


def environment_name_for(image_name: str, cpu: int, memory: int, services: list[dict[str, object]]) -> str:
    """Deterministic, so staging the same thing twice names the same environment."""
    spec = json.dumps([image_name, cpu, memory, services], sort_keys=True)
    return f"{image_name[:80]}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


class StagingService:
    def __init__(self, settings: Settings, store: Store, stager: Stager, clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.stager = stager
        self.clock = clock

    def create(self, body: StagingCreate) -> tuple[Staging, bool]:
        """The staged environment, and whether this call created it."""
        image = self._launchable_image(body.image_name)
        limits = resolve_limits(body.limits.cpu, body.limits.memory, settings=self.settings)
        sidecars = resolve_services(body.services, self.settings.service_catalog)
        if sum(s.memory for s in sidecars) >= limits.memory or sum(s.cpu for s in sidecars) >= limits.cpu:
            raise Invalid(f"The services need {sum(s.cpu for s in sidecars)} cpu units and "
                          f"{sum(s.memory for s in sidecars)} MiB, which leaves nothing for the notebook "
                          f"within {limits.cpu} units and {limits.memory} MiB: raise the limits.")
        services = [s.model_dump() for s in body.services]
        name = body.environment_name or environment_name_for(image.image_name, limits.cpu, limits.memory, services)
        now = self.clock()
        staging = Staging(environment_name=name, image_name=image.image_name, image=image.image, cpu=limits.cpu,
                          memory=limits.memory, services=services, created_at=now, attempted_at=now,
                          source=image.repository or f"image:{image.image_name}")
        spec = EnvironmentSpec(name=name, image=image.image, cpu=limits.cpu, memory=limits.memory, sidecars=sidecars,
                               source=staging.source)
        if self.store.environments.create_staging(staging):
            return self._register(staging, spec), True
        existing = self.get(name)
        same = (existing.image_name, existing.cpu, existing.memory, existing.services) == (
            staging.image_name, staging.cpu, staging.memory, staging.services)
        if not same:
            raise Conflict(f"The environment '{name}' exists with another image, limits or services; "
                           "choose another environment-name.")
        if existing.status is StagingStatus.completed:
            return existing, False
        # Failed (a transient AWS error), or pending so long that its register was cut off: try again.
        # Only the call whose conditional write moves it back to pending registers.
        retry = self.store.environments.retry_staging(existing, now=now, stale_before=now - STALE_PENDING_STAGING)
        if retry is None:
            return existing, False
        return self._register(retry, replace(spec, image=retry.image)), False  # the image it was staged with

    def _register(self, staging: Staging, spec: EnvironmentSpec) -> Staging:
        """Register a pending staging with the platform and record how it went."""
        try:
            handle = self.stager.register(spec)
        except BinderError as error:
            self.store.environments.finish_staging(staging, status=StagingStatus.failed, reason=error.message)
            raise
        return self.store.environments.finish_staging(staging, status=StagingStatus.completed, handle=handle)

    def _launchable_image(self, image_name: str) -> Build:
        build = self.store.builds.get(image_name)
        if build is None:
            raise NotFound(f"No image named '{image_name}'. Build one with POST /builds/repos first.")
        if build.status is BuildStatus.pending:
            raise Conflict(f"'{image_name}' is still building; stage it when "
                           f"GET /builds/repos/{image_name}/status says completed.")
        if build.status is BuildStatus.failed:
            raise Conflict(f"The build of '{image_name}' failed ({build.reason}); build it again first.")
        return build

    def get(self, environment_name: str) -> Staging:
        staging = self.store.environments.get_staging(environment_name)
        if staging is None:
            raise NotFound(f"No environment named '{environment_name}'. Stage one with POST /stagings.")
        return staging

    def launchable(self, environment_name: str) -> Staging:
        return self.ready(self.get(environment_name))

    @staticmethod
    def ready(staging: Staging) -> Staging:
        """The staging, if servers can start from it; else Conflict, saying why."""
        if staging.status is not StagingStatus.completed:
            raise Conflict(f"The environment '{staging.environment_name}' is not ready ({staging.status.value}"
                           f"{': ' + staging.reason if staging.reason else ''}).")
        return staging
