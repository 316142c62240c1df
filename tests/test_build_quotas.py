"""Builds: a rate limit per anonymous client, a cap on running builds, one count per canonical
repository, and image names nobody can squat."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from chalicelib.models import is_valid_name
from chalicelib.repository_urls import canonical_repository
from chalicelib.services.builds import image_name_for
from tests.conftest import World, auth, body
from tests.helpers import REPO, build_event, from_address


def build(client: Any, repository: str, headers: dict[str, str] | None = None) -> Any:
    return client.http.post("/builds/repos", body=json.dumps({"repository": repository}), headers=headers or {})


def started(world: World) -> int:
    """Builds CodeBuild was asked to run."""
    return len(world.codebuild.list_builds_for_project(projectName=world.settings.codebuild_project)["ids"])


def running(world: World, scope: str) -> int:
    item = world.services.store.dynamo.get(f"QUOTA#{scope}", "QUOTA")
    return int(item.get("builds", 0)) if item else 0


def pending_items(world: World) -> int:
    return sum(1 for item in world.dynamodb.scan(TableName="binderless")["Items"]
               if item["pk"]["S"].startswith("BUILD#") and item.get("status", {}).get("S") == "pending")


def repositories(world: World, count: int) -> list[str]:
    names = [f"https://github.com/binder-examples/example-{n}" for n in range(count)]
    for name in names:
        world.git.push(name)
    return names


@pytest.mark.settings(build_rate_limit=2, build_rate_window=600)
def test_anonymous_builds_are_rate_limited_per_client(client: Any, world: World, monkeypatch: Any) -> None:
    first, second, third, fourth = repositories(world, 4)
    assert [build(client, r).status_code for r in (first, second)] == [202, 202]

    refused = build(client, third)

    assert refused.status_code == 429 and "at most 2 per 600 seconds" in body(refused)["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    assert started(world) == 2 and pending_items(world) == 2 and running(world, f"REPO#{third}") == 0
    build_event(client, world, body(build(client, first))["image-name"], "SUCCEEDED")
    cached = build(client, first)  # an image already built costs nothing
    assert cached.status_code == 200 and body(cached)["status"] == "completed"
    assert build(client, third, auth()).status_code == 202  # a token holder is not rate limited
    from_address(monkeypatch, "192.0.2.9")
    assert build(client, fourth).status_code == 202  # another client has its own allowance
    world.clock.advance(600)
    from_address(monkeypatch, "127.0.0.1")
    world.git.push(first)
    assert build(client, first).status_code == 202  # a new window
    assert started(world) == 5


@pytest.mark.settings(max_builds=2)
def test_the_service_runs_at_most_max_builds_at_once(client: Any, world: World) -> None:
    first, second, third = repositories(world, 3)
    images = [body(build(client, r, auth()))["image-name"] for r in (first, second)]

    refused = build(client, third, auth())

    assert refused.status_code == 429 and "limit of 2 builds" in body(refused)["message"]
    assert refused.headers["Retry-After"] and started(world) == 2
    assert running(world, "GLOBAL") == pending_items(world) == 2
    build_event(client, world, images[0], "SUCCEEDED")
    build_event(client, world, images[1], "FAILED")
    assert running(world, "GLOBAL") == pending_items(world) == 0
    assert build(client, third, auth()).status_code == 202
    assert running(world, "GLOBAL") == pending_items(world) == 1


@pytest.mark.settings(max_builds_per_repository=1)
def test_owner_and_case_are_one_repository_on_github(client: Any, world: World) -> None:
    world.git.push("https://github.com/owner/repo")

    upper = build(client, "https://github.com/Owner/Repo")
    lower = build(client, "https://GitHub.com/owner/repo.git")

    assert upper.status_code == lower.status_code == 202
    assert body(upper)["image-name"] == body(lower)["image-name"] and started(world) == 1
    stored = world.services.store.builds.get(body(upper)["image-name"])
    assert stored is not None and stored.repository == "https://github.com/owner/repo"
    assert running(world, "REPO#https://github.com/owner/repo") == 1
    assert running(world, "REPO#https://github.com/Owner/Repo") == 0
    found = client.http.get("/builds/repos?repository=https://github.com/OWNER/REPO")
    assert found.status_code == 200 and body(found)["image-name"] == body(upper)["image-name"]
    world.git.push("https://github.com/owner/repo")  # a new commit while the first still builds
    assert build(client, "https://github.com/OWNER/repo").status_code == 429  # one repository, one count


@pytest.mark.settings(max_builds_per_repository=1, allowed_hosts=("github.com", "git.example.org"))
def test_case_still_matters_on_other_hosts(client: Any, world: World) -> None:
    for name in ("https://git.example.org/Owner/Repo", "https://git.example.org/owner/repo"):
        world.git.push(name)

    upper, lower = (build(client, name) for name in ("https://git.example.org/Owner/Repo",
                                                      "https://git.example.org/owner/repo"))

    assert upper.status_code == lower.status_code == 202  # two repositories, each within its cap
    assert body(upper)["image-name"] != body(lower)["image-name"] and started(world) == 2
    assert running(world, "REPO#https://git.example.org/Owner/Repo") == 1
    assert running(world, "REPO#https://git.example.org/owner/repo") == 1


def test_canonical_repositories() -> None:
    assert canonical_repository("HTTPS://GitHub.com./Owner/Repo.git/") == "https://github.com/owner/repo"
    assert canonical_repository("https://github.com:443/Owner/Repo") == "https://github.com/owner/repo"
    assert canonical_repository("https://gist.github.com/User/AbC12") == "https://gist.github.com/user/abc12"
    for host in ("gitlab.com", "bitbucket.org", "codeberg.org"):
        assert canonical_repository(f"https://{host}/Group/Project") == f"https://{host}/group/project"
    assert canonical_repository("https://Git.Example.org:8443/Owner/Repo") == "https://git.example.org:8443/Owner/Repo"
    assert canonical_repository("/home/me/Repo.git") == "/home/me/Repo.git"  # a local path is a directory's name


def test_image_names_carry_128_bits_of_the_repository_and_the_full_commit() -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    twin = commit[:39] + "8"  # the same first 39 hex digits

    name = image_name_for(REPO, commit)

    assert name.endswith("-" + hashlib.sha256(f"{REPO}\0{commit}".encode()).hexdigest()[:32])
    assert name.startswith("github-com-binder-examples-requirements-0123456789ab-")
    assert image_name_for(REPO, twin) != name and image_name_for(REPO + "2", commit) != name
    long = image_name_for("https://github.com/" + "a" * 300 + "/" + "b" * 300, commit)
    assert len(long) == 100 and is_valid_name(long) and is_valid_name(name)


def test_a_registered_image_at_a_builds_name_is_refused_and_not_returned(client: Any, world: World) -> None:
    commit = world.git.push(REPO)
    name = image_name_for(REPO, commit)
    squat = {"image-name": name, "image": "quay.io/somebody/else:latest"}
    assert client.http.post("/builds/images", body=json.dumps(squat), headers=auth()).status_code == 201

    refused = build(client, REPO)

    assert refused.status_code == 409 and name in body(refused)["message"]
    assert "image" not in body(refused) and started(world) == 0 and running(world, f"REPO#{REPO}") == 0
    assert body(client.http.get(f"/builds/repos/{name}"))["image"] == squat["image"]  # unchanged


def test_a_name_taken_between_the_read_and_the_create_is_refused_too(client: Any, world: World) -> None:
    commit = world.git.push(REPO)
    name = image_name_for(REPO, commit)
    store = world.services.store.builds
    original = store.get

    def register_first(image_name: str) -> Any:
        """The read misses; an operator registers the name before the create."""
        store.get = original  # type: ignore[method-assign]
        client.http.post("/builds/images", headers=auth(),
                         body=json.dumps({"image-name": image_name, "image": "quay.io/somebody/else:latest"}))
        return None

    store.get = register_first  # type: ignore[method-assign]
    refused = build(client, REPO)

    assert refused.status_code == 409 and started(world) == 0 and running(world, f"REPO#{REPO}") == 0
    assert body(client.http.get(f"/builds/repos/{name}"))["image"] == "quay.io/somebody/else:latest"
