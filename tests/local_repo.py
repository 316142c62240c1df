"""Real git repositories on disk for the local backend's tests (no network)."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_IDENTITY = ["-c", "user.name=binderless tests", "-c", "user.email=tests@binderless.invalid"]
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'


def git(repository: Path, *args: str) -> str:
    result = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=repository, capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


def make_repository(path: Path, files: dict[str, str] | None = None, *, branch: str = "main") -> str:
    """A repository at ``path`` with one commit of ``files``; returns the commit's sha."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch", branch)
    return commit(path, files or {"hello.py": "print('hello from binderless')\n", "analysis.ipynb": NOTEBOOK})


def commit(path: Path, files: dict[str, str], message: str = "change") -> str:
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", message)
    return git(path, "rev-parse", "HEAD")
