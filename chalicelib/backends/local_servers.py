"""Local stager and spawner: notebook servers as ``jupyter server`` processes on 127.0.0.1.

Each server runs in its own process group (its kernels start their own sessions and exit when
their parent does), so stopping a server is one signal to the group. The spawner remembers
every process it started: ``describe`` and ``stop`` only act on those (a pid from an earlier run
may belong to anything by now), and ``stop_all`` ends them when local mode stops. On Linux a
server also gets SIGTERM from the kernel if local mode dies without cleaning up.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from chalicelib import errors
from chalicelib.backends.base import EnvironmentSpec, Handle, Launched, TaskState
from chalicelib.backends.local_builds import read_record
from chalicelib.backends.local_common import work_dir
from chalicelib.config import Settings

HOST = "127.0.0.1"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL: jupyter shuts its kernels down on SIGTERM
CHECK_TIMEOUT = 1.0
PR_SET_PDEATHSIG = 1


class LocalStager:
    """``Stager`` port: an image is a directory; a build's directory says which interpreter to use."""

    def register(self, spec: EnvironmentSpec) -> Handle:
        if spec.sidecars:
            raise errors.Invalid("Local mode cannot run services next to the notebook; stage without services.")
        path = Path(spec.image).resolve()  # operators' images are relative to where local mode runs
        if not path.is_dir():
            raise errors.Invalid(f"The image {spec.image!r} is not a directory on this machine.")
        record = read_record(path)
        if record and record.get("status") == "completed":
            return {"path": str(record["checkout"]), "python": str(record["python"])}
        return {"path": str(path), "python": sys.executable}


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    token: str
    url: str


def free_port() -> int:
    """A port nobody listens on now. jupyter gets ``port_retries=0``, so a lost race fails loudly
    (the server stops and is reported) instead of serving on a port nobody knows."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux only: a function for the child, before exec, asking for SIGTERM when the thread that
    forked it ends. prctl is looked up here, in the parent: the child should do as little as it can."""
    if sys.platform != "linux":
        return None  # stop_all on exit still ends the servers
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_signal


class LocalSpawner:
    """``Spawner`` port: one ``python -m jupyter_server`` process per server."""

    max_batch = 10

    def __init__(self, settings: Settings, *, grace: float = STOP_GRACE,
                 opener: Callable[..., Any] | None = None) -> None:
        self.logs = work_dir(settings) / "servers"
        self.grace = grace
        self._lock = threading.Lock()
        self._processes: dict[str, Process] = {}  # by pid
        self._closed = False
        # PDEATHSIG fires when the forking *thread* ends, and request threads end after each
        # request: every fork happens in this one long-lived thread instead.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-spawner")
        self._preexec = _parent_death_signal()
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._open = opener or no_proxy.open

    def start(self, environment: Handle, server_ids: Sequence[str]) -> list[Launched]:
        if not 0 < len(server_ids) <= self.max_batch:
            raise ValueError(f"start takes 1 to {self.max_batch} server ids, got {len(server_ids)}")
        return [self._start_one(environment, server_id) for server_id in server_ids]

    def _start_one(self, environment: Handle, server_id: str) -> Launched:
        port, token = free_port(), secrets.token_hex(24)
        base_url = f"/user/{server_id}/"
        command = [environment.get("python") or sys.executable, "-m", "jupyter_server", "--no-browser",
                   f"--ip={HOST}", f"--port={port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={environment.get('path', '')}"]
        if os.geteuid() == 0:
            command.append("--allow-root")
        runtime = self.logs / server_id
        runtime.mkdir(parents=True, exist_ok=True)
        # The token goes in the environment: argv is readable by every user of the machine.
        # A runtime directory per server: its own cookie secret and kernel connection files.
        env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(runtime / "runtime")}
        with self._lock:
            if self._closed:
                return Launched(server_id, failure="local mode is shutting down")
            try:
                popen = self._launcher.submit(self._popen, command, env, runtime / "server.log").result()
            except OSError as error:
                return Launched(server_id, failure=f"could not run {command[0]}: {error}")
            url = f"http://{HOST}:{port}{base_url}"
            self._processes[str(popen.pid)] = Process(popen, token, url)
        return Launched(server_id, token=token, handle={"pid": str(popen.pid), "port": str(port), "url": url})

    def _popen(self, command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(  # noqa: S603 (an argument list, never a shell)
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, out of reach of the terminal's Ctrl-C
                preexec_fn=self._preexec,
            )

    def describe(self, handles: Sequence[Handle]) -> list[TaskState]:
        return [self._describe_one(dict(handle)) for handle in handles]

    def _describe_one(self, handle: Handle) -> TaskState:
        with self._lock:
            process = self._processes.get(handle.get("pid", ""))
        if process is None:
            return TaskState(handle, "stopped", reason="the server process is gone (local mode restarted?)")
        code = process.popen.poll()
        if code is not None:
            return TaskState(handle, "stopped", reason=f"the server process exited with code {code}")
        if self._answers(process):
            return TaskState(handle, "running", url=process.url)
        return TaskState(handle, "starting")

    def _answers(self, process: Process) -> bool:
        request = urllib.request.Request(process.url + "api/status",  # noqa: S310 (our own http URL)
                                         headers={"Authorization": f"token {process.token}"})
        try:
            with self._open(request, timeout=CHECK_TIMEOUT) as response:
                return int(response.status) == 200
        except OSError:  # refused while it starts; URLError and HTTPError are OSErrors
            return False

    def stop(self, handle: Handle, reason: str) -> None:
        with self._lock:
            process = self._processes.get(handle.get("pid", ""))
        if process is not None and process.popen.poll() is None:
            _signal_group(process.popen, signal.SIGTERM)
            threading.Thread(target=self._kill_after_grace, args=(process.popen,), daemon=True).start()

    def _kill_after_grace(self, popen: subprocess.Popen[bytes]) -> None:
        try:
            popen.wait(self.grace)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(popen, signal.SIGKILL)  # the server, or what it left in its group
        popen.wait()

    def from_event(self, detail: Mapping[str, Any]) -> None:
        return None  # processes send no events; the schedule's describe() notices every change

    def stop_all(self) -> None:
        """End every server this spawner started (local mode is stopping); later starts fail."""
        with self._lock:
            self._closed = True
            popens = [process.popen for process in self._processes.values()]
        for popen in popens:
            if popen.poll() is None:
                _signal_group(popen, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for popen in popens:
            try:
                popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(popen, signal.SIGKILL)  # whatever is left of the group, kernels included
            popen.wait()
        self._launcher.shutdown(wait=False)

    def pids(self) -> list[int]:
        with self._lock:
            return [process.popen.pid for process in self._processes.values() if process.popen.poll() is None]


def _signal_group(popen: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(popen.pid, signum)  # the server leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass  # already gone

