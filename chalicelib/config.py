"""One typed Settings object, read once from the environment (the stage variables)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.repository_urls import DEFAULT_ALLOWED_HOSTS, normalize_allowed_hosts

# Endpoints anyone may call without a token, as the seeds show them.
DEFAULT_PUBLIC_ENDPOINTS = (
    "builds.create",
    "builds.get",
    "builds.find",
    "builds.logs",
    "deployments.create",
    "deployments.get",
    "pools.get",
    "binders.create",
    "binders.get",
)

# name -> version -> sidecar container. Operators replace it with BINDERLESS_SERVICE_CATALOG.
DEFAULT_SERVICE_CATALOG: dict[str, Any] = {
    "postgres": {
        "16": {
            "image": "public.ecr.aws/docker/library/postgres:16",
            "cpu": 256,
            "memory": 512,
            "port": 5432,
            "environment": {"POSTGRES_PASSWORD": "binder", "POSTGRES_USER": "binder"},
            "params": {"database": "POSTGRES_DB"},
        }
    },
    "redis": {
        "7": {
            "image": "public.ecr.aws/docker/library/redis:7",
            "cpu": 128,
            "memory": 256,
            "port": 6379,
            "environment": {},
            "params": {},
        }
    },
}


_CSV_FIELDS = frozenset({"subnets", "security_groups", "public_endpoints", "allowed_hosts", "cors_origins"})


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


MIN_ADMIN_TOKEN_LENGTH = 16


def check_admin_token(token: str) -> str:
    """BINDERLESS_ADMIN_TOKEN as Settings validates it: unset, or long enough not to be guessed.

    A weak admin token is a misconfiguration, so it stops the app at start (the message never
    repeats the token)."""
    if token and len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError(f"BINDERLESS_ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LENGTH} characters; use a "
                         "random one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))', or unset it")
    if any(character.isspace() for character in token):
        raise ValueError("BINDERLESS_ADMIN_TOKEN contains whitespace, which no Authorization header can carry")
    return token


class Settings(BaseModel):
    """Everything the app reads from its environment. Built once per process."""

    # hide_input_in_errors: a refused admin token must not be echoed into the startup error.
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    stage: str = "dev"
    backend: Literal["aws", "local"] = "aws"
    region: str = "us-east-1"
    table_name: str = "binderless"
    log_level: str = "INFO"

    # AWS resources (outputs of the infra/ stack).
    cluster: str = "binderless"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = True
    address: Literal["public", "private"] = "public"
    codebuild_project: str = "binderless-repo2docker"
    ecr_repository_uri: str = "000000000000.dkr.ecr.us-east-1.amazonaws.com/binderless"
    execution_role_arn: str = ""
    task_role_arn: str = ""
    log_group: str = ""

    # Notebook servers.
    server_port: int = 8888
    location_scheme: Literal["http", "https"] = "http"
    server_max_lifetime: int = Field(6 * 3600, gt=0, description="seconds a handed-out server may live")
    starting_timeout: int = Field(600, gt=0, description="seconds a server may take to start")
    check_interval: int = Field(120, gt=0, description="seconds between checks of servers whose events may be lost")
    available_check_interval: int = Field(
        600, gt=0, description="seconds between checks of pooled, ready servers (a safety net for lost stop events)")
    running_check_interval: int = Field(
        0, ge=0, description="seconds between checks of handed-out servers; 0: only at their maximum lifetime")
    stopped_retention: int = Field(24 * 3600, ge=0, description="seconds a stopped server stays visible")
    build_poll_after: int = Field(900, gt=0, description="seconds before a build without an event is polled")
    idle_timeout: int = Field(
        600, ge=0, description="seconds a handed-out server may sit idle before it stops itself; 0: never")
    kernel_idle_timeout: int = Field(
        600, ge=0, description="seconds a kernel may sit idle (not busy; open tabs or not) before it is shut down; "
        "0: never")

    # The proxy in front of the servers (the Router port): "direct" is none (a server's own URL is its
    # location); "chp" is configurable-http-proxy, whose REST API is at proxy_api_url (its token from
    # proxy_auth_token, or on AWS from the Secrets Manager secret proxy_auth_token_secret) and whose
    # routes readers reach at proxy_public_url (https://<domain> on AWS, the API's own origin locally).
    router: Literal["direct", "chp"] = "direct"
    proxy_api_url: str = ""
    proxy_public_url: str = ""
    proxy_auth_token: str = Field("", repr=False)
    proxy_auth_token_secret: str = ""
    never_opened_timeout: int = Field(
        300, ge=0, description="seconds a handed-out server may go unopened (no request through the proxy) before "
        "it is stopped; 0: never (behind a proxy only: nothing else sees requests)")

    # Local mode (``python -m chalicelib.local``): where clones, virtualenvs and server logs go
    # ("" = .binderless/ in the project), and how often the schedule's tick runs, in seconds.
    local_dir: str = ""
    local_tick: float = Field(2.0, gt=0)

    # Limits and caps.
    default_cpu: int = 1024
    default_memory: int = 2048
    max_cpu: int = 4096
    max_memory: int = 16384
    max_pool_size: int = Field(100, ge=0)
    # Fargate keeps a server's pulled image on its ephemeral storage, compressed and unpacked, beside
    # what the notebook writes: big images need more than the default. AWS (ECS API, EphemeralStorage):
    # "The minimum supported value is 21 GiB and the maximum supported value is 200 GiB."
    ephemeral_storage: int | None = Field(
        None, ge=21, le=200, description="GiB of ephemeral storage per server task; none: Fargate's default 20 GiB")

    @field_validator("ephemeral_storage", mode="before")
    @classmethod
    def _unset_storage(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value  # BINDERLESS_EPHEMERAL_STORAGE=""

    # Quotas (0: no limit). Over one, a launch or build answers 429 with Retry-After.
    max_servers: int = Field(500, ge=0, description="live servers in this deployment")
    max_servers_per_environment: int = Field(200, ge=0)
    max_servers_per_repository: int = Field(200, ge=0)
    max_builds_per_repository: int = Field(2, ge=0, description="builds of one repository running at once")
    default_environment: str = Field("", max_length=100, description=(
        "the environment tmpnb's POST /api/spawn hands out servers of (from its pool); none: 404"))
    launch_rate_limit: int = Field(10, ge=0, description="anonymous launches per client address per window")
    launch_rate_window: int = Field(60, gt=0, description="seconds")
    # 4: a reader with a few tabs open, or a household behind one address, fits; yet 125 addresses
    # are needed to hold the default 500 servers. (Idle servers stop after idle_timeout.)
    max_servers_per_client: int = Field(
        4, ge=0, description="live servers one anonymous client (IPv4 address, IPv6 /64) may hold")
    max_builds: int = Field(20, ge=0, description="builds running at once in this deployment")
    build_rate_limit: int = Field(5, ge=0, description="anonymous builds (not cached) per client per window")
    build_rate_window: int = Field(600, gt=0, description="seconds")
    idempotency_ttl: int = Field(3600, gt=0, description="seconds a POST's Idempotency-Key is remembered")

    # Auth.
    admin_token: str = Field("", repr=False)
    public_endpoints: tuple[str, ...] = DEFAULT_PUBLIC_ENDPOINTS

    # Browser origins (scheme://host[:port]) whose pages may call the API and the notebook servers;
    # "*" is any origin. AWS stages default to "*" (servers are sandboxed tasks, as on mybinder.org);
    # local mode to none (its servers run as the user): requests from other origins get 403.
    cors_origins: tuple[str, ...] = ("*",)
    # Local mode only: serve on a non-loopback HOST. Then building needs an API token.
    allow_remote: bool = False

    # Git hosts a repository URL may name ("*": any public host); local mode accepts any host.
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS

    service_catalog: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_SERVICE_CATALOG))

    @field_validator("service_catalog")
    @classmethod
    def _valid_catalog(cls, catalog: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.catalog import validate_catalog  # catalog imports the models, which are heavier

        validate_catalog(catalog)  # a malformed operator catalog fails at start, not at the first staging
        return catalog

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        from chalicelib.origins import normalize_origins

        return normalize_origins(origins)

    @field_validator("allowed_hosts")
    @classmethod
    def _valid_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        return normalize_allowed_hosts(hosts)

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, token: str) -> str:
        return check_admin_token(token)

    @field_validator("ecr_repository_uri")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def ecr_repository_name(self) -> str:
        return self.ecr_repository_uri.split("/", 1)[1] if "/" in self.ecr_repository_uri else self.ecr_repository_uri

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for name in cls.model_fields:
            value = env.get(f"BINDERLESS_{name.upper()}")
            if value is None:
                continue
            if name in _CSV_FIELDS:
                raw[name] = _csv(value)
            elif name == "service_catalog":
                raw[name] = json.loads(value)
            else:
                raw[name] = value
        raw.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1")
        return cls.model_validate(raw)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests clear the cache with ``get_settings.cache_clear()``."""
    return Settings.from_env()
