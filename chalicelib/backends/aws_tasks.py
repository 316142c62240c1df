"""Spawner on ECS Fargate: a task per notebook server (task definitions: aws_stagings.py).

Tokens for a batch. RunTask starts up to 10 tasks in one call but applies one set of
overrides to all of them, so it cannot carry a different token for each. Each call gets a
fresh random batch key instead (``BINDERLESS_BATCH_KEY``); every task derives its token as
HMAC-SHA256(key, its own task id) in ``bootstrap.BOOTSTRAP``, and this module computes the
same value from the task's ARN (``bootstrap.token_for``). A task started alone gets its token
as it is (``BINDERLESS_TOKEN``).

Ready means answering. ECS RUNNING only says the container started; a task gets a location
once the notebook container's health check (aws_stagings.py: ``GET api/status`` with the
token) passes (``server_answers``). ECS sends no event when that happens: its developer guide
("Amazon ECS task state change events") says task state change events do not provide health
status and points to DescribeTasks for it, and aws/containers-roadmap#1019 asks for such
events. So the RUNNING event usually leaves the server starting, and the schedule's
DescribeTasks finds it HEALTHY.

Behind the proxy. With ``Settings.router == "chp"`` every task serves under ``/user/<task id>/``
(``SERVER_PREFIX``; bootstrap.py derives it in the container, as it derives the token) and its URL is
``http://<private ip>:<port>/user/<task id>/``: the proxy runs in the same VPC and reaches servers on
their private address, whatever ``address`` says; users only ever see the proxy's location. Without it
(``direct``) a URL is ``<scheme>://<ip>:<port>/`` as ever.

Recording tasks. Every task's ``startedBy`` names its launch, and so does every ECS event
about it, so the first event records the task on a server of that launch
(``records_from_events``): a start costs no write after RunTask.

The trade-off: the key is shared by the at most ``max_batch`` sibling tasks of one call.
It travels in the command, not the environment (bootstrap.py says why), and only the first
process sees it, which execs before any code of the repository runs, so a notebook user
never sees it; a token (an HMAC output) does not reveal it. Forging a sibling's token
would take the key *and* the sibling's task id, which binderless never shows. The key does
remain visible where the task's overrides are: ecs:DescribeTasks, the RunTask request in
CloudTrail and the ECS state-change events. Those readers are operators who can stop the
task anyway; handlers must still not log event details verbatim.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib.backends.aws_common import aws_errors, chunks, error_code, error_message
from chalicelib.backends.base import Handle, Launched, TaskState, TaskStatus
from chalicelib.backends.bootstrap import base_url_for, bootstrap_command, secret_argument, token_for
from chalicelib.backends.culling import culling_arguments
from chalicelib.backends.server_origins import allow_origin_arguments
from chalicelib.config import Settings
from chalicelib.lazy_clients import LazyClient

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import (
        AwsVpcConfigurationTypeDef,
        ContainerOverrideTypeDef,
        FailureTypeDef,
        ListTasksRequestTypeDef,
        TagTypeDef,
    )

NOTEBOOK = "notebook"
STARTED_BY = "binderless"
STARTED_BY_PATTERN = re.compile(r"[A-Za-z0-9/_-]{1,128}")  # RunTask's startedBy
# ECS tags: "Generally allowed characters are: letters, numbers, and spaces representable in UTF-8,
# and the following characters: + - = . _ : / @" (kept to their ASCII subset here).
TAG_DISALLOWED = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")
MAX_TAG_VALUE = 256
TASK_STATUS: dict[str, TaskStatus] = {
    "PROVISIONING": "starting",
    "PENDING": "starting",
    "ACTIVATING": "starting",
    "RUNNING": "running",
    "DEACTIVATING": "stopped",
    "STOPPING": "stopped",
    "DEPROVISIONING": "stopped",
    "STOPPED": "stopped",
    "DELETED": "stopped",
}
# describe_tasks says "ElasticNetworkInterface"; ECS state-change events say "eni".
ENI_TYPES = ("ElasticNetworkInterface", "eni")
# Where servers live behind the proxy: /user/<task id>/ (the routes' prefixes, the gone page's paths).
SERVER_PREFIX = "/user/"


def started_by(launch: str) -> str:
    """RunTask's startedBy: ours, and which call started the task (``binderless-<launch>``).

    RunTask allows "Up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward
    slash (/), and underscores (_)"; launch ids are hex (services/servers.py), so this always fits.
    A launch that would not is refused rather than cut or rewritten: ``launch_of`` must give it back."""
    value = f"{STARTED_BY}-{launch}" if launch else STARTED_BY
    if not STARTED_BY_PATTERN.fullmatch(value):
        raise ValueError(f"launch {launch!r} cannot be an ECS startedBy")
    return value


def launch_of(started: str) -> str:
    """The launch a ``started_by`` value names ("" for none, or for a task someone else started)."""
    return started.removeprefix(f"{STARTED_BY}-") if started.startswith(f"{STARTED_BY}-") else ""


def task_tags(task_definition: str) -> list[TagTypeDef]:
    """The tags every task gets for cost allocation: the environment it runs.

    The environment is the task definition's family without its ``binderless-`` prefix
    (aws_stagings.family_name; exact for every name but those with a ".", which the family
    spells "-"). ECS tag values allow letters, numbers, spaces and ``+ - = . _ : / @`` only."""
    family = task_definition.rsplit("/", 1)[-1].split(":", 1)[0]
    return [ecs_tag(f"{STARTED_BY}:environment", family.removeprefix(f"{STARTED_BY}-"))]


def ecs_tag(key: str, value: str) -> TagTypeDef:
    """A tag ECS accepts: other characters become "_", and a value past 256 characters keeps
    its first 239 and a digest of the whole, so long values stay distinct."""
    clean = TAG_DISALLOWED.sub("_", value)
    if clean.lower().startswith("aws:"):  # reserved for AWS, in keys and values alike
        clean = f"_{clean}"
    if len(clean) > MAX_TAG_VALUE:
        clean = f"{clean[:MAX_TAG_VALUE - 17]}-{hashlib.sha256(value.encode()).hexdigest()[:16]}"
    return {"key": key, "value": clean}


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def server_answers(task: Mapping[str, Any]) -> bool:
    """Whether the notebook container's health check passes (a DescribeTasks task, or an event's).

    The container's own ``healthStatus``, not the task's: the task's is the essential containers'
    together, and ECS has been seen to call a task HEALTHY while an essential container without a
    check is UNKNOWN (aws/amazon-ecs-agent#4094). Only a detail that lists no containers falls back
    on the task's. UNKNOWN (not checked yet, or no check) and UNHEALTHY are not ready."""
    for container in task.get("containers") or []:
        if container.get("name") == NOTEBOOK:
            return bool(container.get("healthStatus") == "HEALTHY")
    return bool(task.get("healthStatus") == "HEALTHY")


def eni_details(task: Mapping[str, Any]) -> dict[str, str]:
    """name -> value of the task's network interface attachment (empty until attached)."""
    for attachment in task.get("attachments") or []:
        if attachment.get("type") in ENI_TYPES:
            return {d["name"]: d.get("value", "") for d in attachment.get("details", []) if "name" in d}
    return {}


class AwsSpawner:
    """``Spawner`` port: notebook servers as Fargate tasks, up to 10 per RunTask call."""

    max_batch = 10  # RunTask's own limit on count
    records_from_events = True  # every ECS event carries startedBy, which names the launch

    def __init__(self, settings: Settings, *, ecs: ECSClient | None = None, ec2: EC2Client | None = None):
        self.settings = settings
        self._ecs = ecs
        self._ec2 = ec2

    ecs: LazyClient[ECSClient] = LazyClient("ecs")
    ec2: LazyClient[EC2Client] = LazyClient("ec2")

    def start(self, environment: Handle, server_ids: Sequence[str], launch: str, key: str) -> list[Launched]:
        if not 0 < len(server_ids) <= self.max_batch:
            raise ValueError(f"start takes 1 to {self.max_batch} server ids, got {len(server_ids)}")
        solo = len(server_ids) == 1
        override: ContainerOverrideTypeDef = {
            "name": NOTEBOOK,
            # The secret is an argument: in "environment" every health check would carry it.
            "command": bootstrap_command(self.settings.server_port, secret_argument(key, solo=solo),
                                         [*culling_arguments(self.settings), *allow_origin_arguments(self._origins())],
                                         base_prefix=SERVER_PREFIX if self.proxied else ""),
        }
        with aws_errors("ECS RunTask"):
            reply = self.ecs.run_task(
                cluster=self.settings.cluster,
                taskDefinition=environment["task_definition"],
                launchType="FARGATE",
                count=len(server_ids),
                networkConfiguration={"awsvpcConfiguration": self._awsvpc()},
                startedBy=started_by(launch),
                overrides={"containerOverrides": [override]},
                # Cost allocation: our tags and ECS's own (aws:ecs:clusterName). Tagging at RunTask
                # needs ecs:TagResource as well (scripts/policy.py).
                tags=task_tags(environment["task_definition"]),
                propagateTags="TASK_DEFINITION",  # the repository, tagged on the task definition
                enableECSManagedTags=True,
            )
        tasks, failures = reply.get("tasks", []), reply.get("failures", [])
        launched = [
            Launched(server_id, token=key if solo else token_for(key, task["taskArn"]),
                     handle={"id": task["taskArn"]})
            for server_id, task in zip(server_ids, tasks, strict=False)  # fewer tasks when some failed
        ]
        for index, server_id in enumerate(server_ids[len(tasks) :]):
            failure: FailureTypeDef = failures[min(index, len(failures) - 1)] if failures else {}
            reason = ": ".join(part for part in (failure.get("reason"), failure.get("detail")) if part)
            launched.append(Launched(server_id, failure=reason or "ECS did not start the task"))
        return launched

    def token_for(self, key: str, handle: Handle) -> str:
        return token_for(key, handle["id"])

    @property
    def proxied(self) -> bool:
        """Whether servers sit behind configurable-http-proxy (under ``/user/<task id>/``)."""
        return self.settings.router == "chp"

    def _origins(self) -> Settings:
        """The settings whose origins servers allow: behind the proxy, its own origin too when the operator
        listed origins. The proxy rewrites the Host header (``--change-origin``, infra/binderless.yml), so
        jupyter no longer sees a page of the proxy's origin as same-origin; with ``*`` nothing changes."""
        origins = self.settings.cors_origins
        public = self.settings.proxy_public_url.rstrip("/")
        if not self.proxied or not origins or "*" in origins or not public or public in origins:
            return self.settings
        return self.settings.model_copy(update={"cors_origins": (*origins, public)})

    def _awsvpc(self) -> AwsVpcConfigurationTypeDef:
        config: AwsVpcConfigurationTypeDef = {
            "subnets": list(self.settings.subnets),
            "assignPublicIp": "ENABLED" if self.settings.assign_public_ip else "DISABLED",
        }
        if self.settings.security_groups:  # none given: the VPC's default security group
            config["securityGroups"] = list(self.settings.security_groups)
        return config

    def tasks_of(self, launch: str) -> list[Handle]:
        """ListTasks by startedBy, a page per 100 tasks (a launch has at most 10).

        "When you specify startedBy as the filter, it must be the only filter that you use": no
        desiredStatus, so recently stopped tasks may be among them. The caller describes every
        handle, and a stopped one ends its server with ECS's reason."""
        handles: list[Handle] = []
        token = ""
        with aws_errors("ECS ListTasks"):
            while True:
                request: ListTasksRequestTypeDef = {"cluster": self.settings.cluster, "startedBy": started_by(launch)}
                if token:
                    request["nextToken"] = token
                page = self.ecs.list_tasks(**request)
                handles.extend({"id": arn} for arn in page.get("taskArns", []))
                token = page.get("nextToken", "")
                if not token:
                    return handles

    def stop(self, handle: Handle, reason: str) -> None:
        if not handle.get("id"):
            return
        with aws_errors("ECS StopTask"):
            try:
                self.ecs.stop_task(cluster=self.settings.cluster, task=handle["id"], reason=reason[:255])
            except Exception as exc:
                if not self._already_gone(exc):
                    raise

    @staticmethod
    def _already_gone(exc: Exception) -> bool:
        # ECS forgets stopped tasks after a while and then answers "The referenced task was not found".
        code = error_code(exc)
        return code == "ClientException" or (
            code == "InvalidParameterException" and "not found" in error_message(exc).lower()
        )

    def describe(self, handles: Sequence[Handle]) -> list[TaskState]:
        arns = [handle["id"] for handle in handles if handle.get("id")]
        found: dict[str, Mapping[str, Any]] = {}
        for batch in chunks(arns, 100):
            with aws_errors("ECS DescribeTasks"):
                reply = self.ecs.describe_tasks(cluster=self.settings.cluster, tasks=list(batch))
            # Keyed by task id: a handle may hold the short or the long ARN format.
            found.update((task_id(task["taskArn"]), task) for task in reply.get("tasks", []))
        public_ips = self._public_ips(list(found.values()))
        states = []
        for handle in handles:
            task = found.get(task_id(handle.get("id", "")))
            if task is None:
                states.append(TaskState(dict(handle), "stopped", reason="task not found"))
            else:
                states.append(self._state(task, dict(handle), public_ips))
        return states

    def from_event(self, detail: Mapping[str, Any]) -> TaskState | None:
        """Translate an EventBridge "ECS Task State Change" detail about one of our tasks."""
        cluster = self.settings.cluster
        cluster_arn = str(detail.get("clusterArn", ""))
        if not (cluster_arn == cluster or cluster_arn.endswith(f"/{cluster}")):
            return None
        started = str(detail.get("startedBy", ""))
        if not (started == STARTED_BY or launch_of(started)) or not detail.get("taskArn"):
            return None
        state = self._state(detail, {"id": str(detail["taskArn"])}, self._public_ips([detail]))
        return replace(state, launch=launch_of(str(detail["startedBy"])))

    def _state(self, task: Mapping[str, Any], handle: Handle, public_ips: Mapping[str, str]) -> TaskState:
        status = TASK_STATUS.get(str(task.get("lastStatus", "")), "starting")
        if status == "stopped":
            reason = task.get("stoppedReason") or task.get("stopCode") or "stopped"
            return TaskState(handle, "stopped", reason=str(reason))
        if status == "running":
            url = self._url(eni_details(task), public_ips, str(task.get("taskArn") or handle.get("id", "")))
            if not url:
                # Without an address nobody can reach it yet: still starting, as far as users go.
                return TaskState(handle, "starting", reason="waiting for a network address")
            if not server_answers(task):
                return TaskState(handle, "starting", reason="waiting for the server to answer")
            return TaskState(handle, "running", url=url)
        return TaskState(handle, "starting")

    def _url(self, eni: Mapping[str, str], public_ips: Mapping[str, str], task_arn: str) -> str:
        if self.proxied:  # the proxy, in the VPC, reaches the server's private address under its path
            host = eni.get("privateIPv4Address", "")
            return f"http://{host}:{self.settings.server_port}{base_url_for(task_arn, SERVER_PREFIX)}" if host else ""
        if self.settings.address == "public":
            host = public_ips.get(eni.get("networkInterfaceId", ""), "")
        else:
            host = eni.get("privateIPv4Address", "")
        return f"{self.settings.location_scheme}://{host}:{self.settings.server_port}/" if host else ""

    def _public_ips(self, tasks: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """network interface id -> public IP, for the running tasks among ``tasks``: one EC2 call."""
        if self.settings.address != "public" or self.proxied:
            return {}
        enis = [
            eni_details(task).get("networkInterfaceId", "") for task in tasks if task.get("lastStatus") == "RUNNING"
        ]
        enis = [eni for eni in enis if eni]
        if not enis:
            return {}
        # A filter, not NetworkInterfaceIds: one interface deleted meanwhile must not fail the rest.
        with aws_errors("EC2 DescribeNetworkInterfaces"):
            reply = self.ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": enis}])
        return {
            eni["NetworkInterfaceId"]: eni["Association"]["PublicIp"]
            for eni in reply.get("NetworkInterfaces", [])
            if eni.get("Association", {}).get("PublicIp")
        }
