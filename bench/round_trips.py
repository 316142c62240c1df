"""AWS calls per request, counted with a botocore event hook on moto (issue 6 pins these in tests).

    .venv/bin/python bench/round_trips.py [--json]

Prints one line per step (label, total calls, calls by operation); with ``--json`` the last line is
a JSON dict {label: {"total": n, "calls": {operation: n}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(name, value)


def measure() -> dict[str, dict[str, Any]]:
    """{label: {"total": n, "calls": {operation: n}}} for each step of the seed flow, in order."""
    from chalice.test import Client
    from moto import mock_aws
    from moto.moto_api import state_manager

    from app import app
    from chalicelib.repository_urls import set_host_resolver
    from tests.conftest import _make_world, auth, body
    from tests.helpers import REPO, build_detail, run_all_starting, send_event, send_task_event, task_detail, task_of

    set_host_resolver(lambda host: ["140.82.112.3"])  # offline: any public address will do for github.com
    counts: dict[str, dict[str, Any]] = {}
    with mock_aws():
        state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**6})
        world = _make_world()
        calls: Counter[str] = Counter()
        for client_ in (world.dynamodb, world.ecs, world.codebuild, world.ecr):
            client_.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))

        def count(label: str, action: Callable[[], Any]) -> Any:
            calls.clear()
            result = action()
            counts[label] = {"total": sum(calls.values()), "calls": dict(calls)}
            print(f"{label:<34} {sum(calls.values()):>3}  {dict(calls)}", flush=True)
            return result

        with Client(app) as client:
            world.git.push(REPO)
            post = client.http.post
            image = count("POST /builds/repos (new)", lambda: body(post("/builds/repos", body=json.dumps(
                {"repository": REPO}))))["image-name"]
            # Events are built before counting: only what the handler itself calls counts.
            succeeded = build_detail(world, image, "SUCCEEDED")
            count("CodeBuild event", lambda: send_event(client, "build_events", "aws.codebuild",
                                                        "CodeBuild Build State Change", succeeded))
            count("POST /builds/repos (cached)", lambda: post("/builds/repos", body=json.dumps({"repository": REPO})))
            env = count("POST /stagings", lambda: body(post("/stagings", body=json.dumps({"image-name": image}),
                                                            headers=auth())))["environment-name"]
            cold = count("POST /deployments (cold)", lambda: body(post(f"/deployments/{env}", body="")))["id"]
            running = task_detail(world, task_of(world, env, cold), "RUNNING")
            count("ECS event (RUNNING)", lambda: send_task_event(client, running))
            count("GET /deployments/{env}/{id}", lambda: client.http.get(f"/deployments/{env}/{cold}"))
            count("GET /pools/{env}", lambda: client.http.get(f"/pools/{env}"))
            count("POST /pools/{env} size 10", lambda: post(f"/pools/{env}", body='{"size": 10}', headers=auth()))
            run_all_starting(client, world, env)
            count("POST /deployments (pool hit)", lambda: post(f"/deployments/{env}", body=""))
            count("schedule tick (refill 1)", lambda: client.lambda_.invoke("keeper", client.events.generate_cw_event(
                source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON on the last line")
    args = parser.parse_args()
    counts = measure()
    if args.json:
        print(json.dumps(counts))


if __name__ == "__main__":
    main()
