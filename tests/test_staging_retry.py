"""A staging that failed on a transient error, or was cut off mid-register, is registered again by
the next identical POST /stagings; one that completed is returned as it is."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.models import Staging, StagingCreate, StagingStatus
from chalicelib.services.stagings import STALE_PENDING_STAGING
from tests.conftest import World, auth, body
from tests.helpers import built_image
from tests.test_faults import Killed, failing

ENVIRONMENT = "retried"


def stage(client: Any, image_name: str, **limits: str) -> Any:
    payload = {"image-name": image_name, "environment-name": ENVIRONMENT,
               "limits": limits or {"cpu": "0.5", "memory": "1G"}}
    return client.http.post("/stagings", body=json.dumps(payload), headers=auth())


def status(client: Any) -> dict[str, Any]:
    return dict(body(client.http.get(f"/stagings/{ENVIRONMENT}/status", headers=auth())))


def revisions(world: World) -> list[str]:
    return world.ecs.list_task_definitions(familyPrefix=f"binderless-{ENVIRONMENT}")["taskDefinitionArns"]


def registers(world: World) -> list[int]:
    """Counts the stager's register calls from now on."""
    stager, calls = world.services.stagings.stager, [0]
    original = stager.register

    def register(spec: Any) -> Any:
        calls[0] += 1
        return original(spec)

    stager.register = register  # type: ignore[method-assign]
    return calls


def test_a_staging_that_failed_on_a_transient_error_is_registered_on_the_next_post(client: Any,
                                                                                    world: World) -> None:
    image_name = built_image(client, world)
    with failing(world.ecs, "RegisterTaskDefinition", "ThrottlingException"):
        first = stage(client, image_name)
    assert first.status_code == 503 and first.headers["Retry-After"]
    assert status(client)["status"] == "failed" and "throttled" in status(client)["reason"]
    assert client.http.post(f"/deployments/{ENVIRONMENT}").status_code == 409  # not launchable yet

    again = stage(client, image_name)

    assert again.status_code == 200 and body(again) == {"environment-name": ENVIRONMENT}
    assert status(client) == {"status": "completed"}
    assert len(revisions(world)) == 1
    assert client.http.post(f"/deployments/{ENVIRONMENT}").status_code == 202
    calls = registers(world)
    assert stage(client, image_name).status_code == 200  # completed: returned as it is
    assert calls == [0] and len(revisions(world)) == 1


def test_a_retry_that_fails_again_says_why_and_the_next_one_may_succeed(client: Any, world: World) -> None:
    image_name = built_image(client, world)
    for _ in range(2):
        with failing(world.ecs, "RegisterTaskDefinition", "ServerException", status=500):
            assert stage(client, image_name).status_code == 503
        assert status(client)["status"] == "failed"

    assert stage(client, image_name).status_code == 200
    assert status(client) == {"status": "completed"}


def test_a_different_staging_under_the_name_of_a_failed_one_is_still_a_conflict(client: Any, world: World) -> None:
    image_name = built_image(client, world)
    with failing(world.ecs, "RegisterTaskDefinition", "ThrottlingException"):
        stage(client, image_name)
    calls = registers(world)

    other = stage(client, image_name, cpu="1", memory="2G")

    assert other.status_code == 409 and "another image, limits or services" in body(other)["message"]
    assert calls == [0] and status(client)["status"] == "failed"


def test_a_staging_cut_off_mid_register_is_registered_again_once_its_attempt_is_stale(client: Any,
                                                                                       world: World) -> None:
    image_name = built_image(client, world)
    stager = world.services.stagings.stager
    original = stager.register

    def killed(spec: Any) -> Any:
        raise Killed()

    stager.register = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        stage(client, image_name)
    stager.register = original  # type: ignore[method-assign]
    calls = registers(world)

    assert stage(client, image_name).status_code == 200  # pending, and maybe still registering: left alone
    assert calls == [0] and status(client) == {"status": "pending"}
    world.clock.advance(STALE_PENDING_STAGING - 1)
    stage(client, image_name)
    assert calls == [0]
    world.clock.advance(2)

    assert stage(client, image_name).status_code == 200

    assert calls == [1] and status(client) == {"status": "completed"} and len(revisions(world)) == 1


def test_a_post_while_a_retry_registers_leaves_it_to_that_retry(client: Any, world: World) -> None:
    image_name = built_image(client, world)
    with failing(world.ecs, "RegisterTaskDefinition", "ThrottlingException"):
        stage(client, image_name)
    stager, service = world.services.stagings.stager, world.services.stagings
    original, during = stager.register, []
    request = StagingCreate.model_validate({"image-name": image_name, "environment-name": ENVIRONMENT,
                                            "limits": {"cpu": "0.5", "memory": "1G"}})

    def register(spec: Any) -> Any:
        if not during:  # the same POST arrives while this retry registers
            during.append(service.create(request))
        return original(spec)

    stager.register = register  # type: ignore[method-assign]

    assert stage(client, image_name).status_code == 200

    (concurrent, created), = during
    assert concurrent.status is StagingStatus.pending and not created
    assert status(client) == {"status": "completed"} and len(revisions(world)) == 1


@pytest.mark.parametrize("status_", [StagingStatus.failed, StagingStatus.pending])
def test_of_two_retries_of_the_same_staging_exactly_one_moves_it(world: World, status_: StagingStatus) -> None:
    environments = world.services.store.environments
    staging = Staging(environment_name="e", image_name="i", image="repo:i", cpu=512, memory=1024,
                      created_at=100, attempted_at=100)
    assert environments.create_staging(staging)
    if status_ is StagingStatus.failed:
        staging = environments.finish_staging(staging, status="failed", reason="throttled")
    read_by_both = environments.get_staging("e")
    assert read_by_both is not None and read_by_both.status is status_

    now = 100 + STALE_PENDING_STAGING + 1
    results = [environments.retry_staging(read_by_both, now=now, stale_before=now - STALE_PENDING_STAGING)
               for _ in range(2)]

    winner, loser = results
    assert winner is not None and winner.status is StagingStatus.pending and winner.attempted_at == now
    assert winner.reason == "" and loser is None


def test_a_superseded_attempt_does_not_record_its_outcome(world: World) -> None:
    environments = world.services.store.environments
    first = Staging(environment_name="e", image_name="i", image="repo:i", cpu=512, memory=1024,
                    created_at=100, attempted_at=100)
    assert environments.create_staging(first)
    retry = environments.retry_staging(first, now=1000, stale_before=1000 - STALE_PENDING_STAGING)
    assert retry is not None

    late = environments.finish_staging(first, status="completed", handle={"task_definition": "old"})

    assert late.status is StagingStatus.pending and late.handle == {}
    done = environments.finish_staging(retry, status="completed", handle={"task_definition": "new"})
    assert done.status is StagingStatus.completed and done.handle == {"task_definition": "new"}


def test_a_staging_saved_before_attempts_were_recorded_is_retried_by_its_age(world: World) -> None:
    environments = world.services.store.environments
    old = Staging(environment_name="e", image_name="i", image="repo:i", cpu=512, memory=1024, created_at=100)
    item = {"pk": "ENV#e", "sk": "STAGING", **old.model_dump(mode="json", exclude={"attempted_at"})}
    world.services.store.dynamo.put(item)

    assert environments.retry_staging(old, now=150, stale_before=150 - STALE_PENDING_STAGING) is None
    retried = environments.retry_staging(old, now=1000, stale_before=1000 - STALE_PENDING_STAGING)
    assert retried is not None and retried.attempted_at == 1000
    assert environments.finish_staging(retried, status="completed").status is StagingStatus.completed
