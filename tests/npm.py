"""What the tests that need node share: skip or fail when a tool is missing, and ``npm ci`` when stale.

Without node or npm (or Chromium) these tests skip, unless BINDERLESS_REQUIRE_BROWSER=1 (CI sets it),
where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRED = os.environ.get("BINDERLESS_REQUIRE_BROWSER", "") == "1"


def missing(reason: str) -> NoReturn:
    """Skip, or fail where these tests must run (BINDERLESS_REQUIRE_BROWSER=1)."""
    if REQUIRED:
        pytest.fail(f"{reason} (BINDERLESS_REQUIRE_BROWSER=1: this test must run)")
    pytest.skip(f"{reason}; set BINDERLESS_REQUIRE_BROWSER=1 to make this a failure")


def run(command: list[str], cwd: Path, timeout: float) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def npm_installed(directory: Path, needed_for: str) -> str:
    """``directory``'s npm packages as its lock file pins them (``npm ci`` when node_modules is missing or
    older than the lock); returns npm's path."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        missing(f"node and npm are needed {needed_for} (apt-get install npm)")
    lock, installed = directory / "package-lock.json", directory / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], directory, timeout=900)
    return npm
