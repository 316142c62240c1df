"""Local builds: ``git ls-remote`` resolves refs; a build is a clone at the commit (+ a virtualenv).

A build lives in ``<work dir>/builds/<image-name>/``: ``repo/`` is the checkout, ``venv/`` the
virtualenv when the repository has a requirements.txt, and ``build.json`` the record of how it
went (pending, completed or failed with a reason). The build directory is the image: the
stager reads ``build.json`` to learn which directory to serve and which interpreter runs it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import site
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chalicelib import errors
from chalicelib.backends.base import BuildEvent, BuildRequest, BuildState, Handle
from chalicelib.backends.local_common import GIT, git, run, trim, work_dir
from chalicelib.config import Settings
from chalicelib.resolver import FULL_SHA, Advertisement, GitHttpResolver
from chalicelib.statuses import BuildStatus

log = logging.getLogger(__name__)

RECORD = "build.json"
CLONE_TIMEOUT = 600.0
INSTALL_TIMEOUT = 1800.0


def parse_ls_remote(output: str) -> Advertisement:
    """``git ls-remote --symref`` output: "ref: refs/heads/main<TAB>HEAD" and "<sha><TAB><refname>" lines."""
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head_target = ""
    for line in output.splitlines():
        left, _, refname = line.partition("\t")
        if left.startswith("ref: ") and refname == "HEAD":
            head_target = left.removeprefix("ref: ").strip()
        elif FULL_SHA.fullmatch(left) and refname:
            target = peeled if refname.endswith("^{}") else refs
            target[refname.removesuffix("^{}")] = left.lower()
    return Advertisement(refs=refs, peeled=peeled, head_target=head_target)


class LocalResolver(GitHttpResolver):
    """``RefResolver`` with the git binary, so file:// URLs and local paths work too.

    The lookup rules (a full sha passes through, branches before tags, what is NotFound) are
    GitHttpResolver's; only the listing of refs differs."""

    def __init__(self, timeout: float = 30.0) -> None:
        super().__init__(timeout=timeout)

    def list_refs(self, repository: str) -> Advertisement:
        if repository.startswith("-"):  # git would read it as an option
            raise errors.BadRequest(f"repository {repository} is not a URL or an absolute path")
        try:
            result = git("ls-remote", "--symref", repository, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise errors.Unavailable(f"repository {repository} did not answer within {self.timeout:.0f} seconds; "
                                     "try again shortly", headers={"Retry-After": "10"}) from None
        if result.returncode != 0:
            raise errors.BadRequest(f"repository {repository} could not be read: {trim(result.stderr)}")
        return parse_ls_remote(result.stdout)


def read_record(build_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((build_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(build_dir: Path, **record: str) -> None:
    # Written whole and renamed, so a reader never sees half a record.
    temporary = build_dir / f".{RECORD}.tmp"
    temporary.write_text(json.dumps(record))
    os.replace(temporary, build_dir / RECORD)


class BuildFailed(Exception):
    """One step of a local build failed; the message is the build's reason."""


class LocalBuilder:
    """``Builder`` port: each build runs in a thread of this process."""

    local_repositories = True  # `git clone` takes paths, file:// and http:// on the user's own machine

    def __init__(self, settings: Settings) -> None:
        self.root = work_dir(settings) / "builds"
        self._lock = threading.Lock()
        self._running: set[Path] = set()

    def start(self, request: BuildRequest) -> BuildState:
        build_dir = self._build_dir(request.image_name)
        handle = {"id": str(build_dir)}
        record = read_record(build_dir)
        if record and record.get("status") == "completed":
            return BuildState(BuildStatus.completed, image=str(build_dir), handle=handle)
        with self._lock:
            if build_dir in self._running:
                return BuildState(BuildStatus.pending, image=str(build_dir), handle=handle)
            self._running.add(build_dir)
        try:
            shutil.rmtree(build_dir, ignore_errors=True)  # what an earlier, failed attempt left
            build_dir.mkdir(parents=True)
            write_record(build_dir, status="pending")
        except OSError as error:
            with self._lock:
                self._running.discard(build_dir)
            raise errors.BackendError(f"cannot prepare the build directory {build_dir}: {error}") from None
        threading.Thread(target=self._build, args=(request, build_dir), name=f"build-{request.image_name}",
                         daemon=True).start()
        return BuildState(BuildStatus.pending, image=str(build_dir), handle=handle)

    def _build_dir(self, image_name: str) -> Path:
        if not image_name or Path(image_name).name != image_name or image_name.startswith("."):
            raise errors.BadRequest(f"image name {image_name!r} cannot name a directory")
        return self.root / image_name

    def poll(self, handles: Sequence[Handle]) -> list[BuildState]:
        return [self._state(Path(handle.get("id", ""))) for handle in handles]

    def _state(self, build_dir: Path) -> BuildState:
        handle = {"id": str(build_dir)}
        with self._lock:  # first: a build thread writes its last record before it leaves _running
            if build_dir in self._running:
                return BuildState(BuildStatus.pending, image=str(build_dir), handle=handle)
        record = read_record(build_dir) or {}
        if record.get("status") == "completed":
            return BuildState(BuildStatus.completed, image=str(build_dir), handle=handle)
        if record.get("status") == "failed":
            return BuildState(BuildStatus.failed, reason=str(record.get("reason", "the build failed")), handle=handle)
        # Its thread died with an earlier run of local mode (or the directory was removed).
        return BuildState(BuildStatus.failed, reason="the build was interrupted; build again", handle=handle)

    def from_event(self, detail: Mapping[str, Any]) -> BuildEvent | None:
        return None  # local builds send no platform events; poll() is the only way

    def _build(self, request: BuildRequest, build_dir: Path) -> None:
        try:
            checkout = clone(request.repository, request.commit, build_dir / "repo")
            python = make_virtualenv(checkout, build_dir / "venv") or sys.executable
            write_record(build_dir, status="completed", checkout=str(checkout), python=python)
        except BuildFailed as failure:
            write_record(build_dir, status="failed", reason=str(failure))
        except Exception as error:  # a thread has nobody to raise to: record it as the build's failure
            log.exception("local build of %s crashed", request.image_name)
            write_record(build_dir, status="failed", reason=f"the build crashed: {trim(str(error))}")
        finally:
            with self._lock:
                self._running.discard(build_dir)


def clone(repository: str, commit: str, checkout: Path) -> Path:
    """The repository checked out at ``commit`` (detached) in ``checkout``."""
    if not FULL_SHA.fullmatch(commit):
        raise BuildFailed(f"commit {commit!r} is not a full sha")
    _step("git clone", [*GIT, "clone", "--quiet", "--no-checkout", "--", repository, str(checkout)],
          CLONE_TIMEOUT)
    _step("git checkout", [*GIT, "-C", str(checkout), "checkout", "--quiet", "--detach", commit],
          CLONE_TIMEOUT)
    return checkout


def make_virtualenv(checkout: Path, venv: Path) -> str | None:
    """The interpreter of a virtualenv with the checkout's requirements.txt, or None without one.

    ``--system-site-packages`` only reaches the base interpreter's packages; when local mode itself
    runs in a virtualenv (.venv), jupyter_server and ipykernel live there, so a .pth file adds the
    running interpreter's site-packages after the new virtualenv's own (its requirements win)."""
    requirements = checkout / "requirements.txt"
    if not requirements.is_file():
        return None
    _step("virtualenv", [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], 120)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], timeout=60)
    if purelib.returncode != 0:
        raise BuildFailed(f"virtualenv is not usable: {trim(purelib.stderr)}")
    (Path(purelib.stdout.strip()) / "binderless-host.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # The host's pip installs into the virtualenv (``--python``): no pip bootstrap per build.
    _step("pip install", [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                          "--disable-pip-version-check", "-r", str(requirements)], INSTALL_TIMEOUT)
    return str(python)


def _step(name: str, command: Sequence[str], timeout: float) -> None:
    try:
        result = run(command, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"{name} took longer than {timeout:.0f} seconds") from None
    except OSError as error:
        raise BuildFailed(f"{name} could not run: {error}") from None
    if result.returncode != 0:
        raise BuildFailed(f"{name} failed: {trim(result.stderr or result.stdout)}")
