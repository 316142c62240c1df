"""Lambda cold-start cost of the app module: what `import app` adds over its bare dependencies.

    .venv/bin/python bench/cold_start.py [--runs 15] [--json]

Each sample is a fresh `python -c` process (cwd = the repo root, us-east-1, dummy credentials) that
times only the import statement with time.perf_counter and prints it, so interpreter start-up is
left out. Samples alternate baseline (`import chalice, boto3, pydantic`) and app (`import app`) to
cancel drift; one untimed run of each first writes the .pyc files. Reported: both medians and
app/baseline (target <= 1.3).

Two more fresh processes:
- checks: with botocore.client.BaseClient.__init__ and boto3.session.Session.__init__ wrapped to
  count, `import app` must create no client and no session (boto3.DEFAULT_SESSION stays None) and
  must not import aws_xray_sdk;
- `python -X importtime -c "import app"`: the five modules the baseline does not import with the
  largest import time net of baseline modules beneath them (nested ones overlap their parents).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3
BASELINE = "import chalice, boto3, pydantic"
APP = "import app"
TIMED = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"
CHECKS = """
import json, sys
import boto3, boto3.session, botocore.client
made = {"clients": [], "sessions": 0}
client_init, session_init = botocore.client.BaseClient.__init__, boto3.session.Session.__init__
def counted_client(self, *args, **kwargs):
    made["clients"].append(type(self).__name__)
    client_init(self, *args, **kwargs)
def counted_session(self, *args, **kwargs):
    made["sessions"] += 1
    session_init(self, *args, **kwargs)
botocore.client.BaseClient.__init__, boto3.session.Session.__init__ = counted_client, counted_session
import app
print(json.dumps({"clients_created": made["clients"], "sessions_created": made["sessions"],
                  "default_session": boto3.DEFAULT_SESSION is not None,
                  "xray_imported": any(m.split(".")[0] == "aws_xray_sdk" for m in sys.modules)}))
"""
MODULES = BASELINE + "; import json, sys; print(json.dumps(sorted(sys.modules)))"


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return env


def python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *flags, "-c", code], cwd=ROOT, env=child_env(),  # noqa: S603
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"python -c {code!r} failed:\n{done.stderr.strip()[-2000:]}")
    return done


def import_seconds(statement: str) -> float:
    return float(python(TIMED.format(statement)).stdout.split()[-1])


def heaviest(count: int = 5) -> list[dict[str, Any]]:
    """Modules of `import app` the baseline does not load, by import time beyond the baseline.

    -X importtime prints each module after its children, indented two spaces per level. A module's
    ``beyond_ms`` is its cumulative time minus that of baseline modules it pulled in (pydantic is
    imported first under chalicelib.config, yet a Lambda pays for it with or without the app).
    """
    baseline = set(json.loads(python(MODULES).stdout.splitlines()[-1]))
    children: dict[int, list[float]] = {}  # depth -> beyond-baseline times of children awaiting their parent
    rows = []
    for line in python(APP, "-X", "importtime").stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        module, depth = name.strip(), (len(name) - len(name.lstrip()) - 1) // 2
        beyond = (0 if module in baseline else int(self_us)) + sum(children.pop(depth + 1, []))
        children.setdefault(depth, []).append(beyond)
        if module != "app" and module not in baseline:
            rows.append({"module": module, "beyond_ms": beyond / 1000, "cumulative_ms": int(cumulative_us) / 1000})
    return sorted(rows, key=lambda row: -row["beyond_ms"])[:count]


def measure(runs: int = 15) -> dict[str, Any]:
    print(f"timing {runs} + {runs} fresh imports, interleaved ...", flush=True)
    import_seconds(BASELINE), import_seconds(APP)  # warm-up: compile the .pyc files
    baseline, app = [], []
    for _ in range(runs):
        baseline.append(import_seconds(BASELINE))
        app.append(import_seconds(APP))
    checks = json.loads(python(CHECKS).stdout.splitlines()[-1])
    clean = not (checks["clients_created"] or checks["sessions_created"] or checks["default_session"]
                 or checks["xray_imported"])
    ratio = statistics.median(app) / statistics.median(baseline)
    return {"runs": runs, "baseline_median_ms": statistics.median(baseline) * 1000,
            "app_median_ms": statistics.median(app) * 1000, "ratio": ratio, "target_ratio": TARGET_RATIO,
            "checks": checks, "checks_ok": clean, "ok": clean and ratio <= TARGET_RATIO,
            "heaviest_beyond_baseline": heaviest(),
            "raw_ms": {"baseline": [s * 1000 for s in baseline], "app": [s * 1000 for s in app]}}


def report(result: dict[str, Any]) -> str:
    lines = [f"import time, median of {result['runs']} fresh processes each (interleaved):",
             f"  baseline ({BASELINE}) {result['baseline_median_ms']:8.1f} ms",
             f"  app ({APP}){'':<26}{result['app_median_ms']:8.1f} ms",
             f"  ratio app/baseline {result['ratio']:.2f} (target <= {TARGET_RATIO})",
             f"checks after `import app`: {json.dumps(result['checks'])} -> {'ok' if result['checks_ok'] else 'FAIL'}",
             "heaviest imports not in the baseline (beyond baseline / cumulative):"]
    lines += [f"  {row['module']:<40}{row['beyond_ms']:8.1f} ms{row['cumulative_ms']:8.1f} ms"
              for row in result["heaviest_beyond_baseline"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per side (at least 10 for the issue)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args()
    result = measure(args.runs)
    print(report(result), flush=True)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
