"""Local mode as `make run` starts it, in a subprocess, and a small HTTP client for it.

Shared by the end-to-end test and bench/local_bench.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

PROJECT = Path(__file__).resolve().parents[1]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never via a proxy


@dataclass
class Reply:
    status: int
    body: Any


def call(method: str, url: str, body: Any = None, token: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return Reply(status, json.loads(raw))
    except ValueError:
        return Reply(status, raw.decode("utf-8", "replace"))


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "the condition", every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(every)


def alive(process: psutil.Process) -> bool:
    """Running, and not a zombie nobody has reaped yet."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def is_proxy(process: psutil.Process) -> bool:
    try:
        return any("configurable-http-proxy" in part for part in process.cmdline())
    except psutil.Error:  # gone meanwhile
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalMode:
    def __init__(self, process: subprocess.Popen[bytes], port: int, token: str, log: Path) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.log = log

    def api(self, method: str, path: str, body: Any = None, *, admin: bool = True) -> Reply:
        return call(method, self.base + path, body, self.token if admin else None)

    def ready(self) -> bool:
        """/health answers 200 and the banner (URL, admin token) is out."""
        assert self.process.poll() is None, f"local mode exited early:\n{self.output()}"
        try:
            healthy = self.api("GET", "/health").status == 200
        except OSError:
            return False
        return healthy and "Ctrl-C stops it" in self.output()

    def servers(self) -> list[psutil.Process]:
        """The notebook servers it runs, and their kernels (not its proxy: ``proxy``)."""
        return [child for child in psutil.Process(self.process.pid).children(recursive=True)
                if not is_proxy(child)]

    def api_origin(self) -> str:
        """Where the API itself listens: behind the proxy, the proxy's default target."""
        proxy = self.proxy()
        if proxy is None:
            return self.base
        command = proxy.cmdline()
        return command[command.index("--default-target") + 1]

    def proxy(self) -> psutil.Process | None:
        """Its configurable-http-proxy, when it runs one."""
        return next((child for child in psutil.Process(self.process.pid).children() if is_proxy(child)), None)

    def server(self, location: str) -> psutil.Process:
        """The jupyter server process that serves ``location``."""
        path = urllib.parse.urlsplit(location).path
        for process in psutil.Process(self.process.pid).children():
            if f"--ServerApp.base_url={path}" in process.cmdline():
                return process
        raise AssertionError(f"no jupyter server process serves {path}")

    def build_and_stage(self, repository: Path) -> str:
        """POST /builds/repos, wait for the build, POST /stagings: the environment's name."""
        started = self.api("POST", "/builds/repos", {"repository": str(repository)})
        assert started.status == 202 and started.body["status"] == "pending", started.body
        image = started.body["image-name"]
        status = wait_for(lambda: (s := self.api("GET", f"/builds/repos/{image}/status").body)["status"] != "pending"
                          and s, 60, "the build finishes")
        assert status == {"status": "completed"}, f"{status}\n{self.output()}"
        staged = self.api("POST", "/stagings", {"image-name": image})
        assert staged.status == 201, staged.body
        return str(staged.body["environment-name"])

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def local_mode(work: Path, token: str, **env: str) -> Iterator[LocalMode]:
    """``python -m chalicelib.local`` on a free port with its own work dir; SIGINT on the way out."""
    port = free_port()
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "BINDERLESS_"))}
    environ |= {"PORT": str(port), "BINDERLESS_ADMIN_TOKEN": token, "BINDERLESS_LOCAL_DIR": str(work / "binderless"),
                **env}
    work.mkdir(parents=True, exist_ok=True)
    log = work / "local-mode.log"
    with open(log, "wb") as output:  # a file, not a pipe: nobody reads it until something fails
        process = subprocess.Popen([sys.executable, "-m", "chalicelib.local"], cwd=PROJECT, env=environ,
                                   stdout=output, stderr=subprocess.STDOUT)
    mode = LocalMode(process, port, token, log)
    try:
        wait_for(mode.ready, 30, "local mode is ready")
        yield mode
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
