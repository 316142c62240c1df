"""Local mode's proxy: configurable-http-proxy (JupyterHub's) in front of the API and every server.

It listens on HOST:PORT, where readers and clients already go; the API moves behind it to a port of
its own on 127.0.0.1 and is the proxy's default target, so a path no server route matches (the API's
own, and ``/user/<name>/`` of a server that is gone) reaches the API. Servers get routes under
``/user/<name>/`` as they become reachable (``ServerLifecycle``), so every location, kernel websocket
included, is on the API's origin.

The package is pinned in ``proxy/package.json`` and installed by ``make run`` (``npm ci``). Without
node 18 or newer, or without the package, local mode says why and serves without a proxy (``direct``).
If the proxy process dies, it is started again on the same ports with the same token; its routing
table is empty then, and the next tick puts every live server's route back (``sync_routes``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from chalicelib.backends.local_common import PROJECT_DIR
from chalicelib.backends.local_servers import free_port

log = logging.getLogger(__name__)

PROXY_DIR = PROJECT_DIR / "proxy"
CHP = PROXY_DIR / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
MIN_NODE = 18  # configurable-http-proxy 5's "engines"
START_TIMEOUT = 20.0  # seconds for its API to answer after a start
RESTART_PAUSE = 1.0  # seconds between a death and the restart, so a proxy that cannot start does not spin
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def unavailable_reason() -> str:
    """Why the proxy cannot run here ("" when it can)."""
    node = shutil.which("node")
    if not node:
        return "node is not installed (configurable-http-proxy needs node 18 or newer)"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10,  # noqa: S603
                                 check=True).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return "node does not say its version"
    if major < MIN_NODE:
        return f"node {version} is too old (configurable-http-proxy needs node {MIN_NODE} or newer)"
    if not CHP.exists():
        return f"configurable-http-proxy is not installed in {PROXY_DIR} (make run installs it: npm ci)"
    return ""


class LocalProxy:
    """One configurable-http-proxy process, kept running: ``start`` waits until its API answers."""

    def __init__(self, host: str, port: int, default_target: str, log_path: Path) -> None:
        self.host, self.port, self.default_target, self.log_path = host, port, default_target, log_path
        # Not HOST:PORT, nor the API's port: a free port is free until bound, so the kernel may offer it twice.
        self.api_port = free_port(avoid={port, int(default_target.rsplit(":", 1)[1])})
        self.token = secrets.token_hex(32)  # in its environment and our memory only
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def public_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="local-proxy", daemon=True)
        self._watchdog.start()

    def _spawn(self) -> None:
        command = [shutil.which("node") or "node", str(CHP), "--ip", self.host, "--port", str(self.port),
                   "--api-ip", "127.0.0.1", "--api-port", str(self.api_port),
                   "--default-target", self.default_target, "--log-level", "warn"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as output:
            self._process = subprocess.Popen(  # noqa: S603 (an argument list)
                command, env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.token}, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(f"configurable-http-proxy did not start on {self.host}:{self.port} "
                                   f"(see {self.log_path})")
            time.sleep(0.05)

    def _answers(self) -> bool:
        request = urllib.request.Request(f"{self.api_url}/api/routes",  # noqa: S310 (our own http URL)
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with NO_PROXY.open(request, timeout=1) as reply:
                return int(reply.status) == 200
        except OSError:
            return False

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(0.2)
                continue
            log.warning("configurable-http-proxy exited with code %s; starting it again", process.returncode)
            if self._stopping.wait(RESTART_PAUSE):
                return
            try:
                self._spawn()
                self.restarts += 1
            except (OSError, RuntimeError) as error:
                log.warning("could not restart configurable-http-proxy: %s", error)

    def stop(self) -> None:
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join(5)
        self._kill()

    def _kill(self) -> None:
        if self._process is not None:
            end(self._process)


def end(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL: how a proxy process is stopped."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)
