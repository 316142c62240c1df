"""Local builds: ``git ls-remote`` resolves refs; a build is a clone at the commit (+ a virtualenv).

A build lives in ``<work dir>/builds/<image-name>/``: ``repo/`` is the checkout, ``venv/`` the
virtualenv when the repository has a requirements.txt, ``build.log`` what git and pip said as they
ran (the build's log, read in pages by ``logs``), and ``build.json`` the record of how it went
(pending, completed or failed with a reason). The build directory is the image: the
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
from chalicelib.backends.base import BuildEvent, BuildRequest, BuildState, Handle, LogPage
from chalicelib.backends.local_common import GIT, GIT_ENV, git, public_environment, run, trim, work_dir
from chalicelib.config import Settings
from chalicelib.resolver import FULL_SHA, Advertisement, GitHttpResolver
from chalicelib.statuses import BuildStatus

log = logging.getLogger(__name__)

RECORD = "build.json"
LOG = "build.log"
LOG_PAGE_BYTES = 64 * 1024
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
    info: Mapping[str, str] = {"local": "git clone, then pip install -r requirements.txt in a virtualenv"}

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

    def logs(self, handle: Handle, cursor: str = "") -> LogPage:
        if cursor and not cursor.isdigit():
            raise errors.BadRequest(f"cursor {cursor!r} is not one this API gave: pass the last reply's cursor")
        offset = int(cursor or 0)
        try:
            with open(Path(handle.get("id", "")) / LOG, "rb") as log:
                log.seek(offset)
                chunk = log.read(LOG_PAGE_BYTES)
        except OSError:  # not started, or a build nobody knows
            return LogPage([], str(offset))
        # Whole lines only (the rest is still being written), unless one line is longer than a page.
        complete = chunk[:chunk.rfind(b"\n") + 1] or (chunk if len(chunk) == LOG_PAGE_BYTES else b"")
        return LogPage(complete.decode("utf-8", "replace").splitlines(), str(offset + len(complete)))

    def _build(self, request: BuildRequest, build_dir: Path) -> None:
        try:
            build_log = BuildLog(build_dir / LOG)
            checkout = clone(request.repository, request.commit, build_dir / "repo", build_log)
            python = make_virtualenv(checkout, build_dir / "venv", build_log) or sys.executable
            write_record(build_dir, status="completed", checkout=str(checkout), python=python)
        except BuildFailed as failure:
            write_record(build_dir, status="failed", reason=str(failure))
        except Exception as error:  # a thread has nobody to raise to: record it as the build's failure
            log.exception("local build of %s crashed", request.image_name)
            write_record(build_dir, status="failed", reason=f"the build crashed: {trim(str(error))}")
        finally:
            with self._lock:
                self._running.discard(build_dir)


def clone(repository: str, commit: str, checkout: Path, log: BuildLog) -> Path:
    """The repository checked out at ``commit`` (detached) in ``checkout``."""
    if not FULL_SHA.fullmatch(commit):
        raise BuildFailed(f"commit {commit!r} is not a full sha")
    log.step("git clone", [*GIT, "clone", "--no-checkout", "--", repository, str(checkout)], CLONE_TIMEOUT)
    log.step("git checkout", [*GIT, "-C", str(checkout), "checkout", "--detach", commit], CLONE_TIMEOUT)
    return checkout


def make_virtualenv(checkout: Path, venv: Path, log: BuildLog) -> str | None:
    """The interpreter of a virtualenv with the checkout's requirements.txt, or None without one.

    ``--system-site-packages`` only reaches the base interpreter's packages; when local mode itself
    runs in a virtualenv (.venv), jupyter_server and ipykernel live there, so a .pth file adds the
    running interpreter's site-packages after the new virtualenv's own (its requirements win)."""
    requirements = checkout / "requirements.txt"
    if not requirements.is_file():
        return None
    log.step("virtualenv", [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], 120)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], timeout=60)
    if purelib.returncode != 0:
        raise BuildFailed(f"virtualenv is not usable: {trim(purelib.stderr)}")
    (Path(purelib.stdout.strip()) / "binderless-host.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # The host's pip installs into the virtualenv (``--python``): no pip bootstrap per build.
    log.step("pip install", [sys.executable, "-m", "pip", "--python", str(python), "install", "--progress-bar=off",
                             "--disable-pip-version-check", "-r", str(requirements)], INSTALL_TIMEOUT)
    return str(python)


class BuildLog:
    """A build's log file: each step's name, then what its command says, as it says it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def step(self, name: str, command: Sequence[str], timeout: float) -> None:
        """Run one step of the build; BuildFailed with the end of its output if it fails."""
        with open(self.path, "ab") as log:
            log.write(f"--- {name}\n".encode())
            log.flush()
            started = log.tell()
            try:
                result = subprocess.run(  # noqa: S603 (an argument list, never a shell)
                    list(command), env=public_environment(**GIT_ENV), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise BuildFailed(f"{name} took longer than {timeout:.0f} seconds") from None
            except OSError as error:
                raise BuildFailed(f"{name} could not run: {error}") from None
        if result.returncode != 0:
            with open(self.path, "rb") as log:
                log.seek(started)
                said = log.read().decode("utf-8", "replace")
            raise BuildFailed(f"{name} failed: {trim(said)}")
