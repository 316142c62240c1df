"""The operator's service catalog: which sidecars (postgres, redis...) a staging may ask for.

The catalog (``Settings.service_catalog``) maps name -> version -> entry::

    {"image": "...", "cpu": 256, "memory": 512, "port": 5432,
     "environment": {"POSTGRES_USER": "binder"}, "params": {"database": "POSTGRES_DB"}}

``params`` is the whitelist of what a client may set: each accepted param name maps to the
environment variable it becomes, so a request can never set arbitrary variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib import errors
from chalicelib.backends.base import Sidecar

MAX_PARAM_LENGTH = 256

_ENTRY_KEYS = frozenset({"image", "cpu", "memory", "port", "environment", "params"})
_REQUIRED_KEYS = ("image", "cpu", "memory")
# ECS container names: letters, digits, hyphens, underscores, up to 255.
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _version_text(value: object) -> object:
    """People write ``"version": 16``; catalog versions are strings (JSON keys always are)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class ServiceRequest(BaseModel):
    """One entry of a staging's ``services``, as the client sends it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    params: dict[str, str] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_string(cls, value: object) -> object:
        return _version_text(value)


class ServiceRequestLike(Protocol):
    """Anything with a ServiceRequest's fields (a stored record replayed, a test double)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def params(self) -> Mapping[str, str]: ...


def resolve_services(requested: Sequence[ServiceRequestLike], catalog: Mapping[str, Any]) -> tuple[Sidecar, ...]:
    """The sidecars for a staging's ``services``, in request order.

    Raises errors.Invalid (422, as for bad limits) naming what the catalog offers instead."""
    seen: set[str] = set()
    sidecars = []
    for request in requested:
        if request.name in seen:
            raise errors.Invalid(f"service {request.name!r} is requested twice; ask for each service once")
        seen.add(request.name)
        sidecars.append(_resolve_one(request, catalog))
    return tuple(sidecars)


def _resolve_one(request: ServiceRequestLike, catalog: Mapping[str, Any]) -> Sidecar:
    versions = catalog.get(request.name)
    if versions is None:
        offered = ", ".join(sorted(catalog)) or "none"
        raise errors.Invalid(f"unknown service {request.name!r}; available services: {offered}")
    version = str(_version_text(request.version))
    entry = versions.get(version)
    if entry is None:
        raise errors.Invalid(
            f"service {request.name!r} has no version {version!r}; available versions: {', '.join(sorted(versions))}"
        )
    environment = dict(entry.get("environment", {}))
    environment.update(_params_as_environment(request, entry.get("params", {})))
    return Sidecar(
        name=request.name,
        image=entry["image"],
        cpu=entry["cpu"],
        memory=entry["memory"],
        port=entry.get("port", 0),
        environment=environment,
    )


def _params_as_environment(request: ServiceRequestLike, accepted: Mapping[str, str]) -> dict[str, str]:
    """The request's params as environment variables; a param overrides the entry's default."""
    environment = {}
    for param, value in request.params.items():
        if param not in accepted:
            offered = ", ".join(sorted(accepted)) or "none"
            raise errors.Invalid(
                f"service {request.name!r} does not accept param {param!r}; accepted params: {offered}"
            )
        if not isinstance(value, str):
            raise errors.Invalid(f"param {param!r} of service {request.name!r} must be a string")
        if len(value) > MAX_PARAM_LENGTH:
            raise errors.Invalid(
                f"param {param!r} of service {request.name!r} is longer than {MAX_PARAM_LENGTH} characters"
            )
        environment[accepted[param]] = value
    return environment


def validate_catalog(catalog: object) -> None:
    """Raise ValueError listing every problem of an operator's catalog, so a typo fails at startup
    instead of as a broken task definition when the first client asks for the service."""
    problems = _catalog_problems(catalog)
    if problems:
        raise ValueError("invalid service catalog: " + "; ".join(problems))


def _catalog_problems(catalog: object) -> list[str]:
    if not isinstance(catalog, Mapping):
        return [f"it must be an object of name -> version -> entry, not {type(catalog).__name__}"]
    problems: list[str] = []
    for name, versions in catalog.items():
        if not isinstance(name, str) or not _CONTAINER_NAME.fullmatch(name):
            problems.append(f"service name {name!r} must be letters, digits, '-' or '_' (a container name)")
        if not isinstance(versions, Mapping) or not versions:
            problems.append(f"service {name!r} must map at least one version to an entry")
            continue
        for version, entry in versions.items():
            problems.extend(_entry_problems(f"service_catalog[{name!r}][{version!r}]", version, entry))
    return problems


def _entry_problems(where: str, version: object, entry: object) -> list[str]:
    if not isinstance(version, str) or not version:
        return [f"{where}: version must be a non-empty string"]
    if not isinstance(entry, Mapping):
        return [f"{where} must be an object with {', '.join(_REQUIRED_KEYS)}"]
    problems = [f"{where}: unknown key {key!r}" for key in sorted(set(entry) - _ENTRY_KEYS, key=str)]
    problems += [f"{where}: missing {key!r}" for key in _REQUIRED_KEYS if key not in entry]
    if "image" in entry and (not isinstance(entry["image"], str) or not entry["image"].strip()):
        problems.append(f"{where}.image must be a non-empty string")
    for key, unit in (("cpu", "CPU units"), ("memory", "MiB")):
        if key in entry and not _is_positive_int(entry[key]):
            problems.append(f"{where}.{key} must be a positive integer ({unit}), got {entry[key]!r}")
    port = entry.get("port", 0)
    if not _is_int(port) or not 0 <= port <= 65535:
        problems.append(f"{where}.port must be an integer 0-65535 (0: none), got {port!r}")
    problems += _string_map_problems(f"{where}.environment", entry.get("environment", {}), keys_are_env=True)
    problems += _string_map_problems(f"{where}.params", entry.get("params", {}), keys_are_env=False)
    return problems


def _string_map_problems(where: str, mapping: object, *, keys_are_env: bool) -> list[str]:
    """environment: ENV_NAME -> value; params: param name -> ENV_NAME."""
    if not isinstance(mapping, Mapping):
        return [f"{where} must be an object"]
    problems = []
    for key, value in mapping.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            problems.append(f"{where}[{key!r}] must map a non-empty string to a string")
            continue
        env_name = key if keys_are_env else value
        if not _ENV_NAME.fullmatch(env_name):
            problems.append(f"{where}[{key!r}]: {env_name!r} is not a valid environment variable name")
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
