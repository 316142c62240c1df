"""Local mode's latencies, as a user meets them: a cold deployment and a pool hit.

    .venv/bin/python bench/local_bench.py --cold 20 --hits 20 --pool-size 5 [--json]

Starts local mode as `make run` does (its own port and work dir), builds and stages a small git
repository, then measures:

- cold: POST /deployments/{env} on an empty pool (at a random point of the tick's cycle) ->
  GET /deployments/{env}/{id} until it has a location -> that location answers 200. Each server
  is deleted before the next cold start.
- burst: 10 concurrent launches on a warm pool of 10, each until its location answers (median of 3).
- idle: the share of a core local mode's own process uses for IDLE_SECONDS beside a full pool (its tick).
- pool hit: POST /deployments/{env} while the (settled) pool has servers available (201, location at once);
  also POST -> the location answering 200. Claimed in rounds of ``--pool-size``, the pool refilled
  and the claimed servers deleted between rounds, each round at a random point of the tick's cycle.
- the proxy (``--router chp``, as `make run`): one server's ``api/status`` through it and straight to the
  server's own port, in turns (what the proxy adds to every request).
- launch stream: BinderHub's GET /build/git/<repository>/HEAD, read as EventSource reads it, until
  ``ready``: for a repository never seen (clone, stage, start), a built one with an empty pool
  (start), and one with a warm pool (claim).

Prints a table and writes JSON to bench/results/ (git-ignored); with ``--json`` the last line is
the summary (everything but the raw samples) as JSON. `make bench` (bench/run.py) runs it with the
other benchmarks, with fewer cold starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil  # noqa: E402 (after the path)

from chalicelib.backends.local import LocalSpawner  # noqa: E402 (after the path)
from chalicelib.config import Settings  # noqa: E402
from chalicelib.local import LOCAL_DEFAULTS  # noqa: E402
from tests.event_source import events  # noqa: E402
from tests.load import run_concurrently  # noqa: E402
from tests.local_mode import LocalMode, call, local_mode, wait_for  # noqa: E402
from tests.local_repo import make_repository  # noqa: E402

BURST = 10
SETTLE = 2.0  # seconds a full pool is left before a burst or a round of pool hits (warm_burst says why)
STREAMS = 3  # launches through the /build/ stream, of each kind
BURSTS = 3  # the median of three: one burst alone swings by half (the first in a process is the slowest)
RESULTS = Path(__file__).resolve().parent / "results"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {"n": len(ordered), "median": statistics.median(ordered), "p95": p95, "min": ordered[0],
            "max": ordered[-1]}


def cold_start(local: LocalMode, env: str) -> float:
    """Seconds from POST /deployments to a location that answers 200."""
    started = time.perf_counter()
    reply = local.api("POST", f"/deployments/{env}")
    assert reply.status == 202, reply.body  # the pool is empty: a cold start
    server_id = reply.body["id"]
    location = wait_for(lambda: local.api("GET", f"/deployments/{env}/{server_id}").body.get("location"),
                        60, "a location", every=0.05)
    wait_for(lambda: call("GET", location).status == 200, 30, "the location answers", every=0.05)
    elapsed = time.perf_counter() - started
    local.api("DELETE", f"/deployments/{env}/{server_id}")
    return elapsed


def jupyter_alone(peer: LocalSpawner, root: Path, number: int) -> float:
    """The peer, once: seconds from starting a server process (the spawner's own command, no API, no
    database) to its first page, as a reader opens its location (``<url>?token=``: JupyterLab's page,
    which its first render makes 0.1-0.3 s dearer than ``api/status``), polled every 10 ms: the same
    request the cold launch is timed to. Local mode cannot beat this."""
    started = time.perf_counter()
    launched, = peer.start({"path": str(root)}, [f"alone{number}"], "alone", secrets.token_hex(24))
    page = f"{launched.handle['url']}?token={launched.token}"
    wait_for(partial(answers, page), 60, "jupyter answers", every=0.01)
    seconds = time.perf_counter() - started
    peer.stop(launched.handle, "measured")
    return seconds


def answers(url: str, token: str = "") -> bool:
    try:
        return call("GET", url, token=token or None).status == 200
    except OSError:  # refused while it starts
        return False


def pool_fill(local: LocalMode, env: str, size: int) -> float:
    """Seconds from setting an empty pool's size to every one of its servers being available."""
    started = time.perf_counter()
    assert local.api("PUT", f"/pools/{env}", {"size": size}).status == 200
    wait_for(lambda: available(local, env) == size, 120, f"the pool fills to {size}", every=0.02)
    return time.perf_counter() - started


def warm_burst(local: LocalMode, env: str, size: int) -> float:
    """Seconds for ``size`` concurrent launches on a warm pool of ``size``, each until its location answers.

    Warm: full, and left SETTLE seconds as a pool sits between launches. Right after the last of its
    servers answers, the ones started last are still finishing their start-up on the same two cores,
    and a burst then measured 0.32-0.44 s against 0.22-0.26 s settled."""
    assert local.api("PUT", f"/pools/{env}", {"size": size}).status == 200
    wait_for(lambda: available(local, env) == size, 120, f"the pool fills to {size}", every=0.05)
    time.sleep(SETTLE)
    claimed: list[str] = []

    def launch(_: int) -> None:
        reply = local.api("POST", f"/deployments/{env}")
        assert reply.status == 201, f"expected a pool hit, got {reply.status} {reply.body}"
        assert call("GET", reply.body["location"]).status == 200
        claimed.append(reply.body["id"])

    seconds = run_concurrently(launch, size, size)
    local.api("DELETE", f"/pools/{env}")
    for server_id in claimed:
        local.api("DELETE", f"/deployments/{env}/{server_id}")
    return seconds


def stream_to_ready(local: LocalMode, repository: Path) -> tuple[float, str]:
    """Seconds from opening the launch's /build/ stream to its ``ready`` event, and the server's event id."""
    started = time.perf_counter()
    _, told = events(f"{local.base}/build/git/{quote(repository.as_uri(), safe='')}/HEAD", token=local.token)
    seconds = time.perf_counter() - started
    assert told and told[-1]["phase"] == "ready", told[-3:]
    return seconds, told[-1]["_id"]  # server/<environment>/<id>


def launch_streams(local: LocalMode, work: Path, runs: int) -> dict[str, list[float]]:
    """The /build/ stream to ``ready``: a new repository, the same one built (empty pool), then pooled."""
    timings: dict[str, list[float]] = {"new": [], "built": [], "pooled": []}
    stop = partial(stop_server, local)
    for number in range(runs):
        fresh = work / f"streamed-{number}"
        make_repository(fresh)
        seconds, server = stream_to_ready(local, fresh)
        timings["new"].append(seconds)
        stop(server)
        seconds, server = stream_to_ready(local, fresh)
        timings["built"].append(seconds)
        stop(server)
    env = server.split("/")[1]
    assert local.api("PUT", f"/pools/{env}", {"size": runs}).status == 200
    wait_for(lambda: available(local, env) == runs, 120, f"the pool fills to {runs}", every=0.05)
    time.sleep(SETTLE)
    for _ in range(runs):
        seconds, server = stream_to_ready(local, fresh)
        timings["pooled"].append(seconds)
    local.api("DELETE", f"/pools/{env}")
    return timings


def stop_server(local: LocalMode, event_id: str) -> None:
    _, env, server_id = event_id.split("/")
    local.api("DELETE", f"/deployments/{env}/{server_id}")


def available(local: LocalMode, env: str) -> int:
    return int(local.api("GET", f"/pools/{env}").body["available"])


def pool_round(local: LocalMode, env: str, claims: int) -> list[tuple[float, float]]:
    """(POST seconds, POST-to-200 seconds) for ``claims`` claims from a full pool."""
    timings, claimed = [], []
    for _ in range(claims):
        started = time.perf_counter()
        reply = local.api("POST", f"/deployments/{env}")
        posted = time.perf_counter() - started
        assert reply.status == 201, f"expected a pool hit, got {reply.status} {reply.body}"
        assert call("GET", reply.body["location"]).status == 200
        timings.append((posted, time.perf_counter() - started))
        claimed.append(reply.body["id"])
    for server_id in claimed:  # handed-out servers do not count in the pool; free the machine anyway
        local.api("DELETE", f"/deployments/{env}/{server_id}")
    return timings


IDLE_SECONDS = 20.0
SPEED_STEPS = 1_000_000


def machine_speed() -> float:
    """Seconds this process takes for a fixed pure-Python loop: how fast the machine is right now. On this
    two-core machine it moved by 1.6x within an hour (1.16 to 1.82 s for 10 million steps), and every
    latency moves with it; the bench runs it right before each round of pool hits, to be read beside them."""
    started, total = time.perf_counter(), 0
    for step in range(SPEED_STEPS):
        total += step
    return time.perf_counter() - started


def idle_cpu(local: LocalMode, env: str, pool_size: int) -> float:
    """The share of a core local mode's own process uses while nobody calls it and its pool is full: its
    tick's cost (the schedule's every ``--tick`` seconds), what an operator's idle machine pays."""
    wait_for(lambda: available(local, env) == pool_size, 120, f"the pool fills to {pool_size}")
    time.sleep(SETTLE)
    process = psutil.Process(local.process.pid)
    before, started = process.cpu_times(), time.perf_counter()
    time.sleep(IDLE_SECONDS)
    after = process.cpu_times()
    return (after.user + after.system - before.user - before.system) / (time.perf_counter() - started)


PROXIED_REQUESTS = 200  # GET api/status through the proxy and straight to the server, taking turns


def proxy_cost(local: LocalMode, env: str) -> dict[str, list[float]]:
    """One server's ``api/status``, through the proxy (its location) and straight to its own port, in turns."""
    reply = local.api("POST", f"/deployments/{env}")
    server_id = reply.body["id"]
    location = reply.body.get("location") or wait_for(
        lambda: local.api("GET", f"/deployments/{env}/{server_id}").body.get("location"), 60, "a location")
    base, token = location.split("?token=")
    port = next(part.split("=", 1)[1] for part in local.server(location).cmdline() if part.startswith("--port="))
    direct = f"http://127.0.0.1:{port}{urllib.parse.urlsplit(base).path}"
    timings: dict[str, list[float]] = {"through": [], "direct": []}
    for _ in range(PROXIED_REQUESTS):
        for name, url in (("through", base), ("direct", direct)):
            started = time.perf_counter()
            assert call("GET", f"{url}api/status?token={token}").status == 200
            timings[name].append(time.perf_counter() - started)
    local.api("DELETE", f"/deployments/{env}/{server_id}")
    return timings


def measure(local: LocalMode, env: str, colds: int, hits: int, pool_size: int, tick: float,
            work: Path) -> dict[str, Any]:
    cold, alone = [], []
    # The peer and the cold launch take turns, on the same repository: each pair meets the machine in
    # the same state (run one after the other, the peer's median moved by 0.4 s between runs).
    peer = LocalSpawner(Settings(backend="local", local_dir=str(work / "alone")), grace=0.5)
    try:
        for number in range(colds):
            alone.append(jupyter_alone(peer, work / "repository", number))
            # Started right after the tick that saw the last one, every cold start would land at the same
            # point of the tick's cycle; a user arrives at any point of it.
            time.sleep(random.uniform(0, tick))  # noqa: S311 (not a secret)
            cold.append(cold_start(local, env))
    finally:
        peer.stop_all()
    print(f"  {colds} cold starts done", flush=True)
    filled = pool_fill(local, env, pool_size)
    posts: list[float] = []
    ready: list[float] = []
    speed: list[float] = []
    while len(posts) < hits:
        wait_for(lambda: available(local, env) == pool_size, 120, f"the pool fills to {pool_size}")
        # Warm, as for the burst (measured unsettled, the p95 swung from 34 to 62 ms), and at any point of the
        # tick's cycle, as a reader arrives: started a fixed SETTLE (= the tick) after the pool filled, a run's
        # rounds all met the tick at about the same point of it, and its p95 depended on that point (traced, in
        # the same hour: 34-35 ms in two runs where no round met a tick, 46 ms in one where one round did).
        time.sleep(SETTLE + random.uniform(0, tick))  # noqa: S311 (not a secret)
        speed.append(machine_speed())  # the pool settled: what else runs here is not ours
        for posted, answered in pool_round(local, env, min(pool_size, hits - len(posts))):
            posts.append(posted)
            ready.append(answered)
    idle = idle_cpu(local, env, pool_size)
    local.api("DELETE", f"/pools/{env}")
    proxied = proxy_cost(local, env) if local.proxy() else {}
    bursts = [warm_burst(local, env, BURST) for _ in range(BURSTS)]
    streams = launch_streams(local, work, STREAMS)
    return {"cold_deploy_to_200": summary(cold), "jupyter_alone": summary(alone), "pool_fill": summary([filled]),
            "warm_burst": summary(bursts), "idle_cpu_share": idle, "machine_speed": summary(speed),
            "pool_hit_post": summary(posts), "pool_hit_post_to_200": summary(ready),
            **{f"stream_{case}": summary(samples) for case, samples in streams.items()},
            **{f"status_{name}": summary(samples) for name, samples in proxied.items()},
            "raw": {"cold": cold, "jupyter_alone": alone, "pool_hit_post": posts, "pool_hit_post_to_200": ready,
                    "machine_speed": speed}}


def table(results: dict[str, Any]) -> str:
    rows = [("peer: jupyter alone, start -> its page 200", results["jupyter_alone"]),
            ("cold deploy: POST -> location answers 200", results["cold_deploy_to_200"]),
            ("pool of N: PUT size -> N available", results["pool_fill"]),
            (f"burst: {BURST} launches on a pool of {BURST}, all answer", results["warm_burst"]),
            ("pool hit: POST /deployments (201)", results["pool_hit_post"]),
            ("pool hit: POST -> location answers 200", results["pool_hit_post_to_200"]),
            ("/build/ -> ready: a new repository", results["stream_new"]),
            ("/build/ -> ready: built, empty pool", results["stream_built"]),
            ("/build/ -> ready: a warm pool", results["stream_pooled"])]
    lines = [f"{'what':<46}{'n':>4}{'median':>11}{'p95':>11}{'max':>11}"]
    for label, stats in rows:
        lines.append(f"{label:<46}{stats['n']:>4}" + "".join(f"{stats[k] * 1000:>9.0f}ms" for k in
                                                          ("median", "p95", "max")))
    if "status_through" in results:
        rows = [("api/status straight to the server", results["status_direct"]),
                ("api/status through the proxy", results["status_through"])]
        lines += [f"{label:<46}{stats['n']:>4}" + "".join(f"{stats[k] * 1000:>9.1f}ms" for k in
                                                         ("median", "p95", "max")) for label, stats in rows]
    lines.append(f"local mode idle beside a full pool: {results['idle_cpu_share'] * 100:.1f}% of a core")
    speed = results["machine_speed"]
    lines.append(f"the machine's speed before each round of pool hits: {SPEED_STEPS:,} Python steps in "
                 f"{speed['median'] * 1000:.0f} ms (median), {speed['max'] * 1000:.0f} ms (slowest round)")
    lines.append(f"cold deploy / jupyter alone (medians): {results['cold_vs_jupyter']:.2f}x, "
                 f"{results['cold_over_jupyter_ms']:+.0f} ms")
    if "status_through" in results:
        through, direct = results["status_through"], results["status_direct"]
        lines.append(f"the proxy adds {(through['median'] - direct['median']) * 1000:+.1f} ms (median), "
                     f"{(through['p95'] - direct['p95']) * 1000:+.1f} ms (p95) to a request")
    return "\n".join(lines)


def report(name: str, printed: str, results: dict[str, Any], *, as_json: bool) -> None:
    """Print the table, write every figure to bench/results/<name>-<time>.json and, with ``as_json``,
    print the summary (all but the raw samples) as JSON on the last line, for bench/run.py."""
    print(printed)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"written to {path}", flush=True)
    if as_json:
        print(json.dumps({key: value for key, value in results.items() if key != "raw"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=20, help="cold deployments to time")
    parser.add_argument("--hits", type=int, default=20, help="pool hits to time")
    parser.add_argument("--pool-size", type=int, default=5, help="servers kept ready between rounds of claims")
    parser.add_argument("--tick", type=float, default=2.0, help="BINDERLESS_LOCAL_TICK for local mode (seconds)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    parser.add_argument("--router", choices=("chp", "direct"), default="chp",
                        help="configurable-http-proxy in front (as make run) or each server on its own port")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="binderless-bench-") as scratch:
        work = Path(scratch)
        make_repository(work / "repository")
        print("starting local mode ...", flush=True)
        with local_mode(work, secrets.token_urlsafe(24), BINDERLESS_LOCAL_TICK=str(args.tick),
                        BINDERLESS_ROUTER=args.router) as local:
            env = local.build_and_stage(work / "repository")
            results = measure(local, env, args.cold, args.hits, args.pool_size, args.tick, work)
    cold, alone = results["cold_deploy_to_200"]["median"], results["jupyter_alone"]["median"]
    results["cold_vs_jupyter"], results["cold_over_jupyter_ms"] = cold / alone, (cold - alone) * 1000
    results["settings"] = {"router": args.router, "tick_seconds": args.tick,
                           **{name.removeprefix("BINDERLESS_").lower(): int(value)
                              for name, value in LOCAL_DEFAULTS.items() if name.endswith("CHECK_INTERVAL")},
                           "pool_size": args.pool_size, "cpus": os.cpu_count(), "python": platform.python_version()}
    report("local", table(results), results, as_json=args.json)


if __name__ == "__main__":
    main()
