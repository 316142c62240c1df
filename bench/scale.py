"""The scheduled function over a growing fleet: 10, 100 and 1,000 pools of 20 servers (moto).

    .venv/bin/python bench/scale.py [--pools 10,100,1000] [--json]

Each size gets a fresh moto and the fleet of tests/scale.py: per pool 15 available servers (one in
ten due for its check, with a real moto task) and 5 handed out, and a pool size that leaves pool i
short of i % 13 servers. One tick then runs; every AWS call it makes is counted. Printed per size:
calls by operation, RunTask against its bound (the sum over pools of ceil(missing / 10)), writes,
Scans (must be 0) and the tick's time. The time is moto's plus ours (see tests/scale.py), so it
shows how the work grows, not how long DynamoDB and ECS would take.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(name, value)


def measure(pools: int) -> dict[str, Any]:
    from moto import mock_aws
    from moto.moto_api import state_manager

    from tests.conftest import _make_world
    from tests.scale import quick_moto_transactions, run_tick, seed, summary

    with mock_aws(), quick_moto_transactions():
        state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**6})
        try:
            world = _make_world(max_servers=0, max_servers_per_environment=0, max_servers_per_repository=0)
            started = time.perf_counter()
            fleet = seed(world, pools)
            seeded = time.perf_counter() - started
            row = summary(fleet, run_tick(world))
        finally:
            state_manager.unset_transition("ecs::task")
    return row | {"seed_seconds": round(seeded, 1)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'pools':>6}{'servers':>9}{'due':>6}{'missing':>9}{'calls':>7}{'RunTask':>9}{'bound':>7}"
             f"{'writes':>8}{'Scan':>6}{'tick s':>8}   calls by operation"]
    for row in rows:
        lines.append(f"{row['pools']:>6}{row['servers']:>9}{row['due']:>6}{row['deficit']:>9}{row['total_calls']:>7}"
                     f"{row['run_task']:>9}{row['run_task_bound']:>7}{row['writes']:>8}{row['scan']:>6}"
                     f"{row['seconds']:>8.2f}   {row['calls']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", default="10,100,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on the last line")
    args = parser.parse_args()
    rows = []
    for pools in (int(p) for p in args.pools.split(",")):
        rows.append(measure(pools))
        print(f"  {pools} pools: {rows[-1]['total_calls']} calls, {rows[-1]['seconds']} s "
              f"(seeding took {rows[-1]['seed_seconds']} s)", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
