"""Size of the Lambda deployment package (target < 10 MB zipped).

    .venv/bin/python bench/package_size.py [--stage prod] [--json]

Runs `chalice package --stage prod <fresh temp dir>` (as `make package` does, AWS_DEFAULT_REGION
defaulting to us-east-1), never reusing out/, and reports deployment.zip's size plus its five
largest top-level entries (uncompressed bytes, grouped by first path component). Chalice keeps its
own cache of built dependencies in .chalice/deployments/, keyed by requirements.txt, so only the
first run after a requirements change downloads anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHALICE = Path(sys.executable).parent / "chalice"
TARGET_MB = 10.0
MB = 1024 * 1024


def measure(stage: str = "prod") -> dict[str, Any]:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    with tempfile.TemporaryDirectory(prefix="binderless-package-") as out:
        print(f"chalice package --stage {stage} {out} ...", flush=True)
        started = time.perf_counter()
        done = subprocess.run([str(CHALICE), "package", "--stage", stage, out], cwd=ROOT, env=env,  # noqa: S603
                              capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise RuntimeError(f"chalice package failed:\n{(done.stdout + done.stderr).strip()[-2000:]}")
        package = Path(out) / "deployment.zip"
        size = package.stat().st_size
        entries: Counter[str] = Counter()
        with zipfile.ZipFile(package) as archive:
            for info in archive.infolist():
                entries[info.filename.split("/")[0]] += info.file_size
    return {"stage": stage, "zip_mb": size / MB, "target_mb": TARGET_MB, "ok": size / MB < TARGET_MB,
            "unzipped_mb": sum(entries.values()) / MB, "package_seconds": seconds,
            "largest": [{"entry": name, "mb": total / MB} for name, total in entries.most_common(5)]}


def report(result: dict[str, Any]) -> str:
    lines = [f"deployment.zip ({result['stage']}): {result['zip_mb']:.2f} MB zipped (target < {TARGET_MB:g} MB), "
             f"{result['unzipped_mb']:.2f} MB unzipped, packaged in {result['package_seconds']:.1f} s",
             "largest top-level entries (unzipped):"]
    lines += [f"  {row['entry']:<40}{row['mb']:8.2f} MB" for row in result["largest"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="prod", help="chalice stage to package")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args()
    result = measure(args.stage)
    print(report(result), flush=True)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
