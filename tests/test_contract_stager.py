"""The Stager contract: what services/stagings.py relies on. One suite (``StagerContract``), run against
ECS task definitions on moto and against local mode; each subclass says how to make its stager, a
spawner of the same platform, and an image that platform can run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chalicelib import errors
from chalicelib.backends.aws import AwsSpawner, AwsStager
from chalicelib.backends.base import EnvironmentSpec, Sidecar, Spawner, Stager, handle_id
from chalicelib.backends.local import LocalSpawner, LocalStager
from tests.conftest import World

HUGE = Sidecar("postgres", "public.ecr.aws/docker/library/postgres:16", cpu=1024, memory=2048)


class StagerContract:
    """Every Stager. Subclasses provide the ``stager``, ``spawner`` and ``image`` fixtures."""

    def test_a_registered_environment_is_what_the_spawner_starts_servers_from(
            self, stager: Stager, spawner: Spawner, image: str) -> None:
        environment = stager.register(EnvironmentSpec("python-demo", image, cpu=1024, memory=2048, source="repo"))
        assert environment  # the store saves it: a non-empty, JSON-able handle
        assert all(isinstance(key, str) and isinstance(value, str) for key, value in environment.items())
        (one,) = spawner.start(environment, ["s-1"], "launch-1", "k" * 48)
        assert not one.failure and handle_id(one.handle)

    def test_registering_the_same_environment_again_gives_a_handle_that_works_too(
            self, stager: Stager, spawner: Spawner, image: str) -> None:
        """A staging retried after a crash registers again (services/stagings.py)."""
        spec = EnvironmentSpec("python-demo", image, cpu=1024, memory=2048)
        stager.register(spec)
        (one,) = spawner.start(stager.register(spec), ["s-1"], "launch-1", "k" * 48)
        assert not one.failure

    def test_services_that_leave_the_notebook_nothing_are_invalid(self, stager: Stager, image: str) -> None:
        with pytest.raises(errors.Invalid):
            stager.register(EnvironmentSpec("python-demo", image, cpu=1024, memory=2048, sidecars=(HUGE,)))


class TestAwsStager(StagerContract):
    @pytest.fixture
    def stager(self, world: World) -> AwsStager:
        return AwsStager(world.settings, ecs=world.ecs)

    @pytest.fixture
    def spawner(self, world: World) -> AwsSpawner:
        return AwsSpawner(world.settings, ecs=world.ecs)

    @pytest.fixture
    def image(self, world: World) -> str:
        return f"{world.settings.ecr_repository_uri}:r2d-requirements-3f3f3f3f3f3f"

    def test_an_invalid_environment_registers_nothing(self, world: World, stager: AwsStager, image: str) -> None:
        with pytest.raises(errors.Invalid):
            stager.register(EnvironmentSpec("python-demo", image, cpu=1024, memory=2048, sidecars=(HUGE,)))
        assert world.ecs.list_task_definitions()["taskDefinitionArns"] == []


class TestLocalStager(StagerContract):
    @pytest.fixture
    def stager(self) -> LocalStager:
        return LocalStager()

    @pytest.fixture
    def spawner(self, local_spawner: LocalSpawner) -> LocalSpawner:
        return local_spawner

    @pytest.fixture
    def image(self, tmp_path: Path) -> str:
        return str(tmp_path)  # an operator's image is a directory, served by this interpreter

    def test_the_environment_runs_the_image_with_this_interpreter(self, stager: LocalStager, image: str) -> None:
        environment = stager.register(EnvironmentSpec("python-demo", image, cpu=1024, memory=2048))
        assert environment == {"path": image, "python": sys.executable}
