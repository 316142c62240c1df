"""The Spawner contract: what services/servers.py and services/pools.py rely on, whatever runs the
servers. One suite, run against each adapter (the Chalice todo sample's ``class TestDynamoDB(TestTodoDB)``):
``SpawnerContract`` says what must hold, each subclass only how to make its adapter and how its
platform ends a server by itself. ECS is moto here; local servers are real processes.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.backends.aws import AwsSpawner, AwsStager
from chalicelib.backends.base import EnvironmentSpec, Handle, Spawner, TaskState, handle_id
from chalicelib.backends.local import LocalSpawner
from tests.conftest import World
from tests.local_mode import wait_for
from tests.tiny_jupyter import tiny_jupyter

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

KEY = "k" * 48



def state(spawner: Spawner, handle: Handle) -> TaskState:
    (one,) = spawner.describe([handle])
    return one


class SpawnerContract:
    """Every Spawner. Subclasses provide the ``spawner`` and ``environment`` fixtures and ``end``."""

    def end(self, spawner: Spawner, handle: Handle) -> None:
        """The platform ends the server by itself (it crashed, or the platform stopped it)."""
        raise NotImplementedError

    @pytest.fixture
    def gone(self) -> Handle:
        """A handle of this adapter's making for a server that does not exist (any more)."""
        raise NotImplementedError

    def test_start_answers_each_id_in_order_with_a_handle_of_its_own(self, spawner: Spawner,
                                                                      environment: Handle) -> None:
        launched = spawner.start(environment, ["s-1", "s-2", "s-3"], "launch-1", KEY)
        assert [one.server_id for one in launched] == ["s-1", "s-2", "s-3"]
        assert not [one.failure for one in launched if one.failure]
        ids = [handle_id(one.handle) for one in launched]
        assert all(ids) and len(set(ids)) == 3

    def test_a_server_started_alone_has_the_key_as_its_token(self, spawner: Spawner, environment: Handle) -> None:
        (one,) = spawner.start(environment, ["s-1"], "launch-1", KEY)
        assert one.token == KEY  # the caller stored it before the platform answered

    def test_each_server_of_a_batch_has_its_own_token_and_the_caller_can_derive_it(
            self, spawner: Spawner, environment: Handle) -> None:
        launched = spawner.start(environment, ["s-1", "s-2"], "launch-1", KEY)
        tokens = [one.token for one in launched]
        assert len(set(tokens)) == 2 and KEY not in tokens and all(len(token) >= 32 for token in tokens)
        assert [spawner.token_for(KEY, one.handle) for one in launched] == tokens

    def test_a_batch_is_one_to_max_batch_servers(self, spawner: Spawner, environment: Handle) -> None:
        assert 1 <= spawner.max_batch <= 10  # RunTask's count, which the pools plan with
        full = spawner.start(environment, [f"s-{n}" for n in range(spawner.max_batch)], "launch-1", KEY)
        assert all(handle_id(one.handle) for one in full)
        for ids in ([], [f"s-{n}" for n in range(spawner.max_batch + 1)]):
            with pytest.raises(ValueError):
                spawner.start(environment, ids, "launch-2", KEY)

    def test_a_started_server_comes_up_with_a_base_url(self, spawner: Spawner, environment: Handle) -> None:
        (one,) = spawner.start(environment, ["s-1"], "launch-1", KEY)
        running = wait_for(lambda: (s := state(spawner, one.handle)).status == "running" and s, timeout=20)
        assert running.url.startswith(("http://", "https://")) and running.url.endswith("/")
        assert "s-1" not in running.url  # a server id reads its token back (GET /deployments/{env}/{id})
        assert handle_id(running.handle) == handle_id(one.handle)

    def test_describe_answers_in_the_order_asked_and_a_missing_server_is_stopped(
            self, spawner: Spawner, environment: Handle, gone: Handle) -> None:
        first, second = spawner.start(environment, ["s-1", "s-2"], "launch-1", KEY)
        states = spawner.describe([second.handle, gone, first.handle])
        assert [handle_id(state.handle) for state in states] == [handle_id(h) for h in (second.handle, gone,
                                                                                         first.handle)]
        assert states[0].status in ("starting", "running") and states[2].status in ("starting", "running")
        assert states[1].status == "stopped" and states[1].reason
        assert spawner.describe([]) == []

    def test_tasks_of_a_launch_are_its_own_servers_only(self, spawner: Spawner, environment: Handle) -> None:
        mine = spawner.start(environment, ["s-1", "s-2"], "launch-1", KEY)
        (other,) = spawner.start(environment, ["s-3"], "launch-2", KEY)
        assert sorted(handle_id(h) for h in spawner.tasks_of("launch-1")) == sorted(handle_id(o.handle) for o in mine)
        assert [handle_id(h) for h in spawner.tasks_of("launch-2")] == [handle_id(other.handle)]
        assert spawner.tasks_of("launch-3") == []

    def test_stop_ends_the_server_and_stopping_again_or_a_gone_server_is_fine(
            self, spawner: Spawner, environment: Handle, gone: Handle) -> None:
        stopped, kept = spawner.start(environment, ["s-1", "s-2"], "launch-1", KEY)
        spawner.stop(stopped.handle, "deleted")
        wait_for(lambda: state(spawner, stopped.handle).status == "stopped", timeout=10)
        spawner.stop(stopped.handle, "deleted again")
        spawner.stop(gone, "never ours")
        spawner.stop({}, "never started")  # a server whose start failed has no handle
        assert state(spawner, kept.handle).status in ("starting", "running")

    def test_a_server_that_ends_by_itself_is_stopped_with_a_reason(self, spawner: Spawner,
                                                                   environment: Handle) -> None:
        (one,) = spawner.start(environment, ["s-1"], "launch-1", KEY)
        self.end(spawner, one.handle)
        stopped = wait_for(lambda: (s := state(spawner, one.handle)).status == "stopped" and s, timeout=10)
        assert stopped.reason

    def test_events_of_someone_elses_tasks_are_not_ours(self, spawner: Spawner) -> None:
        foreign = {"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/other", "startedBy": "someone",
                   "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/other/0123", "lastStatus": "RUNNING"}
        assert spawner.from_event(foreign) is None


def answer_forgotten_tasks_as_ecs_does(ecs: ECSClient, cluster: str) -> None:
    """StopTask of a task ECS does not know: moto raises a bare Exception (a 500), ECS answers
    InvalidParameterException "The referenced task was not found." (it forgets stopped tasks after a
    while), which is what ``AwsSpawner.stop`` is written for. The client is given ECS's answer."""

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        task = json.loads(params["body"])["task"]
        if ecs.describe_tasks(cluster=cluster, tasks=[task])["tasks"]:
            return None  # moto knows it: let moto answer
        error = {"Code": "InvalidParameterException", "Message": "The referenced task was not found."}
        return AWSResponse("", 400, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    ecs.meta.events.register("before-call.ecs.StopTask", answer)


class TestAwsSpawner(SpawnerContract):
    @pytest.fixture
    def spawner(self, world: World) -> AwsSpawner:
        answer_forgotten_tasks_as_ecs_does(world.ecs, world.settings.cluster)
        return AwsSpawner(world.settings, ecs=world.ecs)

    @pytest.fixture
    def environment(self, world: World) -> Handle:
        spec = EnvironmentSpec("python-demo", f"{world.settings.ecr_repository_uri}:img", cpu=1024, memory=2048)
        return AwsStager(world.settings, ecs=world.ecs).register(spec)

    @pytest.fixture
    def gone(self, world: World) -> Handle:
        return {"id": "arn:aws:ecs:us-east-1:123456789012:task/binderless/00000000000000000000000000000000"}

    def end(self, spawner: Spawner, handle: Handle) -> None:
        assert isinstance(spawner, AwsSpawner)
        spawner.ecs.stop_task(cluster=spawner.settings.cluster, task=handle_id(handle),
                              reason="Essential container in task exited")


class TestLocalSpawner(SpawnerContract):
    @pytest.fixture
    def spawner(self, local_spawner: LocalSpawner) -> LocalSpawner:
        return local_spawner

    @pytest.fixture
    def environment(self, tmp_path: Path) -> Handle:
        return {"path": str(tmp_path), "python": tiny_jupyter(tmp_path)}

    @pytest.fixture
    def gone(self) -> Handle:
        return {"id": "999999999", "port": "1", "url": "http://127.0.0.1:1/user/gone/"}

    def end(self, spawner: Spawner, handle: Handle) -> None:
        os.killpg(int(handle_id(handle)), signal.SIGKILL)

    def test_a_server_is_told_when_it_answers_then_opened_once_at_its_location(
            self, spawner: LocalSpawner, environment: Handle) -> None:
        """A server's first page costs jupyter 25-30 ms and later ones 4 ms (measured), so the spawner
        opens each one's location as soon as it has told that it answers: a pooled server's reader
        gets the later figure (bench: pool hit POST -> location 200, p95 65 -> 36 ms)."""
        told: list[TaskState] = []
        spawner.subscribe(lambda task: told.append(task) or True)
        (launched,) = spawner.start(environment, ["s-1"], "launch-1", KEY)
        requests = spawner.logs / "s-1" / "runtime" / "requests.log"
        location = f"{urllib.parse.urlsplit(launched.handle['url']).path}?token={launched.token}"
        wait_for(lambda: requests.exists() and location in requests.read_text().split(), 10, "the location opened")
        assert [task.status for task in told] == ["running"]
        assert requests.read_text().split().count(location) == 1

    def test_the_tiny_jupyter_answers_only_its_token(self, spawner: LocalSpawner, environment: Handle) -> None:
        """This suite's stand-in for jupyter answers as jupyter does, or the suite would prove nothing."""
        (one,) = spawner.start(environment, ["s-1"], "launch-1", KEY)
        url = wait_for(lambda: (s := state(spawner, one.handle)).status == "running" and s.url)
        for token, status in ((KEY, 200), ("another-token", 403)):
            request = urllib.request.Request(url + "api/status", headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as reply:
                    assert reply.status == status
            except urllib.error.HTTPError as error:
                assert error.code == status
