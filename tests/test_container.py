"""The notebook container, run here as Fargate runs it: a repo2docker image's layout, its user, no Docker.

moto never runs a container, so this does what the task would: a directory laid out like a
repo2docker image (the image's environment: a virtualenv with jupyter_server, from the host's
packages through a .pth as local mode does; repo2docker's own entry point files, from the pinned
jupyter-repo2docker package, in the layout's /usr/local/bin; a home), the task metadata endpoint
served on 127.0.0.1, and the task definition's entryPoint followed by the RunTask command override,
both taken from the requests the AWS adapters send, run as a user that is not root (as root,
``setpriv`` to a uid with no account: nothing on the machine changes) with the environment ECS
gives a container.
Then it checks what a user, or an attacker among the users of one batch, would notice.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.backends.aws import AwsSpawner, AwsStager
from chalicelib.backends.base import EnvironmentSpec
from chalicelib.backends.bootstrap import KEY_VARIABLE, TOKEN_FILE_VARIABLE, token_for
from chalicelib.backends.local_servers import free_port
from chalicelib.config import Settings
from tests.helpers import JsonHandler
from tests.test_local_backend import wait_for

# The image's user: as root, a uid with no account (nothing on the machine changes); else oneself.
AS_ROOT = sys.platform == "linux" and os.geteuid() == 0
UID = 4242 if AS_ROOT else os.getuid()
REGION = "us-east-1"
SETPRIV = shutil.which("setpriv")
REPO2DOCKER = importlib.util.find_spec("repo2docker")

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
    pytest.mark.skipif(AS_ROOT and not SETPRIV, reason="as root, needs setpriv to run as the image's user"),
    pytest.mark.skipif(REPO2DOCKER is None, reason="needs jupyter-repo2docker (requirements-dev.txt)"),
]


@dataclass
class Task:
    """What ECS is given for one task of a batch, as the adapters build it."""

    entry_point: list[str]
    command: list[str]
    health_check: list[str]
    task_arn: str
    key: str
    token: str
    port: int


def task_as_ecs_runs_it(port: int) -> Task:
    """The first task of a batch of two, from the requests the adapters send ECS (the container
    definition the stager registers, the command override RunTask gets) and what ECS answers."""
    ecs = boto3.client("ecs", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    sent: dict[str, Any] = {}
    ecs.meta.events.register("provide-client-params.ecs.*",
                             lambda params, model, **_: sent.update({model.name: params}))
    arns = [f"arn:aws:ecs:{REGION}:123456789012:task/binderless/{n}f1e7c2a4b3d4e5f8a6b7c8d9e0f1a2b" for n in (9, 8)]
    definition = f"arn:aws:ecs:{REGION}:123456789012:task-definition/binderless-python-demo:1"
    settings = Settings(region=REGION, subnets=("subnet-0a1b2c3d4e5f60718",), address="private", server_port=port)
    key = "5e" * 24
    with Stubber(ecs) as stub:
        stub.add_response("register_task_definition", {"taskDefinition": {"taskDefinitionArn": definition}})
        stub.add_response("run_task", {"tasks": [{"taskArn": arn} for arn in arns], "failures": []})
        spec = EnvironmentSpec("python-demo", "123456789012.dkr.ecr.us-east-1.amazonaws.com/binderless:img",
                               cpu=1024, memory=2048)
        first, _ = AwsSpawner(settings, ecs=ecs).start(AwsStager(settings, ecs=ecs).register(spec), ["s-1", "s-2"],
                                                       "launch", key)
    notebook = sent["RegisterTaskDefinition"]["containerDefinitions"][0]
    (override,) = sent["RunTask"]["overrides"]["containerOverrides"]
    assert "environment" not in override  # the key travels in the command only
    return Task(notebook["entryPoint"], override["command"], notebook["healthCheck"]["command"], arns[0], key,
                first.token, port)


class Metadata(JsonHandler):
    """The task metadata endpoint v4: ``GET ${ECS_CONTAINER_METADATA_URI_V4}/task``."""

    task_arn = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.reply(200 if self.path.endswith("/task") else 404,
                   {"Cluster": "binderless", "TaskARN": self.task_arn, "Family": "binderless-x"})


def reachable_python() -> str | None:
    """An interpreter of this Python version that another user may run (this one may sit under /root)."""
    if not AS_ROOT:
        return os.path.realpath(sys.executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), shutil.which(version, path="/usr/local/bin:/usr/bin")):
        if candidate and all(os.stat(p).st_mode & stat.S_IXOTH for p in [*Path(candidate).parents, Path(candidate)]):
            return candidate
    return None


def image_layout(root: Path, python: str) -> dict[str, Path]:
    """A repo2docker image's layout under ``root``: the environment, /usr/local/bin, the user's home."""
    env, local_bin, home = root / "srv/conda/envs/notebook", root / "usr/local/bin", root / "home/jovyan"
    subprocess.run([python, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(subprocess.run([str(env / "bin/python"), "-c", where], capture_output=True, text=True,
                                  check=True).stdout.strip())
    (purelib / "binderless-host.pth").write_text(sysconfig.get_path("purelib") + "\n")  # jupyter_server, ipykernel
    (purelib / "jupyterlab").mkdir()  # JupyterLab, as far as "is it installed" goes
    (purelib / "jupyterlab/__init__.py").write_text("")
    local_bin.mkdir(parents=True)
    # repo2docker's own files, their /usr/local/bin moved into the layout.
    buildpacks = Path(REPO2DOCKER.submodule_search_locations[0]) / "buildpacks"  # type: ignore[union-attr,index]
    for name in ("python3-login", "repo2docker-entrypoint"):
        text = (buildpacks / name).read_text().replace("/usr/local/bin/", f"{local_bin}/")
        (local_bin / name).write_text(text)
        (local_bin / name).chmod(0o755)
    home.mkdir(parents=True)
    # A login shell keeps the image's PATH on Ubuntu, which repo2docker images are; this machine's
    # /etc/profile (Debian's) resets it, so the user's profile puts it back.
    (home / ".bash_profile").write_text(f'PATH="{local_bin}:{env}/bin:/usr/bin:/bin"\n')
    (root / "tmp").mkdir()
    for path in (root / "tmp", home) if AS_ROOT else ():
        os.chown(path, UID, UID)
    return {"env": env, "bin": local_bin, "home": home, "tmp": root / "tmp"}


def as_user(command: list[str]) -> list[str]:
    if not AS_ROOT:
        return command
    return [SETPRIV or "setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--", *command]


@dataclass
class Container:
    task: Task
    environment: dict[str, str]  # the image's ENV and ECS's: what every process ECS starts in it gets
    home: Path
    token_file: Path
    process: subprocess.Popen[bytes] | None = None
    health_before: list[int] = field(default_factory=list)

    def start(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        """The task definition's entryPoint, then the RunTask command, as the image's user."""
        self.process = subprocess.Popen(as_user([*self.task.entry_point, *self.task.command]), env=self.environment,
                                        cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.process

    def health_check(self, command: list[str] | None = None) -> int:
        """The health check as ECS runs it: ``CMD`` dropped, as the container's user, with its environment."""
        cmd, *argv = command or self.task.health_check
        assert cmd == "CMD"
        return subprocess.run(as_user(argv), env=self.environment, cwd=self.home, capture_output=True,
                              timeout=30).returncode

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.task.port, timeout=10)
        connection.request(method, path, headers=headers or {})
        return connection.getresponse()

    def status(self, token: str | None) -> int:
        return self.request("GET", "/api/status", {"Authorization": f"token {token}"} if token else {}).status

    def processes(self) -> dict[int, dict[str, bytes]]:
        """Every process of the task (the first one and its descendants): its environ and cmdline."""
        assert self.process is not None
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        tree, frontier = {self.process.pid}, [self.process.pid]
        while frontier:
            pid = frontier.pop()
            children = [child for child, parent in parents.items() if parent == pid and child not in tree]
            tree.update(children)
            frontier.extend(children)
        found = {}
        for pid in sorted(tree):
            try:
                found[pid] = {name: Path(f"/proc/{pid}/{name}").read_bytes() for name in ("environ", "cmdline")}
            except OSError:
                continue  # it ended meanwhile
        return found


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    python = reachable_python()
    if python is None:
        pytest.skip(f"no python{sys.version_info.major}.{sys.version_info.minor} another user may run")
    task = task_as_ecs_runs_it(free_port())
    # Not under pytest's base temp: pytest makes that 0700 again whenever a run starts, so the
    # image's user would lose its way to the image.
    root = Path(tempfile.mkdtemp(prefix="binderless-image-"))
    root.chmod(0o755)
    try:
        yield from run_container(task, root, image_layout(root, python))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_container(task: Task, root: Path, layout: dict[str, Path]) -> Iterator[Container]:
    metadata = ThreadingHTTPServer(("127.0.0.1", 0), type("TaskMetadata", (Metadata,), {"task_arn": task.task_arn}))
    threading.Thread(target=metadata.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{metadata.server_address[1]}/v4/5f0c1a2b"
    home, token_file = layout["home"], layout["tmp"] / "binderless/token"
    environment = {  # the image's ENV, then what ECS adds to every container
        "PATH": f"{layout['bin']}:{layout['env']}/bin:/usr/bin:/bin", "HOME": str(home), "USER": "jovyan",
        "REPO_DIR": str(home), "SHELL": "/bin/bash", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
        "ECS_CONTAINER_METADATA_URI_V4": endpoint, "ECS_CONTAINER_METADATA_URI": endpoint.replace("/v4/", "/v3/"),
        "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        TOKEN_FILE_VARIABLE: str(token_file),  # the default is the machine's /tmp: this test's own instead
    }
    container = Container(task, environment, home, token_file)
    container.health_before.append(container.health_check())  # nothing runs yet
    with (root / "container.log").open("wb") as log:
        process = container.start(log)
        try:
            wait_for(lambda: process.poll() is not None or token_file.exists(), timeout=30, every=0.05)
            # The token is known now; on another port nothing listens: what a check sees until jupyter does.
            port = f":{task.port}/"
            elsewhere = [*task.health_check[:-1], task.health_check[-1].replace(port, f":{free_port()}/")]
            container.health_before.append(container.health_check(elsewhere))
            wait_for(lambda: process.poll() is not None or container.health_check() == 0, timeout=90, every=0.25)
            assert process.poll() is None, (root / "container.log").read_text()
            yield container
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            metadata.shutdown()
            metadata.server_close()


def test_the_health_check_fails_until_the_server_answers_then_passes(container: Container) -> None:
    assert container.health_before[0] != 0  # before the container starts: no token yet
    assert container.health_before[1] != 0  # the token is known, nothing answers on that port
    assert container.health_check() == 0


def test_the_server_answers_the_token_derived_from_the_key_and_its_task_arn(container: Container) -> None:
    token = token_for(container.task.key, container.task.task_arn)
    assert token == container.task.token  # what the spawner saved for this server
    assert container.status(token) == 200
    assert container.status("0" * 48) == 403
    assert container.status(None) == 403
    assert container.status(token_for("another batch's key", container.task.task_arn)) == 403


def test_no_process_of_the_task_holds_the_key_or_shows_the_token(container: Container) -> None:
    token, key = container.task.token, container.task.key
    assert any(key in argument for argument in container.task.command)  # what the first process was given
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    kernel = container.request("POST", "/api/kernels", headers)  # the user's code runs in a kernel
    assert kernel.status == 201
    wait_for(lambda: any(b"ipykernel" in p["cmdline"] for p in container.processes().values()), timeout=60)

    processes = container.processes()

    assert container.process is not None
    commands = {pid: seen["cmdline"].replace(b"\0", b" ") for pid, seen in processes.items()}
    # The image's entry point, exec'd by the bootstrap in the first process; jupyter and a kernel under it.
    assert b"repo2docker-entrypoint" in commands.pop(container.process.pid)
    assert any(b"BinderlessServerApp" in c for c in commands.values())
    assert any(b"ipykernel" in c for c in commands.values())
    for pid, seen in processes.items():
        for name, content in seen.items():
            assert key.encode() not in content, f"/proc/{pid}/{name}"
            assert KEY_VARIABLE.encode() not in content, f"/proc/{pid}/{name}"
            assert token.encode() not in content, f"/proc/{pid}/{name}"
    assert all(b"JUPYTER_TOKEN_FILE=" in p["environ"] for p in processes.values())  # a path, not the token
    # What every other process ECS starts in the container gets: health checks, ECS Exec sessions.
    assert key not in json.dumps(container.environment)


def test_the_token_file_is_for_the_servers_user_alone(container: Container) -> None:
    file, directory = container.token_file.stat(), container.token_file.parent.stat()
    assert (file.st_uid, stat.S_IMODE(file.st_mode)) == (UID, 0o600)
    assert (directory.st_uid, stat.S_IMODE(directory.st_mode)) == (UID, 0o700)
    assert container.token_file.read_text() == container.task.token


def test_users_first_see_jupyterlab_when_the_image_has_it(container: Container) -> None:
    reply = container.request("GET", f"/?token={container.task.token}")
    assert reply.status in (301, 302)
    assert reply.getheader("Location") == f"/lab?token={container.task.token}"  # the token goes along


def test_behind_an_https_proxy_the_login_cookie_is_secure(container: Container) -> None:
    auth = {"Authorization": f"token {container.task.token}"}
    direct = container.request("GET", "/api/status", auth).getheader("Set-Cookie") or ""
    proxied = container.request("GET", "/api/status", auth | {"X-Forwarded-Proto": "https"}).getheader("Set-Cookie")
    assert direct and "secure" not in direct.lower()
    assert proxied and "secure" in proxied.lower()  # trust_xheaders: jupyter believes the proxy


def test_the_server_stops_when_ecs_stops_the_task(container: Container) -> None:
    """ECS StopTask sends SIGTERM to PID 1: repo2docker's entry point relays it and jupyter exits.
    (Last in this file: it ends the module's container.)"""
    assert container.process is not None
    os.kill(container.process.pid, signal.SIGTERM)
    assert container.process.wait(timeout=30) is not None
    wait_for(lambda: container.health_check() != 0, timeout=10)
