"""The seed's whole flow against moto: build -> stage -> deploy -> pool -> list -> delete -> drain."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import World, auth, body
from tests.helpers import REPO, build_event, run_all_starting, staged, task_event, task_of, tick


def post(client: Any, path: str, payload: Any = None, headers: dict[str, str] | None = None) -> Any:
    return client.http.post(path, body=json.dumps(payload) if payload is not None else "",
                            headers=headers if headers is not None else auth())


def tasks_in_cluster(world: World) -> list[str]:
    return world.ecs.list_tasks(cluster="binderless")["taskArns"]


def test_build_is_cached_per_commit_and_completes_on_its_event(client: Any, world: World) -> None:
    world.git.push(REPO)
    first = post(client, "/builds/repos", {"repository": REPO, "dependencies": ["requirements.txt"]}, {})
    again = post(client, "/builds/repos", {"repository": REPO + ".git/"}, {})

    assert first.status_code == 202
    image_name = body(first)["image-name"]
    assert body(again)["image-name"] == image_name
    builds = world.codebuild.list_builds_for_project(projectName="binderless-repo2docker")["ids"]
    assert len(builds) == 1
    status = client.http.get(f"/builds/repos/{image_name}/status", headers=auth())
    assert body(status) == {"status": "pending"}

    build_event(client, world, image_name, "SUCCEEDED")

    assert body(client.http.get(f"/builds/repos/{image_name}/status", headers=auth())) == {"status": "completed"}
    info = body(client.http.get(f"/builds/repos/{image_name}"))
    assert info["repository"] == REPO and info["dependencies"] == ["requirements.txt"]
    assert info["commit"] == world.git.resolve(REPO, "HEAD")
    found = client.http.get(f'/builds/repos?repository="{REPO}"')
    assert body(found)["image-name"] == image_name


def test_a_new_commit_is_a_new_image_and_a_failed_build_says_why(client: Any, world: World) -> None:
    world.git.push(REPO)
    first = body(post(client, "/builds/repos", {"repository": REPO}))["image-name"]
    build_event(client, world, first, "FAILED")
    reply = body(client.http.get(f"/builds/repos/{first}/status", headers=auth()))
    assert reply["status"] == "failed" and reply["reason"]

    world.git.push(REPO)  # a new commit on HEAD
    second = body(post(client, "/builds/repos", {"repository": REPO}))["image-name"]
    assert second != first


def test_an_image_already_in_ecr_completes_without_building(client: Any, world: World) -> None:
    world.git.push(REPO)
    from chalicelib.services.builds import image_name_for

    image_name = image_name_for(REPO, world.git.resolve(REPO, "HEAD"))
    world.ecr.put_image(repositoryName="binderless", imageTag=image_name,
                        imageManifest=json.dumps({"schemaVersion": 2, "layers": [],
                        "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}))

    reply = post(client, "/builds/repos", {"repository": REPO})

    assert reply.status_code == 200 and body(reply)["status"] == "completed"
    assert world.codebuild.list_builds_for_project(projectName="binderless-repo2docker")["ids"] == []


def test_staging_registers_a_fargate_task_definition(client: Any, world: World) -> None:
    environment = staged(client, world, cpu="0.5", memory="1G")

    info = body(client.http.get(f"/stagings/{environment}", headers=auth()))
    assert info["status"] == "completed"
    assert body(client.http.get(f"/stagings/{environment}/status", headers=auth())) == {"status": "completed"}
    definition = world.ecs.describe_task_definition(taskDefinition=f"binderless-{environment}")["taskDefinition"]
    assert (definition["cpu"], definition["memory"]) == ("512", "1024")
    assert definition["requiresCompatibilities"] == ["FARGATE"] and definition["networkMode"] == "awsvpc"
    notebook = definition["containerDefinitions"][0]
    assert notebook["image"].endswith(":" + info["image-name"])


def test_cold_deploy_gets_its_location_from_the_task_event(client: Any, world: World) -> None:
    environment = staged(client, world)

    launched = post(client, f"/deployments/{environment}", headers={})
    assert launched.status_code == 202
    server_id = body(launched)["id"]
    assert "location" not in body(launched)
    assert body(client.http.get(f"/deployments/{environment}/{server_id}"))["status"] == "starting"

    task_event(client, world, task_of(world, environment, server_id), "RUNNING")

    reply = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert reply["status"] == "running"
    assert reply["location"].startswith("http://") and ":8888/?token=" in reply["location"]
    token = reply["location"].split("?token=")[1]
    assert len(token) >= 32
    assert body(client.http.get(f"/pools/{environment}")) == {"running": 1, "available": 0, "starting": 0,
                                                                "size": 0, "minPool": 0}


def test_a_delete_that_an_event_overtakes_still_stops_the_server(client: Any, world: World) -> None:
    """The server read for a DELETE may change before the DELETE writes: its task's first event (or,
    locally, its readiness) lands in between. The DELETE stops what the server has become, not a 500."""
    environment = staged(client, world)
    server_id = body(post(client, f"/deployments/{environment}", headers={}))["id"]
    stale = world.services.store.servers.get(environment, server_id)
    assert stale is not None and stale.state.value == "starting"
    task = task_of(world, environment, server_id)
    task_event(client, world, task, "RUNNING")  # records the task and its address: the stored server moved

    stopped = world.services.deployments.stop(stale)

    assert stopped.state.value == "stopping" and stopped.handle  # the fresh server, with its task
    (described,) = world.ecs.describe_tasks(cluster=world.settings.cluster, tasks=[task])["tasks"]
    assert described["desiredStatus"] == "STOPPED"  # and its task was asked to stop


def test_pool_fills_hands_out_at_once_and_refills(client: Any, world: World) -> None:
    environment = staged(client, world)

    resized = post(client, f"/pools/{environment}", {"size": 3})
    assert body(resized) == {"running": 0, "available": 0, "starting": 3, "size": 3, "minPool": 3}
    assert len(tasks_in_cluster(world)) == 3
    run_all_starting(client, world, environment)
    assert body(client.http.get(f"/pools/{environment}"))["available"] == 3

    claimed = post(client, f"/deployments/{environment}", headers={})

    assert claimed.status_code == 201
    location = body(claimed)["location"]
    assert "?token=" in location
    assert body(client.http.get(f"/pools/{environment}")) == {"running": 1, "available": 2, "starting": 0,
                                                                "size": 3, "minPool": 3}
    tick(client)
    assert body(client.http.get(f"/pools/{environment}")) == {"running": 1, "available": 2, "starting": 1,
                                                                "size": 3, "minPool": 3}
    assert len(tasks_in_cluster(world)) == 4


def test_list_delete_and_drain(client: Any, world: World) -> None:
    environment = staged(client, world)
    post(client, f"/pools/{environment}", {"size": 2})
    run_all_starting(client, world, environment)
    server_id = body(post(client, f"/deployments/{environment}", headers={}))["id"]

    listed = body(client.http.get(f"/deployments/{environment}", headers=auth()))
    assert [s["id"] for s in listed if s["status"] == "running"] == [server_id]
    assert "token" not in json.dumps(listed)

    deleted = client.http.delete(f"/deployments/{environment}/{server_id}", headers=auth())
    assert deleted.status_code == 202 and body(deleted)["status"] == "stopping"
    task_arn = task_of(world, environment, server_id)
    stopped = world.ecs.describe_tasks(cluster="binderless", tasks=[task_arn])["tasks"][0]
    assert stopped["desiredStatus"] == "STOPPED"
    task_event(client, world, task_arn, "STOPPED", "Task stopped by user")
    gone = client.http.get(f"/deployments/{environment}/{server_id}")
    assert gone.status_code == 410 and "stopped" in body(gone)["message"]
    assert body(client.http.get(f"/pools/{environment}"))["running"] == 0

    drained = client.http.delete(f"/pools/{environment}", headers=auth())

    assert body(drained) == {"running": 0, "available": 0, "starting": 0, "size": 0, "minPool": 0}
    assert environment not in body(client.http.get("/pools", headers=auth()))
    idle = [s for s in world.services.store.servers.live(environment) if s.state.value != "stopping"]
    assert idle == []


def test_an_operator_approved_image_stages_like_a_completed_build(client: Any, world: World) -> None:
    image = "public.ecr.aws/jupyter/scipy-notebook:2024-10-07"
    registered = post(client, "/builds/images", {"image-name": "scipy", "image": image})
    assert registered.status_code == 201

    assert body(client.http.get("/builds/repos/scipy")) == {"image-name": "scipy", "status": "completed",
                                                            "image": image}
    staged_env = post(client, "/stagings", {"image-name": "scipy", "environment-name": "thebe-scipy"})
    assert body(staged_env) == {"environment-name": "thebe-scipy"}
    definition = world.ecs.describe_task_definition(taskDefinition="binderless-thebe-scipy")["taskDefinition"]
    assert definition["containerDefinitions"][0]["image"] == image
    assert post(client, "/deployments/thebe-scipy", headers={}).status_code == 202
    # the same staging again is the same environment; a different one under that name is refused
    assert post(client, "/stagings", {"image-name": "scipy", "environment-name": "thebe-scipy"}).status_code == 200
    clash = post(client, "/stagings", {"image-name": "scipy", "environment-name": "thebe-scipy",
                                       "limits": {"cpu": 2}})
    assert clash.status_code == 409


def test_a_staging_with_services_adds_sidecars(client: Any, world: World) -> None:
    from tests.helpers import built_image

    image_name = built_image(client, world)
    reply = post(client, "/stagings", {"image-name": image_name, "limits": {"cpu": 1, "memory": "2G"},
                                       "services": [{"name": "postgres", "version": 16,
                                                     "params": {"database": "lab"}}]})
    environment = body(reply)["environment-name"]

    info = body(client.http.get(f"/stagings/{environment}", headers=auth()))
    assert info["limits"] == {"cpu": "1", "memory": "2G"}
    assert info["services"] == [{"name": "postgres", "version": "16", "params": {"database": "lab"}}]
    containers = world.ecs.describe_task_definition(
        taskDefinition=f"binderless-{environment}")["taskDefinition"]["containerDefinitions"]
    sidecar = next(c for c in containers if c["name"] == "postgres")
    assert {"name": "POSTGRES_DB", "value": "lab"} in sidecar["environment"]


def test_staging_a_build_that_is_not_finished_is_a_conflict(client: Any, world: World) -> None:
    world.git.push(REPO)
    image_name = body(post(client, "/builds/repos", {"repository": REPO}))["image-name"]
    reply = post(client, "/stagings", {"image-name": image_name})
    assert reply.status_code == 409 and "still building" in body(reply)["message"]


def test_browsers_may_call_the_api_from_other_origins_and_curl_d_bodies_work(client: Any, world: World) -> None:
    world.git.push(REPO)
    reply = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}),
                             headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://a.org"})
    assert reply.status_code == 202
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in reply.headers["Access-Control-Allow-Headers"]
