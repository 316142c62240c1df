"""Stager on ECS Fargate: one task definition per environment (the notebook plus catalog sidecars)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chalicelib import errors
from chalicelib.backends.aws_common import aws_errors
from chalicelib.backends.aws_tasks import NOTEBOOK, STARTED_BY, ecs_tag
from chalicelib.backends.base import EnvironmentSpec, Handle, Sidecar
from chalicelib.backends.bootstrap import ENTRY_POINT, health_check_command
from chalicelib.config import Settings
from chalicelib.lazy_clients import LazyClient

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import (
        ContainerDefinitionTypeDef,
        HealthCheckTypeDef,
        LogConfigurationTypeDef,
        RegisterTaskDefinitionRequestTypeDef,
    )


# The notebook container's health check (``AwsStager._health_check`` quotes ECS's limits).
HEALTH_INTERVAL, HEALTH_TIMEOUT, HEALTH_RETRIES, HEALTH_START_PERIOD = 5, 5, 3, 300


def family_name(environment_name: str) -> str:
    # Task definition families allow letters, digits, "-" and "_" only (255 at most).
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"binderless-{environment_name}")[:255]


class AwsStager:
    """``Stager`` port: one Fargate task definition per environment."""

    def __init__(self, settings: Settings, *, ecs: ECSClient | None = None):
        self.settings = settings
        self._ecs = ecs

    ecs: LazyClient[ECSClient] = LazyClient("ecs")

    def register(self, spec: EnvironmentSpec) -> Handle:
        cpu = spec.cpu - sum(sidecar.cpu for sidecar in spec.sidecars)
        memory = spec.memory - sum(sidecar.memory for sidecar in spec.sidecars)
        if cpu <= 0 or memory <= 0:
            raise errors.Invalid("the services need all the cpu or memory of the environment; raise the limits")
        notebook: ContainerDefinitionTypeDef = {
            "name": NOTEBOOK,
            "image": spec.image,
            "essential": True,
            "cpu": cpu,
            "memory": memory,
            "portMappings": [{"containerPort": self.settings.server_port, "protocol": "tcp"}],
            # The bootstrap, not the image's entry point, is PID 1 (bootstrap.py says why); the
            # RunTask command override follows it.
            "entryPoint": list(ENTRY_POINT),
            "healthCheck": self._health_check(),
        }
        containers = [notebook, *(self._sidecar(sidecar) for sidecar in spec.sidecars)]
        if self.settings.log_group:
            for container in containers:
                container["logConfiguration"] = self._logs()
        request: RegisterTaskDefinitionRequestTypeDef = {
            "family": family_name(spec.name),
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": str(spec.cpu),
            "memory": str(spec.memory),
            "containerDefinitions": containers,
        }
        if self.settings.execution_role_arn:  # needed to pull from ECR and to write logs
            request["executionRoleArn"] = self.settings.execution_role_arn
        if self.settings.task_role_arn:
            request["taskRoleArn"] = self.settings.task_role_arn
        if spec.source:
            # Cost allocation: RunTask propagates these to each task and adds the environment
            # (aws_tasks.task_tags). Tagging here needs ecs:TagResource too (scripts/policy.py).
            request["tags"] = [ecs_tag(f"{STARTED_BY}:repository", spec.source)]
        if self.settings.ephemeral_storage is not None:  # None: Fargate's default (20 GiB)
            request["ephemeralStorage"] = {"sizeInGiB": self.settings.ephemeral_storage}
        with aws_errors("ECS RegisterTaskDefinition"):
            reply = self.ecs.register_task_definition(**request)
        return {"task_definition": reply["taskDefinition"]["taskDefinitionArn"]}

    def _health_check(self) -> HealthCheckTypeDef:
        """HEALTHY once jupyter answers ``api/status`` with the task's token: until then a RUNNING task
        gets no location (aws_tasks.py). ECS's words on each value (API reference, HealthCheck):

        interval: "You may specify between 5 and 300 seconds. The default value is 30 seconds."
        The least, so a server is HEALTHY within 5 s of listening: the check takes milliseconds.
        timeout: "You may specify between 2 and 60 seconds. The default value is 5." The default;
        only a failing check waits for it, and the check's own request gives up a second earlier.
        retries: "You may specify between 1 and 10 retries. The default value is 3." The default.
        startPeriod: "You can specify between 0 and 300 seconds. By default, the startPeriod is
        off. [...] If a health check succeeds within the startPeriod, then the container is
        considered healthy". The most: a check that passes ends it at once, so it delays nothing,
        and a big image is not called UNHEALTHY while jupyter loads (nothing here acts on
        UNHEALTHY: a server that never answers fails at ``starting_timeout``)."""
        return {"command": health_check_command(self.settings.server_port, HEALTH_TIMEOUT - 1),
                "interval": HEALTH_INTERVAL, "timeout": HEALTH_TIMEOUT, "retries": HEALTH_RETRIES,
                "startPeriod": HEALTH_START_PERIOD}

    def _sidecar(self, sidecar: Sidecar) -> ContainerDefinitionTypeDef:
        # Not essential: a crashed database should not take the user's notebook down with it.
        container: ContainerDefinitionTypeDef = {
            "name": sidecar.name,
            "image": sidecar.image,
            "essential": False,
            "cpu": sidecar.cpu,
            "memory": sidecar.memory,
            "environment": [{"name": name, "value": value} for name, value in sidecar.environment.items()],
        }
        if sidecar.port:
            container["portMappings"] = [{"containerPort": sidecar.port, "protocol": "tcp"}]
        return container

    def _logs(self) -> LogConfigurationTypeDef:
        options = {
            "awslogs-group": self.settings.log_group,
            "awslogs-region": self.settings.region,
            "awslogs-stream-prefix": STARTED_BY,
        }
        return {"logDriver": "awslogs", "options": options}
