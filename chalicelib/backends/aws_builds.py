"""Builder on CodeBuild + ECR: repo2docker runs in a CodeBuild project (see buildspec.yml).

Images are tagged with the service's deterministic image name, so an image already in ECR
is the finished build and nothing is started. Build parameters reach the project as
environment variable overrides; the same variables come back in the state-change event,
which is how an event is matched to its image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chalicelib import errors
from chalicelib.backends.aws_common import aws_errors, chunks, domain_error, error_code
from chalicelib.backends.base import BuildEvent, BuildRequest, BuildState, Handle, LogPage
from chalicelib.config import Settings
from chalicelib.lazy_clients import LazyClient
from chalicelib.statuses import BuildStatus

if TYPE_CHECKING:
    from mypy_boto3_codebuild import CodeBuildClient
    from mypy_boto3_codebuild.type_defs import BuildTypeDef
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_logs import CloudWatchLogsClient

# CodeBuild build statuses (API buildStatus and the event's build-status use the same words).
BUILD_STATUS: dict[str, BuildStatus] = {
    "IN_PROGRESS": BuildStatus.pending,
    "SUCCEEDED": BuildStatus.completed,
    "FAILED": BuildStatus.failed,
    "FAULT": BuildStatus.failed,
    "STOPPED": BuildStatus.failed,
    "TIMED_OUT": BuildStatus.failed,
}
NOT_FOUND = "build record not found"
# buildspec.yml's REPO2DOCKER_VERSION (tests/test_buildspec.py checks they agree): GET /versions tells it.
REPO2DOCKER_VERSION = "2026.4.0"
LOG_PAGE_LINES = 500

# (phase type, phase status, context message)
Phase = tuple[str, str, str]


def failure_reason(build_status: str, phases: Iterable[Phase]) -> str:
    """Name the first phase that did not succeed, with CodeBuild's context message if any."""
    for phase_type, phase_status, message in phases:
        if phase_status and phase_status != "SUCCEEDED":
            reason = f"{phase_type} phase {phase_status.lower().replace('_', ' ')}"
            return f"{reason}: {message}" if message else reason
    return f"build {build_status.lower().replace('_', ' ')}"


def _variable(variables: Iterable[Mapping[str, Any]], name: str) -> str:
    return next((str(v.get("value", "")) for v in variables if v.get("name") == name), "")


class AwsBuilder:
    """``Builder`` port on CodeBuild (repo2docker) and ECR."""

    local_repositories = False
    info: Mapping[str, str] = {"repo2docker-version": REPO2DOCKER_VERSION}

    def __init__(self, settings: Settings, *, codebuild: CodeBuildClient | None = None, ecr: ECRClient | None = None,
                 logs_client: CloudWatchLogsClient | None = None):
        self.settings = settings
        self._codebuild = codebuild
        self._ecr = ecr
        self._logs_client = logs_client

    codebuild: LazyClient[CodeBuildClient] = LazyClient("codebuild")
    ecr: LazyClient[ECRClient] = LazyClient("ecr")
    logs_client: LazyClient[CloudWatchLogsClient] = LazyClient("logs")

    def image_uri(self, image_name: str) -> str:
        return f"{self.settings.ecr_repository_uri}:{image_name}"

    def start(self, request: BuildRequest) -> BuildState:
        image = self.image_uri(request.image_name)
        if self._image_exists(request.image_name):
            return BuildState(BuildStatus.completed, image=image)
        variables = {
            "REPOSITORY": request.repository,
            "REF": request.ref,
            "COMMIT": request.commit,
            "IMAGE_NAME": request.image_name,
            "IMAGE_URI": image,
        }
        with aws_errors("CodeBuild StartBuild"):
            reply = self.codebuild.start_build(
                projectName=self.settings.codebuild_project,
                environmentVariablesOverride=[
                    {"name": name, "value": value, "type": "PLAINTEXT"} for name, value in variables.items()
                ],
            )
        return BuildState(BuildStatus.pending, image=image, handle={"id": reply["build"]["id"]})

    def _image_exists(self, image_name: str) -> bool:
        with aws_errors("ECR DescribeImages"):
            try:
                self.ecr.describe_images(
                    repositoryName=self.settings.ecr_repository_name, imageIds=[{"imageTag": image_name}]
                )
            except Exception as exc:
                if error_code(exc) == "ImageNotFoundException":
                    return False
                raise  # a missing repository is the operator's problem: BackendError
        return True

    def poll(self, handles: Sequence[Handle]) -> list[BuildState]:
        ids = [handle["id"] for handle in handles if handle.get("id")]
        found: dict[str, BuildTypeDef] = {}
        for batch in chunks(ids, 100):
            with aws_errors("CodeBuild BatchGetBuilds"):
                reply = self.codebuild.batch_get_builds(ids=list(batch))
            found.update((build["id"], build) for build in reply.get("builds", []))
        return [self._state_of(found.get(handle.get("id", "")), handle) for handle in handles]

    def _state_of(self, build: BuildTypeDef | None, handle: Handle) -> BuildState:
        if build is None:
            return BuildState(BuildStatus.failed, reason=NOT_FOUND, handle=dict(handle))
        phases = [
            (
                str(p.get("phaseType", "")),
                str(p.get("phaseStatus", "")),
                "; ".join(c.get("message") or c.get("statusCode", "") for c in p.get("contexts", [])),
            )
            for p in build.get("phases", [])
        ]
        variables = build.get("environment", {}).get("environmentVariables", [])
        return self._state(build.get("buildStatus", ""), phases, _variable(variables, "IMAGE_NAME"), build["id"])

    def _state(self, build_status: str, phases: Sequence[Phase], image_name: str, build_id: str) -> BuildState:
        # An unknown status is treated as still running: the schedule polls again later.
        status = BUILD_STATUS.get(build_status, BuildStatus.pending)
        reason = failure_reason(build_status, phases) if status is BuildStatus.failed else ""
        image = self.image_uri(image_name) if image_name else ""
        return BuildState(status, image=image, reason=reason, handle={"id": build_id})

    def from_event(self, detail: Mapping[str, Any]) -> BuildEvent | None:
        """Translate an EventBridge "CodeBuild Build State Change" detail."""
        if detail.get("project-name") != self.settings.codebuild_project:
            return None
        info = detail.get("additional-information") or {}
        image_name = _variable(info.get("environment", {}).get("environment-variables", []), "IMAGE_NAME")
        if not image_name:
            return None  # started by hand, not by us: nothing to update
        phases = [
            (
                str(p.get("phase-type", "")),
                str(p.get("phase-status", "")),
                # Events pad empty contexts as ": ".
                "; ".join(str(c) for c in p.get("phase-context") or [] if str(c).strip(": ")),
            )
            for p in info.get("phases", [])
        ]
        state = self._state(str(detail.get("build-status", "")), phases, image_name, str(detail.get("build-id", "")))
        return BuildEvent(image_name, state)

    def logs(self, handle: Handle, cursor: str = "") -> LogPage:
        """The build's CloudWatch Logs stream, where CodeBuild writes repo2docker's output as it runs;
        the cursor is CloudWatch's own forward token. The stream is named once the build has begun logging."""
        build_id = handle.get("id", "")
        if not build_id:
            return LogPage([], cursor)
        with aws_errors("CodeBuild BatchGetBuilds"):
            found = self.codebuild.batch_get_builds(ids=[build_id]).get("builds", [])
        where = found[0].get("logs", {}) if found else {}
        group, stream = where.get("groupName"), where.get("streamName")
        if not group or not stream:
            return LogPage([], cursor)
        after: dict[str, Any] = {"nextToken": cursor} if cursor else {}
        try:
            page = self.logs_client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                                   limit=LOG_PAGE_LINES, **after)
        except Exception as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":  # the stream is named before its first line arrives
                return LogPage([], cursor)
            if code == "InvalidParameterException" and cursor:
                raise errors.BadRequest(f"cursor {cursor!r} is not one this API gave: pass the last reply's "
                                        "cursor") from None
            if not code:
                raise
            raise domain_error(exc, "CloudWatch Logs GetLogEvents") from exc
        lines = [line for event in page.get("events", []) for line in str(event.get("message", "")).splitlines()]
        return LogPage(lines, page.get("nextForwardToken") or cursor)
