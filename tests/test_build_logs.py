"""A build's log: ``GET /builds/repos/{image-name}/logs`` in pages, and the same lines as the ``building``
events of BinderHub's ``/build/`` stream (what Thebe and the launch page show while a repository builds).

Local mode builds real repositories here (git clone, a virtualenv, pip), so the lines are git's and pip's
own; the CloudWatch side of the AWS adapter is in tests/test_contract_builder.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.event_source import events
from tests.local_mode import LocalMode, local_mode, wait_for
from tests.local_repo import make_repository

ADMIN = "logs-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("logs-local"), ADMIN, BINDERLESS_LAUNCH_RATE_LIMIT="0") as mode:
        yield mode


def with_requirements(path: Path) -> str:
    """A repository whose build runs pip (its requirement is installed here already: no download)."""
    make_repository(path, {"requirements.txt": "pydantic\n", "hello.py": "print('hello')\n"})
    return path.as_uri()


def read_log(local: LocalMode, image_name: str, anonymous: bool = True) -> list[str]:
    """Every line of a build's log, page by page, as a client follows it: until the build has ended and
    a page brings nothing new."""
    lines: list[str] = []
    cursor = ""

    def page() -> bool:
        nonlocal lines, cursor
        got = local.api("GET", f"/builds/repos/{image_name}/logs?{'cursor=' + quote(cursor) if cursor else ''}",
                        admin=not anonymous)
        assert got.status == 200, got.body
        assert got.body["image-name"] == image_name
        lines, cursor = lines + got.body["lines"], got.body["cursor"]
        return got.body["status"] != "pending" and not got.body["lines"]

    wait_for(page, 120, "the build's log to end", every=0.2)
    return lines


def test_a_builds_log_tells_what_git_and_pip_said_and_reads_to_its_end(local: LocalMode, tmp_path: Path) -> None:
    repository = with_requirements(tmp_path / "with-requirements")
    started = local.api("POST", "/builds/repos", {"repository": repository}, admin=False)  # the public endpoint
    assert started.status == 202, started.body
    lines = read_log(local, started.body["image-name"])
    assert lines[0] == "--- git clone" and any(line.startswith("Cloning into") for line in lines)
    assert "--- pip install" in lines
    assert any("pydantic" in line for line in lines[lines.index("--- pip install"):])  # pip's own words
    again = local.api("GET", f"/builds/repos/{started.body['image-name']}/logs")
    assert again.body["lines"] == lines  # from the start again, without a cursor


def test_a_failing_build_logs_why(local: LocalMode, tmp_path: Path) -> None:
    path = tmp_path / "broken"
    make_repository(path, {"requirements.txt": "--no-index\nno-such-package-binderless-test==1.0\n"})
    started = local.api("POST", "/builds/repos", {"repository": path.as_uri()})
    lines = read_log(local, started.body["image-name"])
    assert local.api("GET", f"/builds/repos/{started.body['image-name']}").body["status"] == "failed"
    assert any("no-such-package-binderless-test" in line for line in lines)


@pytest.mark.parametrize(("cursor", "status"), [("not-a-cursor", 400), ("9" * 513, 400)])
def test_a_cursor_the_api_did_not_give_is_a_clear_error(local: LocalMode, tmp_path: Path, cursor: str,
                                                       status: int) -> None:
    make_repository(tmp_path / "plain")
    image = local.api("POST", "/builds/repos", {"repository": (tmp_path / "plain").as_uri()}).body["image-name"]
    got = local.api("GET", f"/builds/repos/{image}/logs?cursor={cursor}")
    assert got.status == status and got.body["error"] == "BadRequest" and "cursor" in got.body["message"]


def test_the_log_of_an_image_nobody_built_is_not_found(local: LocalMode) -> None:
    got = local.api("GET", "/builds/repos/no-such-image/logs")
    assert got.status == 404 and got.body["error"] == "NotFound"


def test_the_build_stream_tells_the_log_as_building_events(local: LocalMode, tmp_path: Path) -> None:
    repository = with_requirements(tmp_path / "streamed")
    _, told = events(f"{local.base}/build/git/{quote(repository, safe='')}/HEAD", token=ADMIN)
    phases = [event["phase"] for event in told]
    assert phases[-1] == "ready", told
    building = [event["message"] for event in told if event["phase"] == "building"]
    assert "--- git clone\n" in building and "--- pip install\n" in building
    assert all(message.endswith("\n") for message in building)  # BinderHub's: one line per event
    assert phases.index("building") < phases.index("built")
    image = next(event["imageName"] for event in told if event.get("imageName"))
    logged = [message.rstrip("\n") for message in building if not message.startswith(f"Building {image} (")]
    assert logged == read_log(local, image)  # the same lines, in order, none twice


def test_a_launch_of_a_built_repository_does_not_retell_its_log(local: LocalMode, tmp_path: Path) -> None:
    repository = with_requirements(tmp_path / "twice")
    url = f"{local.base}/build/git/{quote(repository, safe='')}/HEAD"
    events(url, token=ADMIN)
    _, second = events(url, token=ADMIN)
    assert [event["phase"] for event in second if event["phase"] == "building"] == []
    assert second[-1]["phase"] == "ready"

