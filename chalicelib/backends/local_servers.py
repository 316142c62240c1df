"""Local stager and spawner: notebook servers as ``jupyter server`` processes on 127.0.0.1.

Each server runs in its own process group (its kernels start their own sessions and exit when
their parent does), so stopping a server is one signal to the group. The spawner remembers
every process it started: ``describe`` and ``stop`` only act on those (a pid from an earlier run
may belong to anything by now), and ``stop_all`` ends them when local mode stops. On Linux a
server also gets SIGTERM from the kernel if local mode dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from chalicelib import errors
from chalicelib.backends.base import EnvironmentSpec, Handle, Launched, TaskState, handle_id
from chalicelib.backends.culling import SERVE, culling_arguments
from chalicelib.backends.local_builds import read_record
from chalicelib.backends.local_common import public_environment, work_dir
from chalicelib.backends.server_origins import allow_origin_arguments
from chalicelib.config import Settings

HOST = "127.0.0.1"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL: jupyter shuts its kernels down on SIGTERM
CHECK_TIMEOUT = 1.0
READY_POLL = 0.05  # seconds between a starting server's readiness checks: its event is this late at most
DELIVERY_TRIES = 100  # an event its launch has not saved the handle for yet is told again READY_POLL later
PR_SET_PDEATHSIG = 1
# Servers run below the API and the proxy: a server's start-up is a second of CPU (jupyter's imports),
# and a pool refilling on two cores made every claim meanwhile wait its turn (measured with two
# CPU-bound processes beside local mode: a pool hit's POST 44 ms at their nice 0, 25 ms at nice 10,
# 23 ms without them). Only the order changes: an idle machine's CPU is theirs. Once a server answers,
# it gets local mode's priority back where the machine allows it (``_raise_priority``).
SERVER_NICENESS = 10
SERVER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
log = logging.getLogger(__name__)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a proxy cannot reach 127.0.0.1


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
    """One server process. A thread of its own reaps it the moment it exits, so ``exited`` is exact:
    Popen.poll() answers None while another thread is waiting on the same process."""

    popen: subprocess.Popen[bytes]
    token: str
    url: str
    port: int
    launch: str = ""
    exited: threading.Event = field(default_factory=threading.Event)

    @property
    def handle(self) -> Handle:
        return {"id": str(self.popen.pid), "port": str(self.port), "url": self.url}

    def watch(self) -> None:
        threading.Thread(target=self._reap, name=f"reap-{self.popen.pid}", daemon=True).start()

    def _reap(self) -> None:
        self.popen.wait()
        self.exited.set()

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.popen.pid, signum)  # the server leads its own group (start_new_session)

    def end(self, grace: float) -> None:
        """After SIGTERM: ``grace`` seconds to exit, then SIGKILL for whatever is left of its group."""
        self.exited.wait(grace)
        # Even when the server itself has exited: the group id lives on while any member does, and
        # Linux hands out pids in sequence, so seconds after the exit it names no other group.
        self.signal_group(signal.SIGKILL)
        self.exited.wait(STOP_GRACE)


def host_jupyter_paths(python: str) -> dict[str, str]:
    """Where a build's virtualenv finds the host's Jupyter front ends: JupyterLab and the notebook tree
    come from the host (as jupyter_server does, through the virtualenv's .pth file), but their server
    extensions are switched on by files under the host's ``etc/jupyter`` and their pages and assets
    live under its ``share/jupyter``: outside those, ``/lab`` and ``/tree`` are 404s."""
    if python == sys.executable:
        return {}
    return {"JUPYTER_CONFIG_PATH": os.path.join(sys.prefix, "etc", "jupyter"),
            "JUPYTER_PATH": os.path.join(sys.prefix, "share", "jupyter")}


def free_port(avoid: Collection[int] = ()) -> int:
    """A port nobody listens on now, and none of ``avoid``: ports handed out but not bound yet, which
    the kernel may offer again until they are. jupyter gets ``port_retries=0``, so a lost race fails
    loudly (the server stops and is reported) instead of serving on a port nobody knows."""
    while True:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if port not in avoid:
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


def _raise_priority(group: int) -> None:
    """A server that answers has done the dear part of its start (1.2 s of CPU before, 0.08 s after: measured):
    it gets the API's priority back, to serve its reader, where this process may raise a priority (root,
    CAP_SYS_NICE or RLIMIT_NICE); elsewhere it keeps SERVER_NICENESS."""
    with contextlib.suppress(OSError):  # EPERM without the right; ESRCH if it is gone
        os.setpriority(os.PRIO_PGRP, group, os.getpriority(os.PRIO_PROCESS, 0))


@functools.cache
def parent_death_command() -> tuple[str, ...]:
    """A prefix for a server's command that asks the kernel for SIGTERM when the thread that started it
    ends, then execs the command (same pid): util-linux's ``setpriv --pdeathsig``, where it has it.

    Why not ``preexec_fn``: a child that runs Python before exec has to be forked, and Python forks with
    the interpreter lock held, copying local mode's page tables: 5.7 ms a server for a 63 MB process,
    during which no request is served. Without ``preexec_fn`` Popen uses vfork: 0.3 ms (measured)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return ()
    prefix = (setpriv, "--pdeathsig", "TERM", "--")
    try:  # util-linux before 2.33 has no --pdeathsig
        works = subprocess.run(  # noqa: S603 (our own argument list)
            [*prefix, "true"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    return prefix if works else ()


class LocalSpawner:
    """``Spawner`` port: one jupyter server process per server, run by ``culling.SERVE`` as on AWS."""

    max_batch = 10
    records_from_events = False  # no events locally: start's results are saved at once

    def __init__(self, settings: Settings, *, grace: float = STOP_GRACE) -> None:
        self.logs = work_dir(settings) / "servers"
        self.culling = culling_arguments(settings)
        self.origins = allow_origin_arguments(settings)  # none by default: jupyter refuses other origins
        self.grace = grace
        self._lock = threading.Lock()
        self._processes: dict[str, Process] = {}  # by pid
        self._closed = False
        # PDEATHSIG fires when the forking *thread* ends, and request threads end after each
        # request: every fork happens in this one long-lived thread instead.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-spawner")
        self._preexec = _parent_death_signal()
        self._on_event: Callable[[TaskState], bool] | None = None

    def subscribe(self, on_event: Callable[[TaskState], bool]) -> None:
        """Local events, as ECS sends them on AWS: ``on_event`` hears of a server the moment it answers
        and the moment its process exits (``ServerLifecycle.take_event``; it answers False while the
        server's launch has not saved its handle yet, and is told again). The schedule still describes
        every server on its tick, so an event that is lost costs a tick, not a server."""
        self._on_event = on_event

    def start(self, environment: Handle, server_ids: Sequence[str], launch: str, key: str) -> list[Launched]:
        if not 0 < len(server_ids) <= self.max_batch:
            raise ValueError(f"start takes 1 to {self.max_batch} server ids, got {len(server_ids)}")
        solo = len(server_ids) == 1
        return [self._start_one(environment, server_id, launch, key if solo else "") for server_id in server_ids]

    def token_for(self, key: str, handle: Handle) -> str:
        """Local tokens are random and saved from ``start``'s results; a batch key is not needed."""
        with self._lock:
            process = self._processes.get(handle.get("id", ""))
        return process.token if process else ""

    def tasks_of(self, launch: str) -> list[Handle]:
        with self._lock:
            return [process.handle for process in self._processes.values()
                    if launch and process.launch == launch and not process.exited.is_set()]

    def _start_one(self, environment: Handle, server_id: str, launch: str, token: str) -> Launched:
        if not SERVER_ID.fullmatch(server_id):  # it names a directory
            return Launched(server_id, failure=f"server id {server_id!r} is not usable locally")
        port, token = self._unused_port(), token or secrets.token_hex(24)
        # The path names the process, never the server id: an id is the capability to read the
        # location, token included (GET /deployments/{env}/{id}), and a path is shown, bookmarked,
        # copied from the address bar. On AWS the path is the task's id (aws_tasks.py).
        base_url = f"/user/{secrets.token_hex(16)}/"
        command = [environment.get("python") or sys.executable, "-c", SERVE, "--no-browser",
                   f"--ip={HOST}", f"--port={port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={environment.get('path', '')}",
                   *self.culling, *self.origins]
        if os.geteuid() == 0:
            command.append("--allow-root")
        runtime = self.logs / server_id
        runtime.mkdir(parents=True, exist_ok=True)
        # The token goes in the environment: argv is readable by every user of the machine.
        # A runtime directory per server: its own cookie secret and kernel connection files.
        env = public_environment(JUPYTER_TOKEN=token, JUPYTER_RUNTIME_DIR=str(runtime / "runtime"),
                                 **host_jupyter_paths(command[0]))
        with self._lock:
            if self._closed:
                return Launched(server_id, failure="local mode is shutting down")
            try:
                popen = self._launcher.submit(self._popen, command, env, runtime / "server.log").result()
            except OSError as error:
                return Launched(server_id, failure=f"could not run {command[0]}: {error}")
            url = f"http://{HOST}:{port}{base_url}"
            process = Process(popen, token, url, port, launch)
            process.watch()
            self._processes[str(popen.pid)] = process
        if self._on_event is not None:
            threading.Thread(target=self._report, args=(process,), name=f"report-{popen.pid}", daemon=True).start()
        return Launched(server_id, token=token, handle=process.handle)

    def _unused_port(self) -> int:
        """A free port that no server of ours was given: a server binds its port a second or so after
        it starts, and until then the kernel may offer the same free port again."""
        with self._lock:
            ours = {process.port for process in self._processes.values() if not process.exited.is_set()}
        return free_port(avoid=ours)

    def _popen(self, command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        prefix = parent_death_command()
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(  # noqa: S603 (an argument list, never a shell)
                [*prefix, *command], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, out of reach of the terminal's Ctrl-C
                preexec_fn=None if prefix else self._preexec,
            )
        with contextlib.suppress(OSError):  # it may have exited already; lowering a child's priority is always allowed
            os.setpriority(os.PRIO_PROCESS, popen.pid, SERVER_NICENESS)
        return popen

    def describe(self, handles: Sequence[Handle]) -> list[TaskState]:
        return [self._describe_one(dict(handle)) for handle in handles]

    def _describe_one(self, handle: Handle) -> TaskState:
        with self._lock:
            process = self._processes.get(handle.get("id", ""))
        if process is None:
            return TaskState(handle, "stopped", reason="the server process is gone (local mode restarted?)")
        if process.exited.is_set():
            code = process.popen.returncode
            return TaskState(handle, "stopped", reason=f"the server process exited with code {code}")
        if self._answers(process):
            return TaskState(handle, "running", url=process.url)
        return TaskState(handle, "starting")

    def _report(self, process: Process) -> None:
        """Tell of ``process`` when it first answers, then when it exits."""
        while not process.exited.wait(READY_POLL):
            if self._answers(process):
                _raise_priority(process.popen.pid)
                self._tell(TaskState(process.handle, "running", url=process.url, launch=process.launch))
                self._warm(process)
                break
        process.exited.wait()
        self._tell(replace(self._describe_one(process.handle), launch=process.launch))

    def _tell(self, task: TaskState) -> None:
        for _ in range(DELIVERY_TRIES):
            if self._on_event is None or self._closed:
                return
            try:
                if self._on_event(task):
                    return
            except Exception:  # noqa: BLE001 (a thread of its own: the schedule's describe() is the fallback)
                log.warning("could not apply the event of server process %s", handle_id(task.handle), exc_info=True)
                return
            time.sleep(READY_POLL)

    @staticmethod
    def _warm(process: Process) -> None:
        """Open the location once, as its reader will: a first page costs jupyter 25-30 ms, a later one
        4 ms (measured). Not an API request, so it does not arm culling (culling.py)."""
        request = urllib.request.Request(f"{process.url}?token={process.token}")  # noqa: S310 (our own http URL)
        # Only a head start: the reader's request works without it.
        with contextlib.suppress(OSError), NO_PROXY.open(request, timeout=CHECK_TIMEOUT * 5) as response:
            response.read()

    def _answers(self, process: Process) -> bool:
        request = urllib.request.Request(process.url + "api/status",  # noqa: S310 (our own http URL)
                                         headers={"Authorization": f"token {process.token}"})
        try:
            with NO_PROXY.open(request, timeout=CHECK_TIMEOUT) as response:
                return int(response.status) == 200
        except OSError:  # refused while it starts; URLError and HTTPError are OSErrors
            return False

    def stop(self, handle: Handle, reason: str) -> None:
        with self._lock:
            process = self._processes.get(handle.get("id", ""))
        if process is not None and not process.exited.is_set():
            process.signal_group(signal.SIGTERM)
            # Not waiting here: stop() runs in an API request, and the grace period is seconds.
            threading.Thread(target=process.end, args=(self.grace,), daemon=True).start()

    def from_event(self, detail: Mapping[str, Any]) -> TaskState | None:
        return None  # no platform events: the spawner tells its subscriber itself (subscribe)

    def stop_all(self) -> None:
        """End every server this spawner started (local mode is stopping); later starts fail."""
        with self._lock:
            self._closed = True
            # Only the live ones: the group id of a server that ended long ago may name another group now.
            running = [process for process in self._processes.values() if not process.exited.is_set()]
        for process in running:
            process.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.grace  # one grace period for all of them, not one each
        for process in running:
            process.end(max(0.0, deadline - time.monotonic()))
        self._launcher.shutdown(wait=False)

    def pids(self) -> list[int]:
        with self._lock:
            return [process.popen.pid for process in self._processes.values() if not process.exited.is_set()]
