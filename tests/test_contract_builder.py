"""The Builder contract: what services/builds.py relies on, whatever builds the images. One suite
(``BuilderContract``), run against CodeBuild + ECR on moto and against local builds (real git).
Subclasses say how to make their adapter and how an image comes to exist already.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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

    def test_states_are_build_statuses(self, builder: Builder, asked: BuildRequest) -> None:
        """The store and the API compare statuses with BuildStatus: a plain string must not leak out."""
        state = builder.start(asked)
        assert isinstance(state.status, BuildStatus) and isinstance(state, BuildState)


def request_for(name: str, repository: str, commit: str) -> BuildRequest:
    return BuildRequest(image_name=f"r2d-{name}-{commit[:12]}", repository=repository, ref="main", commit=commit)


class TestAwsBuilder(BuilderContract):
    @pytest.fixture
    def builder(self, world: World) -> AwsBuilder:
        return AwsBuilder(world.settings, codebuild=world.codebuild, ecr=world.ecr)

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

    def built(self, builder: Builder, asked: BuildRequest) -> None:
        started = builder.start(asked)
        done = wait_for(lambda: (s := builder.poll([started.handle])[0]).status != BuildStatus.pending and s,
                        timeout=60)
        assert done.status == BuildStatus.completed, done.reason
