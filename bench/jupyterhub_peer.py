"""The JupyterHub peer: local mode's launches done by JupyterHub, timed with local_bench's client.

    .venv/bin/python bench/jupyterhub_peer.py --cold 10 [--burst 10] [--json]

Starts JupyterHub (bench/requirements.txt) in API-only mode (``hub_routespec = "/hub/api/"``) on its
own ports and temporary directory, with SimpleLocalProcessSpawner and configurable-http-proxy
(bench/package.json; `make bench` installs both), and a service whose token has admin:users,
admin:servers and access:servers. Users are created before the clock starts. Then measures:

- cold: POST /hub/api/users/{name}/server -> the server is ready (201, or 202 and then the ready
  event of its progress stream) -> GET /user/{name}/api/status through the proxy, with the token,
  answers 200. Each server is stopped (DELETE, until the hub no longer lists it) before the next.
- burst: ``--burst`` users started at once, until every one's api/status answers 200 through the
  proxy. JupyterHub has no pool: this is that many cold starts at once, the peer of local mode's
  warm burst.

Prints a table and writes JSON to bench/results/ (git-ignored); with ``--json`` the last line is
the summary (everything but the raw samples). `make bench` (bench/run.py) runs it beside local_bench
and prints local mode's figures as ratios to these.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from local_bench import BURST, answers, report, summary  # noqa: E402 (after the path)

from tests.load import run_concurrently  # noqa: E402
from tests.local_mode import OPENER, Reply, alive, call, free_port, wait_for  # noqa: E402

PROXY = Path(__file__).resolve().parent.parent / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
HOST = "127.0.0.1"
# The service's role: create users, start and stop their servers, and reach them through the proxy.
SCOPES = ["admin:users", "admin:servers", "access:servers"]


@dataclass
class Hub:
    url: str  # the proxy's public URL: /hub/api/ goes to the hub, /user/{name}/ to that user's server
    token: str

    def api(self, method: str, path: str, body: Any = None) -> Reply:
        return call(method, f"{self.url}/hub/api{path}", body, token=self.token)


def hub_config(work: Path, public: str, token: str) -> str:
    """jupyterhub_config.py: API only, local processes for any user name, the pinned proxy."""
    args = ["--allow-root"] if os.geteuid() == 0 else []  # jupyter_server refuses root without it
    settings = {
        "JupyterHub.bind_url": public,
        "JupyterHub.hub_bind_url": f"http://{HOST}:{free_port()}",
        "JupyterHub.hub_routespec": "/hub/api/",
        "JupyterHub.db_url": f"sqlite:///{work / 'jupyterhub.sqlite'}",
        "JupyterHub.cookie_secret_file": str(work / "jupyterhub_cookie_secret"),
        "JupyterHub.authenticator_class": "null",  # nobody logs in: the service creates the users
        "JupyterHub.spawner_class": "simple",  # SimpleLocalProcessSpawner
        "JupyterHub.services": [{"name": "bench", "api_token": token}],
        "JupyterHub.load_roles": [{"name": "bench", "scopes": SCOPES, "services": ["bench"]}],
        "SimpleLocalProcessSpawner.home_dir_template": str(work / "home" / "{username}"),
        "Spawner.cmd": [sys.executable, "-m", "jupyterhub.singleuser"],
        "Spawner.args": args,
        # JupyterHub gives up on a server after 30 s (60 s to start): a loaded 2-core machine can take that
        # for a burst of 10, and then the bench would fail rather than measure.
        "Spawner.http_timeout": 120,
        "Spawner.start_timeout": 120,
        "ConfigurableHTTPProxy.command": [str(PROXY)],
        "ConfigurableHTTPProxy.api_url": f"http://{HOST}:{free_port()}",
        "ConfigurableHTTPProxy.auth_token": secrets.token_hex(24),
        "ConfigurableHTTPProxy.pid_file": str(work / "proxy.pid"),
    }
    return "".join(f"c.{key} = {value!r}\n" for key, value in settings.items())


@contextlib.contextmanager
def jupyterhub(work: Path) -> Iterator[Hub]:
    """JupyterHub and its proxy, answering on the proxy's public URL; stopped with their servers on exit."""
    if not PROXY.exists():
        raise SystemExit(f"{PROXY} is missing: `make bench` installs it (or: npm ci --prefix proxy)")
    public, token = f"http://{HOST}:{free_port()}", secrets.token_hex(24)
    config, log_path = work / "jupyterhub_config.py", work / "jupyterhub.log"
    config.write_text(hub_config(work, public, token))
    with log_path.open("w") as log:
        hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=work,  # noqa: S603
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: up(public, hub), 60, "JupyterHub answers through its proxy", every=0.1)
            yield Hub(public, token)
        except BaseException:
            print("".join(log_path.read_text().splitlines(keepends=True)[-30:]), file=sys.stderr, flush=True)
            raise
        finally:
            stop_hub(hub)


def up(public: str, hub: subprocess.Popen[bytes]) -> bool:
    if hub.poll() is not None:
        raise AssertionError(f"JupyterHub exited with code {hub.returncode}")
    return answers(f"{public}/hub/api/", "")


def stop_hub(hub: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the hub stops its servers and its proxy; whatever is left after 30 s is killed."""
    family = psutil.Process(hub.pid).children(recursive=True) if hub.poll() is None else []
    hub.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        hub.wait(30)
    for process in [psutil.Process(hub.pid), *family] if hub.poll() is None else family:
        if alive(process):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
    hub.wait()


def create_users(hub: Hub, names: list[str]) -> None:
    for name in names:
        reply = hub.api("POST", f"/users/{name}")
        assert reply.status == 201, f"creating {name}: {reply.status} {reply.body}"


def launch(hub: Hub, name: str) -> None:
    """Start ``name``'s server and wait until its api/status answers 200 through the proxy."""
    reply = hub.api("POST", f"/users/{name}/server")  # returns once ready, or after slow_spawn_timeout (10 s)
    assert reply.status in (201, 202), f"starting {name}: {reply.status} {reply.body}"
    if reply.status == 202:
        follow_progress(hub, name)
    status = partial(answers, f"{hub.url}/user/{name}/api/status", hub.token)
    wait_for(status, 30, f"{name}'s server answers through the proxy", every=0.05)


def follow_progress(hub: Hub, name: str) -> None:
    """Read the spawn's progress events, as BinderHub does, until the ready one. Polling the user
    model instead would load the single-threaded hub with our requests and slow the spawns we time."""
    request = urllib.request.Request(f"{hub.url}/hub/api/users/{name}/server/progress",  # noqa: S310 (http://)
                                     headers={"Authorization": f"token {hub.token}"})
    with OPENER.open(request, timeout=120) as stream:
        for line in stream:
            event = json.loads(line[len(b"data:"):]) if line.startswith(b"data:") else {}
            if event.get("ready"):
                return
            if event.get("failed"):
                raise AssertionError(f"{name}'s spawn failed: {event.get('message')}")
    raise AssertionError(f"{name}'s progress ended without a ready event")


def stop(hub: Hub, name: str) -> None:
    """DELETE the server (204, or 202 while it stops) and wait until the hub no longer lists it."""
    reply = hub.api("DELETE", f"/users/{name}/server")
    assert reply.status in (202, 204), f"stopping {name}: {reply.status} {reply.body}"
    if reply.status == 202:
        wait_for(lambda: "" not in hub.api("GET", f"/users/{name}").body.get("servers", {}), 60,
                 f"{name}'s server stops", every=0.5)


def cold_start(hub: Hub, name: str) -> float:
    """Seconds from POST .../server to api/status answering 200 through the proxy; then stopped."""
    started = time.perf_counter()
    launch(hub, name)
    elapsed = time.perf_counter() - started
    stop(hub, name)
    return elapsed


def burst(hub: Hub, names: list[str]) -> float:
    """Seconds for ``len(names)`` launches at once, each until its api/status answers 200."""
    seconds = run_concurrently(lambda number: launch(hub, names[number]), len(names), len(names))
    run_concurrently(lambda number: stop(hub, names[number]), len(names), len(names))
    return seconds


def versions() -> dict[str, str]:
    found = {}
    for package in ("jupyterhub", "jupyter_server", "tornado"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    chp = PROXY.parents[1] / "configurable-http-proxy" / "package.json"
    found["configurable-http-proxy"] = json.loads(chp.read_text())["version"] if chp.exists() else "missing"
    found["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()  # noqa: S603,S607
    return found


def table(results: dict[str, Any]) -> str:
    rows = [("cold: POST server -> api/status 200 via proxy", results["cold"]),
            (f"burst: {results['burst']['users']} users at once, all answer", results["burst"])]
    lines = [f"{'what':<46}{'n':>4}{'median':>11}{'p95':>11}{'max':>11}"]
    for label, stats in rows:
        lines.append(f"{label:<46}{stats['n']:>4}" + "".join(f"{stats[k] * 1000:>9.0f}ms" for k in
                                                          ("median", "p95", "max")))
    lines.append("versions: " + ", ".join(f"{name} {number}" for name, number in results["versions"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=10, help="cold launches to time")
    parser.add_argument("--burst", type=int, default=BURST, help="users started at once")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="binderless-jupyterhub-") as scratch:
        print("starting JupyterHub ...", flush=True)
        with jupyterhub(Path(scratch)) as hub:
            cold_users = [f"cold{number}" for number in range(args.cold)]
            burst_users = [f"burst{number}" for number in range(args.burst)]
            create_users(hub, cold_users + burst_users)
            cold = [cold_start(hub, name) for name in cold_users]
            print(f"  {args.cold} cold launches done", flush=True)
            burst_seconds = burst(hub, burst_users)
    results = {"cold": summary(cold), "burst": {**summary([burst_seconds]), "users": args.burst},
               "versions": versions(), "raw": {"cold": cold},
               "settings": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    report("jupyterhub", table(results), results, as_json=args.json)


if __name__ == "__main__":
    main()
