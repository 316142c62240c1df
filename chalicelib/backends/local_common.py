"""What the local adapters share: the work directory, running git and other tools, trimming output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Sequence

from chalicelib.config import Settings

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_WORK_DIR = ".binderless"
MAX_REASON = 300

# Never prompt for credentials (a private https repository would hang the build thread), keep git's
# messages in English so reasons read the same everywhere, and refuse the ext:: transport, which
# runs arbitrary commands.
GIT = ("git", "-c", "protocol.ext.allow=never")
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
# What local mode's own environment holds that code from a repository (setup.py, a notebook) must
# not read: the admin token, database credentials.
PRIVATE_VARIABLES = ("BINDERLESS_", "AWS_")


def public_environment(**extra: str) -> dict[str, str]:
    """This process's environment without its secrets, plus ``extra``: for every tool and server."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(PRIVATE_VARIABLES)}
    return env | extra


def work_dir(settings: Settings) -> Path:
    """BINDERLESS_LOCAL_DIR, or .binderless/ in the project (git-ignored)."""
    return Path(settings.local_dir or PROJECT_DIR / DEFAULT_WORK_DIR).resolve()


def trim(text: str, limit: int = MAX_REASON) -> str:
    """The last meaningful lines of a tool's output: git and pip say what went wrong at the end."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " / ".join(lines[-3:])
    return joined if len(joined) <= limit else "..." + joined[-(limit - 3):]


def run(command: Sequence[str], *, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool without a terminal or stdin; raises subprocess.TimeoutExpired past ``timeout``."""
    return subprocess.run(  # noqa: S603 (argument lists, never a shell)
        list(command), cwd=cwd, env=public_environment(**GIT_ENV), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def git(*args: str, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([*GIT, *args], timeout=timeout, cwd=cwd)
