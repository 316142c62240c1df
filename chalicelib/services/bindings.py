"""The v1 seed's bindings: a declaration (name, repo, requirements, notebooks, services) that becomes a
build of ``repo`` and, once the image exists, a staging named ``name`` with the operator's default
limits. That staging is the binder: ``/binders/{name}`` launches it as ``/deployments/{name}`` does.

A binding is written once and answers the same declaration idempotently; another declaration at its
path is a Conflict (bindings do not change; ``name`` would otherwise point servers at another image).
The staging is made when someone next asks (GET, a launch, a pool) after the build completes, since a
build completes through an event the binding does not hear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from chalicelib.catalog import resolve_services
from chalicelib.config import Settings
from chalicelib.errors import BinderError, Conflict, Invalid, NotFound
from chalicelib.limits import resolve_limits
from chalicelib.models import (
    Binding,
    BindingCreate,
    Build,
    BuildCreate,
    BuildStatus,
    LimitsRequest,
    StagingCreate,
    StagingStatus,
)
from chalicelib.services.builds import BuildService
from chalicelib.services.stagings import StagingService
from chalicelib.store import Store

T = TypeVar("T")
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # an org or a repo in a binding's path
IGNORED = ("requirements", "notebooks")
BUILDING_RETRY_AFTER = "10"


@dataclass(frozen=True)
class BindingState:
    """A binding and how far it has come: pending (building or staging), completed (launchable) or failed."""

    binding: Binding
    status: StagingStatus
    reason: str = ""


def binding_path(org: str, repo: str) -> str | None:
    """``org/repo`` of a binding's URL, or None if either could name no binding."""
    return f"{org}/{repo}" if SEGMENT.fullmatch(org) and SEGMENT.fullmatch(repo) else None


def declared(body: BindingCreate) -> dict[str, Any]:
    """The declaration as POSTed: the fields it gave (services with their defaults, as stagings show them)."""
    return {k: v for k, v in body.model_dump(mode="json").items() if k in body.model_fields_set}


def no_binding(path: str) -> NotFound:
    return NotFound(f"No binding at /bindings/{path}. Create one with POST /bindings/{path}.")


class BindingService:
    def __init__(self, settings: Settings, store: Store, builds: BuildService, stagings: StagingService,
                 clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.builds = builds
        self.stagings = stagings
        self.clock = clock

    def create(self, org: str, repo: str, body: BindingCreate, *,
               client: str | None = None) -> tuple[BindingState, bool]:
        """The binding at ``org/repo`` and whether this call created it: its build requested, and its staging
        made if the image exists already. The same declaration again changes nothing (but retries a failed
        build); another one is a Conflict, as is a name another binding or staging holds."""
        path = binding_path(org, repo)
        if path is None:
            raise Invalid(f"/bindings/{org[:100]}/{repo[:100]}: an org and a repo are letters, digits, '.', '_' "
                          "and '-', at most 100 characters each, e.g. /bindings/CodeNeuro/notebooks.")
        existing = self.store.bindings.get(path)
        if existing:
            return self._again(existing, body, client), False
        self._check_services(body)
        self._check_name_free(body.name)
        build = self.builds.request(BuildCreate(repository=body.repo, ref="HEAD"), client=client)
        binding = Binding(path=path, name=body.name, declaration=declared(body),
                          image_name=build.image_name, created_at=self.clock())
        if not self.store.bindings.create(binding):
            existing = self.store.bindings.get(path)  # a concurrent POST, or a name taken meanwhile
            if existing:
                return self._again(existing, body, client), False
            raise self._name_taken(body.name)
        return self._state(binding, build), True

    def get(self, org: str, repo: str) -> BindingState:
        binding = self.find(org, repo)
        return self._state(binding, self.builds.get(binding.image_name))

    def find(self, org: str, repo: str) -> Binding:
        """The binding at ``org/repo`` as stored (one read), whatever its build's progress."""
        path = binding_path(org, repo)
        binding = self.store.bindings.get(path) if path else None
        if binding is None:
            raise no_binding(f"{org[:100]}/{repo[:100]}")
        return binding

    def on_binder(self, name: str, action: Callable[[], T]) -> T:
        """``action()`` on the environment ``name``. If it has none yet and a binding has that name, stage
        the binding (Conflict while its image builds, or after its build failed) and run it again."""
        try:
            return action()
        except NotFound:
            binding = self.store.bindings.by_name(name)
            if binding is None:
                raise
        state = self._state(binding, self.builds.get(binding.image_name))
        if state.status is not StagingStatus.completed:
            headers = {"Retry-After": BUILDING_RETRY_AFTER} if state.status is StagingStatus.pending else None
            raise Conflict(f"The binder '{name}' is not ready: {state.reason}", headers=headers)
        return action()

    def _again(self, existing: Binding, body: BindingCreate, client: str | None) -> BindingState:
        """A POST of the binding at an existing path."""
        if BindingCreate.model_validate(existing.declaration).model_dump() != body.model_dump():
            raise Conflict(f"The binding at /bindings/{existing.path} exists with another declaration, and "
                           "bindings do not change: GET it to see it, or POST yours at another path and name.")
        build = self.builds.get(existing.image_name)
        if build.status is BuildStatus.failed:  # build again; the ref may name a newer commit by now
            build = self.builds.request(BuildCreate(repository=body.repo, ref="HEAD"), client=client)
            if build.image_name != existing.image_name:
                existing = self.store.bindings.repoint(existing, build.image_name) or self._reread(existing)
                build = self.builds.get(existing.image_name)
        return self._state(existing, build)

    def _reread(self, binding: Binding) -> Binding:
        current = self.store.bindings.get(binding.path)
        if current is None:
            raise no_binding(binding.path)
        return current

    def _state(self, binding: Binding, build: Build) -> BindingState:
        """Where the binding stands; once its image is built, staged (made now if it is not yet)."""
        if build.status is BuildStatus.pending:
            return BindingState(binding, StagingStatus.pending, f"its image {build.image_name} is still building.")
        if build.status is BuildStatus.failed:
            return BindingState(binding, StagingStatus.failed, f"its build failed: {build.reason}. POST the binding "
                                                             "again to build it again.")
        staging = self.store.environments.get_staging(binding.name)
        if staging is None or staging.status is StagingStatus.failed:
            try:
                staging, _ = self.stagings.create(StagingCreate.model_validate({
                    "image-name": binding.image_name, "limits": LimitsRequest(), "environment-name": binding.name,
                    "services": binding.declaration.get("services", [])}))
            except BinderError as error:  # the next request tries again; until then, this is where it stands
                return BindingState(binding, StagingStatus.failed, f"staging failed: {error.message}")
        reason = f"staging failed: {staging.reason}" if staging.reason else ""
        if staging.status is StagingStatus.pending:
            reason = "it is being staged."
        return BindingState(binding, staging.status, reason)

    def _check_services(self, body: BindingCreate) -> None:
        """Refuse services the catalog does not offer, or that leave the notebook nothing within the
        operator's default limits, before anything is built or written."""
        sidecars = resolve_services(body.services, self.settings.service_catalog)
        limits = resolve_limits(None, None, settings=self.settings)
        if sum(s.cpu for s in sidecars) >= limits.cpu or sum(s.memory for s in sidecars) >= limits.memory:
            raise Invalid(f"The services need {sum(s.cpu for s in sidecars)} cpu units and "
                          f"{sum(s.memory for s in sidecars)} MiB, which leaves nothing for the notebook within "
                          f"this deployment's default {limits.cpu} units and {limits.memory} MiB.")

    def _check_name_free(self, name: str) -> None:
        if self.store.bindings.by_name(name) or self.store.environments.get_staging(name):
            raise self._name_taken(name)

    @staticmethod
    def _name_taken(name: str) -> Conflict:
        return Conflict(f"The name '{name}' is taken by another binding or environment; choose another name.")
