"""Local mode's latencies, as a user meets them: a cold deployment and a pool hit.

    .venv/bin/python bench/local_bench.py --cold 20 --hits 20 --pool-size 5 [--json]

Starts local mode as `make run` does (its own port and work dir), builds and stages a small git
repository, then measures:

- cold: POST /deployments/{env} on an empty pool (at a random point of the tick's cycle) ->
  GET /deployments/{env}/{id} until it has a location -> that location answers 200. Each server
  is deleted before the next cold start.
- pool hit: POST /deployments/{env} while the pool has servers available (201, location at once);
  also POST -> the location answering 200. Claimed in rounds of ``--pool-size``, the pool refilled
  and the claimed servers deleted between rounds.

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
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.local_mode import LocalMode, call, local_mode, wait_for  # noqa: E402 (after the path)
from tests.local_repo import make_repository  # noqa: E402

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


def measure(local: LocalMode, env: str, colds: int, hits: int, pool_size: int, tick: float) -> dict[str, Any]:
    cold = []
    for _ in range(colds):
        # Started right after the tick that saw the last one, every cold start would land at the same
        # point of the tick's cycle; a user arrives at any point of it.
        time.sleep(random.uniform(0, tick))  # noqa: S311 (not a secret)
        cold.append(cold_start(local, env))
    print(f"  {colds} cold starts done", flush=True)
    assert local.api("POST", f"/pools/{env}", {"size": pool_size}).status == 200
    posts: list[float] = []
    ready: list[float] = []
    while len(posts) < hits:
        wait_for(lambda: available(local, env) == pool_size, 120, f"the pool fills to {pool_size}")
        for posted, answered in pool_round(local, env, min(pool_size, hits - len(posts))):
            posts.append(posted)
            ready.append(answered)
    local.api("DELETE", f"/pools/{env}")
    return {"cold_deploy_to_200": summary(cold), "pool_hit_post": summary(posts),
            "pool_hit_post_to_200": summary(ready), "raw": {"cold": cold, "pool_hit_post": posts}}


def table(results: dict[str, Any]) -> str:
    rows = [("cold deploy: POST -> location answers 200", results["cold_deploy_to_200"]),
            ("pool hit: POST /deployments (201)", results["pool_hit_post"]),
            ("pool hit: POST -> location answers 200", results["pool_hit_post_to_200"])]
    lines = [f"{'what':<44}{'n':>4}{'median':>11}{'p95':>11}{'max':>11}"]
    for label, stats in rows:
        lines.append(f"{label:<44}{stats['n']:>4}" + "".join(f"{stats[k] * 1000:>9.0f}ms" for k in
                                                          ("median", "p95", "max")))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=20, help="cold deployments to time")
    parser.add_argument("--hits", type=int, default=20, help="pool hits to time")
    parser.add_argument("--pool-size", type=int, default=5, help="servers kept ready between rounds of claims")
    parser.add_argument("--tick", type=float, default=2.0, help="BINDERLESS_LOCAL_TICK for local mode (seconds)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="binderless-bench-") as scratch:
        work = Path(scratch)
        make_repository(work / "repository")
        print("starting local mode ...", flush=True)
        with local_mode(work, secrets.token_urlsafe(24), BINDERLESS_LOCAL_TICK=str(args.tick)) as local:
            env = local.build_and_stage(work / "repository")
            results = measure(local, env, args.cold, args.hits, args.pool_size, args.tick)
    results["settings"] = {"tick_seconds": args.tick, "check_interval_seconds": 1, "pool_size": args.pool_size,
                           "cpus": os.cpu_count(), "python": platform.python_version()}
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"local-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"written to {path}", flush=True)
    if args.json:
        print(json.dumps({key: value for key, value in results.items() if key != "raw"}))


if __name__ == "__main__":
    main()
