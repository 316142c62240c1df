"""The Builder contract: what services/builds.py relies on, whatever builds the images. One suite
(``BuilderContract``), run against CodeBuild + ECR on moto and against local builds (real git).
Subclasses say how to make their adapter and how an image comes to exist already.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib import errors
from chalicelib.backends.aws import AwsBuilder
from chalicelib.backends.base import Builder, BuildRequest, BuildState, Handle, handle_id
from chalicelib.backends.local import LocalBuilder
from chalicelib.config import Settings
from chalicelib.statuses import BuildStatus
from tests.conftest import World
from tests.local_mode import wait_for
from tests.local_repo import make_repository


class BuilderContract:
    """Every Builder. Subclasses provide the ``builder``, ``asked``, ``other`` and ``gone`` fixtures and ``built``."""

    def built(self, builder: Builder, asked: BuildRequest) -> None:
        """Make ``asked``'s image exist, as an earlier build would have left it."""
        raise NotImplementedError

    def logged(self, builder: Builder, handle: Handle) -> list[str]:
        """Let the build of ``handle`` log what it logs (to its end); returns those lines."""
        raise NotImplementedError

    def test_an_image_not_built_yet_starts_a_build_the_caller_can_poll(self, builder: Builder,
                                                                       asked: BuildRequest) -> None:
        started = builder.start(asked)
        assert started.status == BuildStatus.pending and handle_id(started.handle) and started.image
        (polled,) = builder.poll([started.handle])
        assert handle_id(polled.handle) == handle_id(started.handle)
        assert polled.status in tuple(BuildStatus)

    def test_an_image_that_exists_is_completed_at_once(self, builder: Builder, asked: BuildRequest) -> None:
        self.built(builder, asked)
        again = builder.start(asked)
        assert again.status == BuildStatus.completed and again.image  # what the staging will run

    def test_poll_answers_in_the_order_asked_and_a_build_nobody_knows_failed(
            self, builder: Builder, asked: BuildRequest, other: BuildRequest, gone: Handle) -> None:
        first, second = builder.start(asked), builder.start(other)
        states = builder.poll([second.handle, gone, first.handle])
        assert [handle_id(state.handle) for state in states] == [handle_id(h) for h in (second.handle, gone,
                                                                                         first.handle)]
        assert states[1].status == BuildStatus.failed and states[1].reason  # a reason the user reads
        assert builder.poll([]) == []

    def test_events_of_someone_elses_builds_are_not_ours(self, builder: Builder) -> None:
        foreign = {"project-name": "another-project", "build-status": "SUCCEEDED", "build-id": "another-project:1",
                   "additional-information": {"environment": {"environment-variables": []}}}
        assert builder.from_event(foreign) is None

    def test_a_builds_log_reads_in_pages_from_a_cursor_and_no_line_comes_twice(self, builder: Builder,
                                                                             asked: BuildRequest) -> None:
        started = builder.start(asked)
        logged = self.logged(builder, started.handle)
        read: list[str] = []
        cursor = ""
        for _ in range(1000):
            page = builder.logs(started.handle, cursor)
            if not page.lines:
                break
            read, cursor = read + page.lines, page.cursor
        assert logged and read == logged
        assert builder.logs(started.handle, cursor).lines == []  # caught up: a client polls with the same cursor
        assert builder.logs(started.handle, cursor).cursor == cursor
        assert builder.logs(started.handle).lines == logged[:len(builder.logs(started.handle).lines)]  # from the top

    def test_a_cursor_it_did_not_give_is_a_bad_request_and_an_unknown_build_has_no_log(
            self, builder: Builder, asked: BuildRequest, gone: Handle) -> None:
        started = builder.start(asked)
        self.logged(builder, started.handle)
        with pytest.raises(errors.BadRequest):
            builder.logs(started.handle, "not-a-cursor")
        assert builder.logs(gone).lines == []

    def test_it_says_what_builds_the_images(self, builder: Builder) -> None:
        assert builder.info and all(isinstance(value, str) and value for value in builder.info.values())

    def test_states_are_build_statuses(self, builder: Builder, asked: BuildRequest) -> None:
        """The store and the API compare statuses with BuildStatus: a plain string must not leak out."""
        state = builder.start(asked)
        assert isinstance(state.status, BuildStatus) and isinstance(state, BuildState)


def request_for(name: str, repository: str, commit: str) -> BuildRequest:
    return BuildRequest(image_name=f"r2d-{name}-{commit[:12]}", repository=repository, ref="main", commit=commit)


class CodeBuildWithLogs:
    """moto's CodeBuild with what real CodeBuild reports and moto leaves out: where a build logs. The API's
    LogsLocation: "groupName: The name of the CloudWatch Logs group for the build logs. streamName: The
    name of the CloudWatch Logs stream for the build logs." CodeBuild names the stream after the build's id."""

    def __init__(self, codebuild: Any, group: str) -> None:
        self._codebuild, self.group = codebuild, group

    def __getattr__(self, name: str) -> Any:
        return getattr(self._codebuild, name)

    def batch_get_builds(self, ids: list[str]) -> dict[str, Any]:
        reply: dict[str, Any] = self._codebuild.batch_get_builds(ids=ids)
        for build in reply.get("builds", []):
            build["logs"] = {**build.get("logs", {}), "groupName": self.group,
                             "streamName": build["id"].partition(":")[2]}
        return reply


class TestAwsBuilder(BuilderContract):
    @pytest.fixture
    def builder(self, world: World) -> AwsBuilder:
        logs = boto3.client("logs", region_name=world.settings.region)
        group = f"/aws/codebuild/{world.settings.codebuild_project}"
        logs.create_log_group(logGroupName=group)
        return AwsBuilder(world.settings, codebuild=CodeBuildWithLogs(world.codebuild, group),  # type: ignore[arg-type]
                          ecr=world.ecr, logs_client=logs)

    def logged(self, builder: Builder, handle: Handle) -> list[str]:
        """What repo2docker says, as CodeBuild's agent writes it: one event per line, many lines a second."""
        assert isinstance(builder, AwsBuilder)
        lines = [f"Step {n}/1200 : RUN pip install package-{n}" for n in range(1200)]  # more than a page
        logs, stream = builder.logs_client, handle_id(handle).partition(":")[2]
        logs.create_log_stream(logGroupName=f"/aws/codebuild/{builder.settings.codebuild_project}",
                               logStreamName=stream)
        now = int(time.time() * 1000)  # CloudWatch drops events more than 14 days old
        for start in range(0, len(lines), 500):
            logs.put_log_events(logGroupName=f"/aws/codebuild/{builder.settings.codebuild_project}",
                                logStreamName=stream, logEvents=[{"timestamp": now + start + n,
                                                                  "message": line}
                                                                 for n, line in enumerate(lines[start:start + 500])])
        return lines

    @pytest.fixture
    def asked(self) -> BuildRequest:
        return request_for("requirements", "https://github.com/binder-examples/requirements", "3f" * 20)

    @pytest.fixture
    def other(self) -> BuildRequest:
        return request_for("conda", "https://github.com/binder-examples/conda", "4e" * 20)

    @pytest.fixture
    def gone(self) -> Handle:
        return {"id": "binderless-repo2docker:00000000-0000-0000-0000-000000000000"}

    def built(self, builder: Builder, asked: BuildRequest) -> None:
        assert isinstance(builder, AwsBuilder)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"})
        builder.ecr.put_image(repositoryName=builder.settings.ecr_repository_name, imageManifest=manifest,
                              imageTag=asked.image_name)


class TestLocalBuilder(BuilderContract):
    @pytest.fixture
    def builder(self, tmp_path: Path) -> LocalBuilder:
        return LocalBuilder(Settings(backend="local", local_dir=str(tmp_path / "work")))

    @pytest.fixture
    def asked(self, tmp_path: Path) -> BuildRequest:
        commit = make_repository(tmp_path / "requirements")
        return request_for("requirements", f"file://{tmp_path / 'requirements'}", commit)

    @pytest.fixture
    def other(self, tmp_path: Path) -> BuildRequest:
        commit = make_repository(tmp_path / "conda", {"environment.yml": "dependencies: []\n"})
        return request_for("conda", str(tmp_path / "conda"), commit)

    @pytest.fixture
    def gone(self, tmp_path: Path) -> Handle:
        return {"id": str(tmp_path / "work" / "builds" / "never-built")}

    def logged(self, builder: Builder, handle: Handle) -> list[str]:
        wait_for(lambda: builder.poll([handle])[0].status != BuildStatus.pending, timeout=60)
        lines = (Path(handle_id(handle)) / "build.log").read_text().splitlines()
        assert "--- git clone" in lines and any(line.startswith("Cloning into") for line in lines)  # git's own words
        return lines

    def built(self, builder: Builder, asked: BuildRequest) -> None:
        started = builder.start(asked)
        done = wait_for(lambda: (s := builder.poll([started.handle])[0]).status != BuildStatus.pending and s,
                        timeout=60)
        assert done.status == BuildStatus.completed, done.reason
