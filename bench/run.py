"""All benchmarks in one run, one table: what `make bench` runs (under 5 minutes on 2 cores).

    make bench                                   # or: .venv/bin/python bench/run.py [--quick] [--only NAME,...]
    .venv/bin/python bench/local_bench.py        # local mode alone, full counts (--cold 20 --hits 20)

Each benchmark runs as its own subprocess with --json (a fresh interpreter and fresh moto state),
its output streamed to stderr; the last JSON line of its output is its result:

- round_trips:  AWS calls per request on moto, against the issue's targets (TARGETS below);
- cold_start:   median `import app` time in fresh processes vs chalice+boto3+pydantic (<= 1.3x),
                and that the import creates no boto3 client/session and loads no X-Ray;
- package_size: `chalice package` deployment.zip (< 10 MB);
- moto_claims:  a claim's Query and TransactWriteItems (beside 1,000 stopped servers) on moto as it is,
                with local_moto's first three speed-ups, and with all of them: medians/p95s and ratios,
                taking turns in one process;
- local_bench:  local mode's pool-hit POST p95 (<= 50 ms) and cold deployment times;
- jupyterhub_peer: the same cold launches and burst on JupyterHub (API only, pinned in bench/requirements.txt
                and bench/package.json), with as many cold launches; local mode's cold median, cold p95
                and burst are then shown as ratios to JupyterHub's (lower is better);
- scale:        bench/scale.py's rows, when that file exists.

A failing benchmark marks its section FAILED with the tail of its output; the others still run.
Prints the table on stdout and writes everything to bench/results/bench-<timestamp>.json
(git-ignored); exits 1 if a benchmark failed (a missed target is only marked ✗). --quick passes
smaller sample counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BUDGET_SECONDS = 480  # 300 before the JupyterHub peer (85 s); 420 before 3 settled bursts and 20 hits (+40 s)
# AWS calls per request the issue asks for (at most); steps not listed are shown without a target.
TARGETS = {
    "POST /deployments (pool hit)": 2,
    "GET /deployments/{env}/{id}": 1,
    "GET /pools/{env}": 1,
    "POST /builds/repos (cached)": 2,
    "POST /deployments (cold)": 3,
    "ECS event (RUNNING)": 2,
}
COLD_OVER_JUPYTER_MS = 150  # issue 12: a local cold launch within jupyter's own start-up plus this
POOL_HIT_P95_MS = 50  # the POST's own reply
POOL_HIT_TO_200_P95_MS = 40  # issue 12: a pool hit's POST until its location answers
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def benches(quick: bool) -> dict[str, list[str]]:
    """name -> arguments of bench/<name>.py (besides --json)."""
    cold = "5" if quick else "10"  # local mode and JupyterHub: as many cold launches each
    found = {
        "round_trips": [],
        "cold_start": ["--runs", "10" if quick else "15"],
        "package_size": [],
        "moto_claims": ["--claims", "90" if quick else "150"],
        "local_bench": ["--cold", cold, "--hits", "20"],  # a p95 of 10 samples is their maximum
        "jupyterhub_peer": ["--cold", cold],
        "scale": [],
    }
    return {name: args for name, args in found.items() if (BENCH / f"{name}.py").exists()}


def run(name: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run one benchmark, echoing its output to stderr; its result or the error and the tail of its output."""
    command = [sys.executable, str(BENCH / f"{name}.py"), *args, "--json"]
    print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=BENCH.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    timer = threading.Timer(timeout, kill_group, (child.pid,))
    timer.start()
    tail: deque[str] = deque(maxlen=200)
    assert child.stdout is not None
    for line in child.stdout:
        print(f"[{name}] {line}", end="", file=sys.stderr, flush=True)
        tail.append(line.rstrip("\n"))
    code = child.wait()
    timer.cancel()
    seconds = time.perf_counter() - started
    result = next((parsed for line in reversed(tail) if (parsed := as_json(line)) is not None), None)
    if code == 0 and result is not None:
        return {"ok": True, "seconds": seconds, "result": result}
    error = f"killed after {timeout:.0f} s" if code == -signal.SIGKILL else f"exit code {code}"
    return {"ok": False, "seconds": seconds, "error": error, "tail": list(tail)[-12:]}


def kill_group(pid: int) -> None:
    """The child and what it started (local mode's server): they share the child's new session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def as_json(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def row(label: str, value: str = "", target: str = "", ok: bool | None = None) -> str:
    return f"  {label:<46}{value:>18}  {target:<10}{'' if ok is None else mark(ok)}".rstrip()


def round_trips(result: dict[str, Any]) -> list[str]:
    lines = []
    for label, counts in result.items():
        total, target = counts.get("total"), TARGETS.get(label)
        known = target is not None and total is not None
        lines.append(row(label, str(total), f"<= {target}" if known else "", total <= target if known else None))
    return lines


def cold_start(result: dict[str, Any]) -> list[str]:
    heavy = ", ".join(f"{r['module']} {r['beyond_ms']:.0f}" for r in result.get("heaviest_beyond_baseline", [])[:3])
    return [row(f"baseline: chalice, boto3, pydantic (n={result['runs']})",
                f"{result['baseline_median_ms']:.0f} ms"),
            row(f"app: import app (n={result['runs']})", f"{result['app_median_ms']:.0f} ms"),
            row("ratio app / baseline", f"{result['ratio']:.2f}", f"<= {result['target_ratio']}",
                result["ratio"] <= result["target_ratio"]),
            row("no boto3 client/session, no X-Ray at import", "yes" if result["checks_ok"] else "NO", "",
                result["checks_ok"]),
            f"  heaviest beyond baseline (ms): {heavy}"]


def package_size(result: dict[str, Any]) -> list[str]:
    largest = ", ".join(f"{r['entry']} {r['mb']:.1f}" for r in result.get("largest", [])[:5])
    return [row(f"deployment.zip ({result['stage']})", f"{result['zip_mb']:.2f} MB", f"< {result['target_mb']:g} MB",
                result["zip_mb"] < result["target_mb"]),
            f"  largest unzipped (MB): {largest}"]


def local_bench(result: dict[str, Any]) -> list[str]:
    post, ready, cold = result["pool_hit_post"], result["pool_hit_post_to_200"], result["cold_deploy_to_200"]
    return [row(f"pool hit: POST 201, p95 (n={post['n']})", f"{post['p95'] * 1000:.1f} ms", f"<= {POOL_HIT_P95_MS} ms",
                post["p95"] * 1000 <= POOL_HIT_P95_MS),
            row(f"pool hit: POST -> location 200, p95 (n={ready['n']})", f"{ready['p95'] * 1000:.1f} ms",
                f"< {POOL_HIT_TO_200_P95_MS} ms", ready["p95"] * 1000 < POOL_HIT_TO_200_P95_MS),
            row(f"cold: POST -> location 200, median/p95 (n={cold['n']})",
                f"{cold['median']:.2f} s / {cold['p95']:.2f} s"),
            row("cold / jupyter alone (medians, same run)",
                f"{result['cold_vs_jupyter']:.2f}x ({result['cold_over_jupyter_ms']:+.0f} ms)", "<= +150 ms",
                result["cold_over_jupyter_ms"] <= COLD_OVER_JUPYTER_MS),
            row("pool of N: PUT size -> N available", f"{result['pool_fill']['median']:.2f} s"),
            row(f"burst: 10 on a pool of 10, all answer, median of {result['warm_burst']['n']}",
                f"{result['warm_burst']['median']:.2f} s",
                "< 0.3 s", result["warm_burst"]["median"] < 0.3),
            *(row(f"/build/ -> ready, {label}, median (n={result[key]['n']})", f"{result[key]['median']:.2f} s")
              for key, label in (("stream_new", "new repository"), ("stream_built", "built, empty pool"),
                                 ("stream_pooled", "warm pool"))),
            *proxy_rows(result)]


def moto_claims(result: dict[str, Any]) -> list[str]:
    rows = [row(f"{label} (n={result[name]['n']})",
                f"{result[name]['median'] * 1000:.1f} / {result[name]['p95'] * 1000:.1f} ms")
            for name, label in (("moto", f"a claim, {result['ended']['n']} stopped servers, moto as it is"),
                                ("local_moto_first_three", "  with local_moto's first three speed-ups"),
                                ("local_moto", "  with all of local_moto's"))]
    return [*rows, row("all / moto as it is, median (p95)",
                       f"{result['ratio']['median']:.2f}x ({result['ratio']['p95']:.2f}x)"),
            row("all / the first three, median (p95)",
                f"{result['ratio_first_three']['median']:.2f}x ({result['ratio_first_three']['p95']:.2f}x)")]


def proxy_rows(result: dict[str, Any]) -> list[str]:
    """What configurable-http-proxy adds to a request, over the same request straight to the server."""
    if "status_through" not in result:
        return []
    through, direct = result["status_through"], result["status_direct"]
    return [row(f"api/status through the proxy / direct, median (n={through['n']})",
                f"{through['median'] * 1000:.1f} / {direct['median'] * 1000:.1f} ms "
                f"({through['median'] / direct['median']:.2f}x)"),
            row("  the same, p95", f"{through['p95'] * 1000:.1f} / {direct['p95'] * 1000:.1f} ms "
                f"({through['p95'] / direct['p95']:.2f}x)")]


def jupyterhub_peer(result: dict[str, Any]) -> list[str]:
    cold, burst = result["cold"], result["burst"]
    return [row(f"cold: POST -> api/status 200, median/p95 (n={cold['n']})",
                f"{cold['median']:.2f} s / {cold['p95']:.2f} s"),
            row(f"burst: {burst['users']} users at once, all answer", f"{burst['median']:.2f} s"),
            "  " + ", ".join(f"{name} {number}" for name, number in result["versions"].items())]


def versus_jupyterhub(outcomes: dict[str, dict[str, Any]]) -> list[str]:
    """Local mode's figures over JupyterHub's, both from this run."""
    local, hub = (outcomes.get(name, {}) for name in ("local_bench", "jupyterhub_peer"))
    if not (local.get("ok") and hub.get("ok")):
        return ["  needs both local_bench and jupyterhub_peer"]
    local, hub = local["result"], hub["result"]
    pairs = [("cold median", local["cold_deploy_to_200"]["median"], hub["cold"]["median"]),
             ("cold p95", local["cold_deploy_to_200"]["p95"], hub["cold"]["p95"]),
             (f"burst of {hub['burst']['users']} (pool)", local["warm_burst"]["median"], hub["burst"]["median"])]
    return [row(f"{label}: {ours:.2f} s vs {theirs:.2f} s", f"{ours / theirs:.2f}x") for label, ours, theirs in pairs]


def scale(result: dict[str, Any]) -> list[str]:
    """One row per fleet size; RunTask must stay within its bound (the sum of ceil(missing / 10)), Scan at 0."""
    columns = ("pools", "servers", "due", "calls", "RunTask", "bound", "writes", "Scan", "tick s")
    keys = ("pools", "servers", "due", "total_calls", "run_task", "run_task_bound", "writes", "scan", "seconds")
    lines = ["  " + "".join(f"{c:>9}" for c in columns) + "      ok"]
    for r in result.get("rows", []):
        ok = r.get("scan") == 0 and r.get("run_task", 0) <= r.get("run_task_bound", 0)
        lines.append("  " + "".join(f"{'-' if r.get(k) is None else r[k]:>9}" for k in keys) + f"      {mark(ok)}")
    return lines


SECTIONS = {"round_trips": ("round trips per request (AWS calls)", round_trips),
            "cold_start": ("cold start (import time, fresh processes)", cold_start),
            "package_size": ("deployment package", package_size),
            "moto_claims": ("a claim on the embedded DynamoDB (moto, in-process)", moto_claims),
            "local_bench": ("local mode", local_bench),
            "jupyterhub_peer": ("JupyterHub peer (API only, SimpleLocalProcessSpawner, CHP)", jupyterhub_peer),
            "scale": ("scale (bench/scale.py)", scale)}


def table(outcomes: dict[str, dict[str, Any]], seconds: float) -> str:
    lines = [f"binderless benchmarks ({os.cpu_count()} CPUs, Python {platform.python_version()})",
             f"  {'':<46}{'value':>18}  {'target':<10}ok", "-" * 80]
    for name, outcome in outcomes.items():
        title, render = SECTIONS.get(name, (name, lambda result: [f"  {json.dumps(result)[:200]}"]))
        lines.append(f"{title}  [{outcome['seconds']:.1f} s]")
        try:
            lines += render(outcome["result"]) if outcome["ok"] else [
                f"  FAILED ({outcome['error']}):", *(f"    | {line}" for line in outcome["tail"] or ["(no output)"])]
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # a changed result shape
            lines.append(f"  cannot show the result ({error!r}); see the JSON file")
    if "local_bench" in outcomes or "jupyterhub_peer" in outcomes:
        lines.append("local mode / JupyterHub, same run (lower is better)")
        try:
            lines += versus_jupyterhub(outcomes)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            lines.append(f"  cannot compare ({error!r}); see the JSON file")
    lines += ["-" * 80, row("total wall time", f"{seconds:.1f} s", f"< {BUDGET_SECONDS} s", seconds < BUDGET_SECONDS)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sample counts")
    parser.add_argument("--only", help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds before a benchmark is killed")
    args = parser.parse_args()
    selected = benches(args.quick)
    if args.only:
        selected = {name: a for name, a in selected.items() if name in args.only.split(",")}
    stamp, started = time.strftime("%Y%m%d-%H%M%S"), time.perf_counter()
    outcomes = {name: run(name, bench_args, args.timeout) for name, bench_args in selected.items()}
    seconds = time.perf_counter() - started
    print(table(outcomes, seconds), flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps({"started": stamp, "seconds": seconds, "quick": args.quick, "cpus": os.cpu_count(),
                                "python": platform.python_version(), "benches": outcomes}, indent=2))
    print(f"written to {path}")
    sys.exit(0 if all(outcome["ok"] for outcome in outcomes.values()) else 1)


if __name__ == "__main__":
    main()
