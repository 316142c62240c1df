"""The v1 seed's vocabulary, as its examples use it: bindings declare a binder (built, then staged under
its name), binders launch it, pools answer ``minPool``. On moto through the app, then once over real
HTTP in local mode with the seed's trailing slashes and ``/api/`` prefix."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from chalicelib.models import Binding
from tests.conftest import World, auth, body
from tests.helpers import REPO, build_event, pool_of, run_all_starting, task_event, task_of
from tests.local_mode import LocalMode, call, local_mode, wait_for
from tests.local_repo import commit, make_repository
from tests.test_round_trips import calls_of

NAME = "codeneuro-notebooks"
BINDING = "/bindings/CodeNeuro/notebooks/"
DECLARATION = {"name": NAME, "repo": REPO, "requirements": "repo/requirements.txt", "notebooks": "repo/notebooks",
               "services": [{"name": "postgres", "version": "16", "params": {"database": "notebooks"}}]}


def post(client: Any, path: str, payload: Any = None, headers: dict[str, str] | None = None) -> Any:
    return client.http.post(path, body=json.dumps(payload) if payload is not None else "",
                            headers=auth() if headers is None else headers)


def bind(client: Any, world: World, declaration: dict[str, Any] = DECLARATION, path: str = BINDING) -> Any:
    world.git.push(declaration["repo"])
    return post(client, path, declaration)


def builds_started(world: World) -> list[str]:
    return world.codebuild.list_builds_for_project(projectName=world.settings.codebuild_project)["ids"]


def tasks(world: World) -> list[str]:
    return world.ecs.list_tasks(cluster=world.settings.cluster)["taskArns"]


def test_a_binding_builds_its_repo_then_stages_it_under_its_name(client: Any, world: World) -> None:
    created = bind(client, world)
    assert created.status_code == 201, created.body
    reply = body(created)
    assert {k: reply[k] for k in DECLARATION} == DECLARATION  # the declaration as POSTed
    assert reply["status"] == "pending" and "building" in reply["reason"]
    assert reply["ignored"] == ["requirements", "notebooks"]  # said, not faked
    assert len(builds_started(world)) == 1
    assert body(client.http.get(BINDING, headers=auth())) == reply

    build_event(client, world, reply["image-name"], "SUCCEEDED")

    got = body(client.http.get("/bindings/codeneuro/NOTEBOOKS", headers=auth()))  # any case, no slash
    assert got["status"] == "completed" and "reason" not in got
    assert {k: got[k] for k in DECLARATION} == DECLARATION
    staging = body(client.http.get(f"/stagings/{NAME}", headers=auth()))
    assert staging["image-name"] == reply["image-name"] and staging["status"] == "completed"
    assert staging["services"] == DECLARATION["services"]
    assert staging["limits"] == {"cpu": "1", "memory": "2G"}  # the operator's defaults


def test_a_binder_launches_cold_and_its_id_gives_its_location(client: Any, world: World) -> None:
    image = body(bind(client, world))["image-name"]
    build_event(client, world, image, "SUCCEEDED")

    launched = post(client, "/binders/CodeNeuro-notebooks/", headers={})  # the seed's own URL, anonymous
    assert launched.status_code == 202, launched.body
    server_id = body(launched)["id"]
    assert "location" not in body(launched)
    assert "location" not in body(client.http.get(f"/binders/{NAME}/{server_id}/"))

    task_event(client, world, task_of(world, NAME, server_id), "RUNNING")

    got = body(client.http.get(f"/binders/{NAME}/{server_id}"))
    assert got["id"] == server_id and "?token=" in got["location"]
    assert client.http.get(f"/binders/{NAME}/{'0' * 32}").status_code == 404


def test_a_binder_still_building_says_so_and_starts_nothing(client: Any, world: World) -> None:
    bind(client, world)

    for launch in (post(client, f"/binders/{NAME}", headers={}), client.http.get(f"/binders/{NAME}", headers=auth()),
                   client.http.put(f"/pools/{NAME}", body=json.dumps({"minPool": 1}), headers=auth())):
        assert launch.status_code == 409, launch.body
        assert body(launch)["error"] == "Conflict" and "still building" in body(launch)["message"]
        assert launch.headers["Retry-After"] == "10"
    assert tasks(world) == []
    assert client.http.get(f"/stagings/{NAME}", headers=auth()).status_code == 404
    assert post(client, "/binders/nobody-declared-this", headers={}).status_code == 404


def test_a_failed_build_is_said_and_a_new_post_builds_the_new_commit(client: Any, world: World) -> None:
    first = body(bind(client, world))["image-name"]
    build_event(client, world, first, "FAILED")

    failed = body(client.http.get(BINDING, headers=auth()))
    assert failed["status"] == "failed" and "build failed" in failed["reason"]
    refused = post(client, f"/binders/{NAME}", headers={})
    assert refused.status_code == 409 and "build failed" in body(refused)["message"]
    assert "Retry-After" not in refused.headers

    again = bind(client, world)  # a new commit on HEAD, the same declaration
    assert again.status_code == 200 and body(again)["status"] == "pending"
    assert body(again)["image-name"] != first
    assert body(client.http.get(BINDING, headers=auth()))["image-name"] == body(again)["image-name"]
    assert len(builds_started(world)) == 2


def test_the_same_declaration_is_idempotent_and_another_is_refused(client: Any, world: World) -> None:
    first = bind(client, world)
    same = post(client, "/bindings/codeneuro/notebooks", {**DECLARATION, "repo": REPO + " "})
    assert same.status_code == 200 and body(same) == body(first)
    changed = post(client, BINDING, {**DECLARATION, "notebooks": "repo/other"})
    assert changed.status_code == 409 and "another declaration" in body(changed)["message"]
    taken = post(client, "/bindings/someone/else", {**DECLARATION, "repo": REPO})
    assert taken.status_code == 409 and "is taken" in body(taken)["message"]
    assert client.http.head("/bindings/someone/else", headers=auth()).status_code == 404
    assert body(client.http.get(BINDING, headers=auth()))["notebooks"] == "repo/notebooks"
    assert len(builds_started(world)) == 1


def test_a_name_a_v2_environment_holds_is_refused(client: Any, world: World) -> None:
    image = body(bind(client, world))["image-name"]
    build_event(client, world, image, "SUCCEEDED")
    staged = post(client, "/stagings", {"image-name": image, "environment-name": "taken-by-v2"})
    assert staged.status_code == 201

    refused = post(client, "/bindings/other/repo", {"name": "taken-by-v2", "repo": REPO})
    assert refused.status_code == 409 and "taken-by-v2" in body(refused)["message"]
    assert client.http.head("/bindings/other/repo", headers=auth()).status_code == 404


def test_head_tells_whether_a_binding_exists(client: Any, world: World) -> None:
    bind(client, world)
    for path in (BINDING, "/bindings/codeneuro/notebooks"):
        there = client.http.head(path, headers=auth())
        assert there.status_code == 200 and not there.body
    assert client.http.head("/bindings/CodeNeuro/other", headers=auth()).status_code == 404
    assert client.http.head(BINDING).status_code == 401  # as GET: a stagings token


@pytest.mark.parametrize(("path", "payload", "status", "said"), [
    (BINDING, None, 400, "needs a JSON body"),
    (BINDING, "{not json", 400, "not valid JSON"),
    (BINDING, [DECLARATION], 400, "JSON object"),
    (BINDING, {**DECLARATION, "ref": "main"}, 422, "ref: unknown field"),
    (BINDING, {"repo": REPO}, 422, "name"),
    (BINDING, {**DECLARATION, "name": "CodeNeuro-Notebooks"}, 422, "name"),
    (BINDING, {**DECLARATION, "repo": "http://github.com/CodeNeuro/notebooks"}, 400, "https"),
    (BINDING, {**DECLARATION, "services": [{"name": "spark", "version": "1.4.1"}]}, 422, "spark"),
    (BINDING, {**DECLARATION, "services": [{"name": "postgres", "version": "16", "params": {"x": "1"}}]}, 422, "'x'"),
    ("/bindings/-bad/notebooks", DECLARATION, 422, "org and a repo"),
])
def test_bad_input_is_refused_and_changes_nothing(client: Any, world: World, path: str, payload: Any, status: int,
                                                  said: str) -> None:
    world.git.push(REPO)
    raw = payload if isinstance(payload, str) else json.dumps(payload) if payload is not None else ""
    refused = client.http.post(path, body=raw, headers=auth())
    assert refused.status_code == status, refused.body
    assert set(body(refused)) == {"error", "message"} and said in body(refused)["message"]
    assert client.http.head(BINDING, headers=auth()).status_code == 404
    assert builds_started(world) == []


def test_a_binders_pool_answers_minpool_and_hands_out_ready_servers(client: Any, world: World) -> None:
    build_event(client, world, body(bind(client, world))["image-name"], "SUCCEEDED")

    # No GET since the build completed: the pool's PUT stages the binder first.
    resized = client.http.put(f"/pools/{NAME}", body=json.dumps({"minPool": 2}), headers=auth())
    assert resized.status_code == 200, resized.body
    assert body(resized)["minPool"] == body(resized)["size"] == 2
    run_all_starting(client, world, NAME)

    launched = post(client, f"/binders/{NAME}/", headers={})
    assert launched.status_code == 201 and set(body(launched)) >= {"id", "location"}
    assert pool_of(client, world, NAME) == {"running": 1, "available": 1, "starting": 0, "size": 2, "minPool": 2}
    assert body(client.http.get("/pools", headers=auth()))[NAME]["minPool"] == 2


def test_only_an_admin_sees_which_servers_a_binder_runs(client: Any, world: World) -> None:
    build_event(client, world, body(bind(client, world))["image-name"], "SUCCEEDED")
    server_id = body(post(client, f"/binders/{NAME}", headers={}))["id"]
    task_event(client, world, task_of(world, NAME, server_id), "RUNNING")

    listed = body(client.http.get(f"/binders/{NAME}/", headers=auth()))
    assert [(s["id"], s["uri"]) for s in listed] == [(server_id, f"/binders/{NAME}/{server_id}")]
    assert listed[0]["location"] and "token" not in listed[0]["location"]  # a list never hands out tokens

    plain, _ = world.services.auth.create_token("launcher", ["deployments"])
    seen = body(client.http.get(f"/binders/{NAME}", headers=auth(plain)))
    assert seen == [{"status": "running"}]
    assert client.http.get(f"/binders/{NAME}").status_code == 401


def test_a_retried_launch_with_its_idempotency_key_gets_the_same_server(client: Any, world: World) -> None:
    build_event(client, world, body(bind(client, world))["image-name"], "SUCCEEDED")
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first, again = (post(client, f"/binders/{NAME}", headers=key) for _ in range(2))
    assert first.status_code == again.status_code == 202
    assert body(first)["id"] == body(again)["id"] and len(tasks(world)) == 1


@pytest.mark.settings(max_servers_per_client=1)
def test_an_anonymous_callers_limits_apply_to_binders_as_to_deployments(client: Any, world: World) -> None:
    build_event(client, world, body(bind(client, world))["image-name"], "SUCCEEDED")
    assert post(client, f"/binders/{NAME}", headers={}).status_code == 202
    refused = post(client, f"/binders/{NAME}", headers={})
    assert refused.status_code == 429 and body(refused)["error"] == "QuotaExceeded" and refused.headers["Retry-After"]
    assert len(tasks(world)) == 1
    assert post(client, f"/binders/{NAME}").status_code == 202  # a token holder is not that client


def test_declaring_a_binding_takes_a_stagings_token(client: Any, world: World) -> None:
    world.git.push(REPO)
    assert post(client, BINDING, DECLARATION, headers={}).status_code == 401
    builder, _ = world.services.auth.create_token("builder", ["builds"])
    assert post(client, BINDING, DECLARATION, headers=auth(builder)).status_code == 403
    stager, _ = world.services.auth.create_token("stager", ["stagings"])
    assert post(client, BINDING, DECLARATION, headers=auth(stager)).status_code == 201
    assert client.http.get(BINDING).status_code == 401


def test_a_binding_and_its_name_are_written_together_or_not_at_all(world: World) -> None:
    store = world.services.store.bindings
    first = Binding(path="CodeNeuro/notebooks", name=NAME, declaration=DECLARATION, image_name="image-1")
    assert store.create(first)
    assert not store.create(first.model_copy(update={"path": "someone/else"}))  # the name is taken
    assert store.get("someone/else") is None and store.by_name(NAME) == first
    assert not store.create(first.model_copy(update={"name": "another-name"}))  # the path is taken
    assert store.by_name("another-name") is None

    moved = store.repoint(first, "image-2")
    assert moved is not None and store.get("codeneuro/NOTEBOOKS") == store.by_name(NAME) == moved
    assert store.repoint(first, "image-3") is None  # from a stale read: another request moved it first
    assert store.by_name(NAME) == moved


def test_head_is_one_read(client: Any, world: World) -> None:
    bind(client, world)
    assert calls_of(world, lambda: client.http.head(BINDING, headers=auth())) == {"GetItem": 1}


# Over real HTTP: local mode, the seed's paths with trailing slashes and the /api/ prefix.

LOCAL_ADMIN = "v1-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("v1-local"), LOCAL_ADMIN) as mode:
        yield mode


def test_the_seeds_flow_over_http_under_api_with_trailing_slashes(local: LocalMode, tmp_path: Path) -> None:
    repository = tmp_path / "notebooks"
    make_repository(repository)
    declaration = {"name": "local-notebooks", "repo": str(repository), "notebooks": "repo/"}
    created = local.api("POST", "/api/bindings/Local/notebooks/", declaration)
    assert created.status == 201, created.body
    assert local.api("HEAD", "/api/bindings/local/notebooks/").status == 200
    assert local.api("HEAD", "/api/bindings/local/missing/").status == 404
    assert local.api("HEAD", "/api/bindings/local/notebooks/", admin=False).status == 401

    done = wait_for(lambda: (b := local.api("GET", "/api/bindings/Local/notebooks/").body)["status"] != "pending"
                    and b, 60, "the binding is built and staged")
    assert done["status"] == "completed", f"{done}\n{local.output()}"
    assert done["ignored"] == ["notebooks"]

    commit(repository, {"more.py": "print(2)\n"})  # a new commit: the binding keeps the image it was built as
    again = local.api("POST", "/api/bindings/local/notebooks/", declaration)
    assert again.status == 200 and again.body["image-name"] == done["image-name"]

    launched = local.api("POST", "/api/binders/local-notebooks/", admin=False)
    assert launched.status in (201, 202), launched.body
    server_id = launched.body["id"]
    location = wait_for(lambda: local.api("GET", f"/api/binders/local-notebooks/{server_id}/",
                                          admin=False).body.get("location"), 30, "the binder gets a location")
    url, token = location.split("?token=")
    assert call("GET", f"{url}api/status?token={token}").status == 200  # a jupyter server answers
    listed = local.api("GET", "/api/binders/local-notebooks/").body
    assert [s["uri"] for s in listed] == [f"/binders/local-notebooks/{server_id}"]
    assert local.api("GET", "/api/pools/local-notebooks/").body["minPool"] == 0
    assert local.api("DELETE", f"/api/deployments/local-notebooks/{server_id}/").status in (200, 202)
