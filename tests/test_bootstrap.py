"""The container's command, run for real with this interpreter: the bootstrap, the health check, SERVE's options.

tests/test_container.py runs the whole of it as a repo2docker image's user; these run its parts
alone, with a program in SERVE's (or jupyter's) place that records what it was given.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backends.bootstrap import (
    BASE_URL_FILE,
    BOOTSTRAP,
    ENTRY_POINT,
    KEY_VARIABLE,
    TOKEN_FILE_VARIABLE,
    TOKEN_VARIABLE,
    base_url_for,
    bootstrap_command,
    health_check_command,
    secret_argument,
    token_for,
)
from chalicelib.backends.culling import SERVE, culling_arguments
from chalicelib.backends.local_servers import free_port
from chalicelib.backends.server_origins import allow_origin_arguments
from chalicelib.config import Settings

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/binderless/9f1e7c2a4b3d4e5f8a6b7c8d9e0f1a2b"
# In SERVE's place: what it was given (argv, its environment, /proc's copies of both).
RECORDER = """\
import json, os, sys
json.dump({"argv": sys.argv, "env": dict(os.environ), "environ": open("/proc/self/environ", "rb").read().decode(),
           "cmdline": open("/proc/self/cmdline", "rb").read().decode()}, open(os.environ["RECORD"], "w"))
"""


class Answer(BaseHTTPRequestHandler):
    """The task metadata endpoint (``/task``) and, for the health check, jupyter's ``api/status``."""

    token = "the-token"  # noqa: S105
    base = "/"  # where jupyter serves (--ServerApp.base_url)
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.paths.append(self.path)
        if self.path.endswith("/task"):
            code, reply = 200, {"Cluster": "binderless", "TaskARN": TASK_ARN}
        elif self.path == f"{self.base}api/status":
            code = 200 if self.headers.get("Authorization") == f"token {self.token}" else 403
            reply = {}
        else:
            code, reply = 404, {}
        data = json.dumps(reply).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Answer.paths, Answer.base = [], "/"
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/0123abcd", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_bootstrap(tmp_path: Path, secret: str, extra: dict[str, str] | None = None,
                  base_prefix: str = "") -> dict[str, Any]:
    """``BOOTSTRAP`` with ``secret`` (and what ``bootstrap_command`` puts between it and SERVE for
    ``base_prefix``) and a recorder in SERVE's place; what the recorder saw."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "RECORD": str(tmp_path / "record.json"),
           TOKEN_FILE_VARIABLE: str(tmp_path / "run/binderless/token"), **(extra or {})}
    between = bootstrap_command(1, secret, base_prefix=base_prefix)[2:-5]  # the prefix argument, if any
    subprocess.run([sys.executable, "-c", BOOTSTRAP, secret, *between, RECORDER, "--ip=0.0.0.0", "--ServerApp.x=1"],
                   env=env, check=True, timeout=30, cwd=tmp_path)
    return dict(json.loads((tmp_path / "record.json").read_text()))


def test_the_command_and_its_key_fit_in_runtask_overrides() -> None:
    command = bootstrap_command(8888, secret_argument("ab" * 32, solo=False),
                                [*culling_arguments(Settings()), *allow_origin_arguments(Settings())])
    assert ENTRY_POINT + command[:3] == ["python3", "-c", BOOTSTRAP, f"{KEY_VARIABLE}={'ab' * 32}", SERVE]
    assert "--ServerApp.trust_xheaders=True" in command  # servers sit behind a proxy
    assert command[-1] == "--ServerApp.allow_origin=*"  # and still say which pages may use them
    # RunTask allows 8192 characters of overrides, JSON included; the bootstrap travels in each call.
    assert len(json.dumps({"containerOverrides": [{"name": "notebook", "command": command}]})) < 6000


def test_the_bootstrap_derives_the_token_for_the_server_alone_and_passes_on_no_secret(
        tmp_path: Path, endpoint: tuple[str, int]) -> None:
    key = "ab" * 32
    seen = run_bootstrap(tmp_path, secret_argument(key, solo=False),
                         {"ECS_CONTAINER_METADATA_URI_V4": endpoint[0], "JUPYTER_TOKEN": "the-image-s-own"})

    token_file = tmp_path / "run/binderless/token"
    token = token_for(key, TASK_ARN)
    assert token_file.read_text() == token  # what the spawner computes from the ARN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert seen["env"]["JUPYTER_TOKEN_FILE"] == str(token_file)  # jupyter reads it there
    assert "JUPYTER_TOKEN" not in seen["env"]  # an image's own would win over the file
    for copy in (json.dumps(seen["env"]), seen["environ"], seen["cmdline"], json.dumps(seen["argv"])):
        assert key not in copy and token not in copy and KEY_VARIABLE not in copy
    assert seen["argv"] == ["-c", "--ip=0.0.0.0", "--ServerApp.x=1"]
    assert Answer.paths == ["/v4/0123abcd/task"]


def test_a_task_started_alone_uses_the_token_it_was_given(tmp_path: Path) -> None:
    token = "ef" * 24
    seen = run_bootstrap(tmp_path, secret_argument(token, solo=True))  # no metadata endpoint needed at all

    assert (tmp_path / "run/binderless/token").read_text() == token
    assert token not in seen["environ"] and token not in seen["cmdline"]
    assert TOKEN_VARIABLE not in seen["env"]


def test_repo2docker_s_entry_point_runs_the_server_when_the_image_has_one(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entry = bin_dir / "repo2docker-entrypoint"  # a stand-in that notes it ran, then runs its arguments
    entry.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/entrypoint-argv\nexec \"$@\"\n")
    entry.chmod(0o755)

    seen = run_bootstrap(tmp_path, secret_argument("ef" * 24, solo=True), {"PATH": f"{bin_dir}:/usr/bin:/bin"})

    assert (tmp_path / "entrypoint-argv").read_text().startswith(f"{sys.executable} -c ")
    assert seen["argv"] == ["-c", "--ip=0.0.0.0", "--ServerApp.x=1"]


def test_the_health_check_passes_only_when_the_server_answers_the_token(tmp_path: Path,
                                                                       endpoint: tuple[str, int]) -> None:
    token_file = tmp_path / "token"
    _, *command = health_check_command(endpoint[1], 4)
    # A proxy in the image's environment must not take the check elsewhere.
    env = {"PATH": "/usr/bin:/bin", TOKEN_FILE_VARIABLE: str(token_file), "http_proxy": "http://127.0.0.1:9"}

    def check() -> int:
        return subprocess.run(command, env=env, timeout=30, capture_output=True).returncode

    assert check() == 1  # no token yet: the bootstrap has not run
    token_file.write_text("not-the-token")
    assert check() == 1  # 403
    token_file.write_text(Answer.token)
    assert check() == 0
    _, *command = health_check_command(free_port(), 4)
    assert check() == 1  # nothing listens


@pytest.mark.parametrize(("packages", "page"), [
    (["jupyterlab", "notebook"], "/lab"),
    (["notebook"], "/tree"),
    (["nbclassic"], "/tree"),
    ([], None),
])
def test_users_first_see_jupyterlab_when_the_image_has_it_else_the_tree(tmp_path: Path, packages: list[str],
                                                                      page: str | None) -> None:
    """Decided in the container from what its environment has (here: plain ``jupyter server``)."""
    site, bin_dir = tmp_path / "site", tmp_path / "bin"
    for name in packages:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
    (tmp_path / "jupyterlab").mkdir()  # a folder of the repository, in the server's directory: not a package
    (tmp_path / "jupyterlab/__init__.py").write_text("")
    bin_dir.mkdir()
    (bin_dir / "jupyter").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n')
    (bin_dir / "jupyter").chmod(0o755)

    # -S: no site-packages, so no jupyter_server to subclass: SERVE execs plain `jupyter server`.
    subprocess.run([sys.executable, "-S", "-c", SERVE, "--port=1"], cwd=tmp_path, check=True, timeout=30,
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(site)})

    pages = [a for a in (tmp_path / "argv").read_text().split() if a.startswith("--ServerApp.default_url=")]
    assert pages == ([f"--ServerApp.default_url={page}"] if page else [])


def test_a_page_the_operator_chose_is_kept(tmp_path: Path) -> None:
    (tmp_path / "site/jupyterlab").mkdir(parents=True)
    (tmp_path / "site/jupyterlab/__init__.py").write_text("")
    (tmp_path / "jupyter").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n')
    (tmp_path / "jupyter").chmod(0o755)

    subprocess.run([sys.executable, "-S", "-c", SERVE, "--ServerApp.default_url=/voila"], check=True, timeout=30,
                   env={"PATH": f"{tmp_path}:{os.environ['PATH']}", "PYTHONPATH": str(tmp_path / "site")})

    assert [a for a in (tmp_path / "argv").read_text().split() if "default_url" in a] == [
        "--ServerApp.default_url=/voila"]


# ---------------------------------------------------------------- behind the proxy: /user/<task id>/


def test_behind_the_proxy_the_server_serves_under_its_own_task_id_with_the_same_token(
        tmp_path: Path, endpoint: tuple[str, int]) -> None:
    key = "ab" * 32
    seen = run_bootstrap(tmp_path, secret_argument(key, solo=False), {"ECS_CONTAINER_METADATA_URI_V4": endpoint[0]},
                         base_prefix="/user/")

    task_id = TASK_ARN.rsplit("/", 1)[-1]
    assert base_url_for(TASK_ARN, "/user/") == f"/user/{task_id}/"  # what the spawner reports (aws_tasks.py)
    assert seen["argv"] == ["-c", "--ip=0.0.0.0", "--ServerApp.x=1", f"--ServerApp.base_url=/user/{task_id}/"]
    assert (tmp_path / "run/binderless/token").read_text() == token_for(key, TASK_ARN)  # derivation unchanged
    assert (tmp_path / "run/binderless" / BASE_URL_FILE).read_text() == f"/user/{task_id}/"
    assert Answer.paths == ["/v4/0123abcd/task"]  # the task id is read once, for both
    assert not [a for a in seen["argv"] if "BASE_PREFIX" in a]


def test_a_task_started_alone_behind_the_proxy_reads_its_id_for_the_path_only(
        tmp_path: Path, endpoint: tuple[str, int]) -> None:
    token = "ef" * 24
    seen = run_bootstrap(tmp_path, secret_argument(token, solo=True), {"ECS_CONTAINER_METADATA_URI_V4": endpoint[0]},
                         base_prefix="/user/")

    assert (tmp_path / "run/binderless/token").read_text() == token
    assert seen["argv"][-1] == f"--ServerApp.base_url={base_url_for(TASK_ARN, '/user/')}"


def test_without_the_proxy_the_server_serves_at_the_root(tmp_path: Path) -> None:
    seen = run_bootstrap(tmp_path, secret_argument("ef" * 24, solo=True))

    assert not [a for a in seen["argv"] if "base_url" in a]
    assert (tmp_path / "run/binderless" / BASE_URL_FILE).read_text() == "/"
    with pytest.raises(ValueError, match="starts and ends"):
        bootstrap_command(8888, "x", base_prefix="user")


def test_the_health_check_asks_the_server_under_its_base_path(tmp_path: Path, endpoint: tuple[str, int]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(Answer.token)
    Answer.base = f"/user/{TASK_ARN.rsplit('/', 1)[-1]}/"  # jupyter serves there only
    _, *command = health_check_command(endpoint[1], 4)
    env = {"PATH": "/usr/bin:/bin", TOKEN_FILE_VARIABLE: str(token_file)}

    def check() -> int:
        return subprocess.run(command, env=env, timeout=30, capture_output=True).returncode

    assert check() == 1  # no base path written: it asks /api/status, which is not the server's
    (tmp_path / BASE_URL_FILE).write_text(Answer.base)
    assert check() == 0
    assert Answer.paths[-2:] == ["/api/status", f"{Answer.base}api/status"]
    (tmp_path / BASE_URL_FILE).write_text("/user/someone-else/")
    assert check() == 1
