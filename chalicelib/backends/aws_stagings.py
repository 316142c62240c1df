"""Stager on ECS Fargate: one task definition per environment (the notebook plus catalog sidecars)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chalicelib import errors
from chalicelib.backends.aws_common import aws_errors
from chalicelib.backends.aws_tasks import NOTEBOOK, STARTED_BY
from chalicelib.backends.base import EnvironmentSpec, Handle, Sidecar
from chalicelib.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import (
        ContainerDefinitionTypeDef,
        LogConfigurationTypeDef,
        RegisterTaskDefinitionRequestTypeDef,
    )


def family_name(environment_name: str) -> str:
    # Task definition families allow letters, digits, "-" and "_" only (255 at most).
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"binderless-{environment_name}")[:255]


class AwsStager:
    """``Stager`` port: one Fargate task definition per environment."""

    def __init__(self, settings: Settings, *, ecs: ECSClient | None = None):
        self.settings = settings
        self._ecs = ecs

    @property
    def ecs(self) -> ECSClient:
        if self._ecs is None:
            import boto3

            self._ecs = boto3.client("ecs", region_name=self.settings.region)
        return self._ecs

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
        with aws_errors("ECS RegisterTaskDefinition"):
            reply = self.ecs.register_task_definition(**request)
        return {"task_definition": reply["taskDefinition"]["taskDefinitionArn"]}

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
