"""The local adapters against real git and real processes: what `make run` builds and runs on."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from chalicelib import errors
from chalicelib.backends import adapters_for, local_servers
from chalicelib.backends.base import BuildRequest, BuildState, EnvironmentSpec, Sidecar, TaskState
from chalicelib.backends.local import LocalBuilder, LocalResolver, LocalSpawner, LocalStager
from chalicelib.backends.local_common import work_dir
from chalicelib.backends.local_servers import NO_PROXY
from chalicelib.config import Settings
from tests.local_mode import wait_for
from tests.local_repo import commit, git, make_repository
from tests.tiny_jupyter import tiny_jupyter


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # The process was reaped between opening /proc/<pid>/stat and reading it: ESRCH on read.
        return False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(backend="local", local_dir=str(tmp_path / "work"))


@pytest.fixture
def spawner(settings: Settings) -> Iterator[LocalSpawner]:
    spawner = LocalSpawner(settings, grace=0.5)
    yield spawner
    spawner.stop_all()


def fake_python(tmp_path: Path, script: str) -> str:
    """An "interpreter" that ignores ``-m jupyter_server ...`` and runs ``script``: fast process tests."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_local_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({"BINDERLESS_LOCAL_DIR": "/srv/binderless", "BINDERLESS_LOCAL_TICK": "0.5"})
    assert work_dir(settings) == Path("/srv/binderless") and settings.local_tick == 0.5
    assert work_dir(Settings()) == Path(__file__).resolve().parents[1] / ".binderless"  # git-ignored


# --- resolver -------------------------------------------------------------------------------------

def test_resolver_lists_refs_of_local_paths_and_file_urls(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    first = make_repository(repository)
    git(repository, "tag", "--annotate", "--message", "release", "v1")
    git(repository, "switch", "--quiet", "--create", "feature")
    second = commit(repository, {"more.py": "x = 1\n"})
    git(repository, "switch", "--quiet", "main")
    resolver = LocalResolver()
    assert resolver.resolve(str(repository), "HEAD") == first
    assert resolver.resolve(f"file://{repository}", "feature") == second
    assert resolver.resolve(str(repository), "v1") == first  # the tagged commit, not the tag object
    assert resolver.resolve(str(repository), "A" * 40) == "a" * 40  # a full sha needs no lookup


def test_resolver_unknown_ref_is_not_found_and_unreadable_repository_is_bad_request(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    make_repository(repository)
    with pytest.raises(errors.NotFound, match="no-such-branch"):
        LocalResolver().resolve(str(repository), "no-such-branch")
    with pytest.raises(errors.BadRequest, match="could not be read"):
        LocalResolver().resolve(str(tmp_path / "missing"), "HEAD")


def test_local_backend_wires_the_local_adapters(settings: Settings) -> None:
    chosen = adapters_for(settings)
    assert isinstance(chosen.builder, LocalBuilder) and isinstance(chosen.stager, LocalStager)
    assert isinstance(chosen.spawner, LocalSpawner) and chosen.spawner.max_batch == 10
    assert isinstance(chosen.resolver, LocalResolver) and chosen.builder.local_repositories
    chosen.spawner.stop_all()


# --- builder and stager ---------------------------------------------------------------------------

def build(builder: LocalBuilder, repository: str, sha: str, name: str = "repo-abc") -> BuildState:
    started = builder.start(BuildRequest(name, repository, "HEAD", sha))
    assert started.status == "pending" and started.handle == {"id": started.image}
    done = wait_for(lambda: next((s for s in builder.poll([started.handle]) if s.status != "pending"), None),
                    timeout=120)
    assert isinstance(done, BuildState)
    return done


def test_build_clones_at_the_commit_and_the_stager_serves_the_checkout(tmp_path: Path, settings: Settings) -> None:
    repository = tmp_path / "repo"
    first = make_repository(repository, {"notes.md": "first\n"})
    commit(repository, {"notes.md": "second\n"})
    builder = LocalBuilder(settings)
    state = build(builder, f"file://{repository}", first)
    assert state.status == "completed", state.reason
    handle = LocalStager().register(EnvironmentSpec("env", state.image or state.handle["id"], 1024, 2048))
    assert (Path(handle["path"]) / "notes.md").read_text() == "first\n"  # the commit asked for, not HEAD
    assert handle["python"] == sys.executable  # no requirements.txt: no virtualenv
    again = builder.start(BuildRequest("repo-abc", str(repository), "HEAD", first))
    assert again.status == "completed"  # built once, then reused


def test_requirements_get_a_virtualenv_that_still_sees_jupyter(tmp_path: Path, settings: Settings) -> None:
    repository = tmp_path / "repo"
    sha = make_repository(repository, {"requirements.txt": "pydantic\n"})  # installed already: no download
    state = build(LocalBuilder(settings), str(repository), sha)
    assert state.status == "completed", state.reason
    python = LocalStager().register(EnvironmentSpec("env", state.handle["id"], 1024, 2048))["python"]
    assert python != sys.executable and Path(python).parent.parent.name == "venv"
    check = subprocess.run([python, "-c", "import jupyter_server, ipykernel, pydantic"], capture_output=True)
    assert check.returncode == 0, check.stderr


def test_clone_failure_is_a_failed_build_with_git_reason(tmp_path: Path, settings: Settings) -> None:
    state = build(LocalBuilder(settings), str(tmp_path / "gone"), "a" * 40)
    assert state.status == "failed"
    assert state.reason.startswith("git clone failed:") and "gone" in state.reason


def test_unknown_commit_fails_at_checkout(tmp_path: Path, settings: Settings) -> None:
    repository = tmp_path / "repo"
    make_repository(repository)
    state = build(LocalBuilder(settings), str(repository), "b" * 40)
    assert state.status == "failed" and state.reason.startswith("git checkout failed:")


def test_a_build_without_its_thread_is_reported_interrupted(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "work" / "builds" / "x").mkdir(parents=True)
    (tmp_path / "work" / "builds" / "x" / "build.json").write_text('{"status": "pending"}')
    state, = LocalBuilder(settings).poll([{"id": str(tmp_path / "work" / "builds" / "x")}])
    assert state.status == "failed" and "interrupted" in state.reason
    assert LocalBuilder(settings).from_event({"anything": 1}) is None


def test_an_operators_image_is_a_directory_served_by_this_interpreter(tmp_path: Path) -> None:
    handle = LocalStager().register(EnvironmentSpec("env", str(tmp_path), 1024, 2048))
    assert handle == {"path": str(tmp_path), "python": sys.executable}


def test_stager_refuses_missing_images_and_services(tmp_path: Path) -> None:
    with pytest.raises(errors.Invalid, match="not a directory"):
        LocalStager().register(EnvironmentSpec("env", str(tmp_path / "nothing"), 1024, 2048))
    sidecar = Sidecar("redis", "redis:7", 128, 256)
    with pytest.raises(errors.Invalid, match="services"):
        LocalStager().register(EnvironmentSpec("env", str(tmp_path), 1024, 2048, (sidecar,)))


# --- spawner --------------------------------------------------------------------------------------

def describe(spawner: LocalSpawner, handle: dict[str, str]) -> TaskState:
    state, = spawner.describe([handle])
    return state


def test_a_real_jupyter_server_runs_with_its_token_kept_out_of_argv(tmp_path: Path, spawner: LocalSpawner,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINDERLESS_ADMIN_TOKEN", "the-operators-secret")
    launched, = spawner.start({"path": str(tmp_path), "python": sys.executable}, ["s1"], "l", "k" * 48)
    assert re.fullmatch(rf"http://127\.0\.0\.1:{launched.handle['port']}/user/[0-9a-f]{{32}}/", launched.handle["url"])
    assert describe(spawner, launched.handle).status in ("starting", "running")
    running = wait_for(lambda: (s := describe(spawner, launched.handle)).status == "running" and s)
    assert isinstance(running, TaskState) and running.url == launched.handle["url"]
    cmdline = Path(f"/proc/{launched.handle['id']}/cmdline").read_bytes()
    assert launched.token and launched.token.encode() not in cmdline
    environ = Path(f"/proc/{launched.handle['id']}/environ").read_bytes().split(b"\0")
    assert f"JUPYTER_TOKEN={launched.token}".encode() in environ
    assert not [v for v in environ if v.startswith((b"BINDERLESS_", b"AWS_"))]  # notebook users read these


def cors_headers(url: str, origin: str, method: str = "GET", token: str = "") -> dict[str, str]:
    """The CORS headers of the server's answer to a browser's request from ``origin`` (OPTIONS: a preflight)."""
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "authorization"} if method == "OPTIONS" else {
               "Origin": origin, "Authorization": f"token {token}"}
    with NO_PROXY.open(urllib.request.Request(url, method=method, headers=headers), timeout=5) as response:
        return {name: value for name, value in response.headers.items() if name.startswith("Access-Control-")}


def test_servers_let_pages_of_the_listed_origins_read_their_replies(tmp_path: Path) -> None:
    page, other = "http://127.0.0.1:5173", "http://127.0.0.1:5174"
    listed, unlisted = (LocalSpawner(Settings(backend="local", local_dir=str(tmp_path / name), cors_origins=origins))
                        for name, origins in (("listed", (page,)), ("none", ())))
    try:
        (served,), (alone,) = (spawner.start({"path": str(tmp_path), "python": sys.executable}, ["s1"], "l", "k" * 48)
                               for spawner in (listed, unlisted))
        for spawner, launched in ((listed, served), (unlisted, alone)):
            wait_for(lambda: describe(spawner, launched.handle).status == "running", timeout=30)
        kernels = served.handle["url"] + "api/kernels"
        preflight = cors_headers(kernels, page, "OPTIONS")  # what a client sending Authorization needs first
        assert preflight["Access-Control-Allow-Origin"] == page
        assert "authorization" in preflight["Access-Control-Allow-Headers"]
        assert cors_headers(kernels, page, token=served.token)["Access-Control-Allow-Origin"] == page
        # jupyter answers every preflight once origins are set; the reply itself is what another page cannot read.
        assert "Access-Control-Allow-Origin" not in cors_headers(kernels, other, token=served.token)
        # No origins listed (local mode's default): no page of another origin gets past the preflight.
        assert "Access-Control-Allow-Origin" not in cors_headers(alone.handle["url"] + "api/kernels", page, "OPTIONS")
    finally:
        listed.stop_all()
        unlisted.stop_all()


def test_process_exit_is_noticed_as_stopped_with_its_code(tmp_path: Path, spawner: LocalSpawner) -> None:
    launched, = spawner.start({"path": str(tmp_path), "python": fake_python(tmp_path, "exit 3")}, ["s1"], "l", "k" * 48)
    stopped = wait_for(lambda: (s := describe(spawner, launched.handle)).status == "stopped" and s)
    assert isinstance(stopped, TaskState) and "code 3" in stopped.reason


def test_stop_kills_the_whole_process_group_even_what_ignores_sigterm(tmp_path: Path,
                                                                      spawner: LocalSpawner) -> None:
    # The "server" leaves a child that ignores SIGTERM, as a stuck kernel might.
    script = f"(trap '' TERM; exec sleep 300) & echo $! > {tmp_path}/child; wait"
    launched, = spawner.start({"path": str(tmp_path), "python": fake_python(tmp_path, script)}, ["s1"], "l", "k" * 48)
    child = int(wait_for(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip()))
    leader = int(launched.handle["id"])
    assert os.getpgid(child) == leader  # the server leads its own group
    spawner.stop(launched.handle, "deleted")
    wait_for(lambda: not alive(leader) and not alive(child), timeout=10)
    wait_for(lambda: describe(spawner, launched.handle).status == "stopped")
    spawner.stop(launched.handle, "deleted again")  # stopping a gone server is fine


def test_unknown_processes_are_stopped_and_never_signalled(spawner: LocalSpawner) -> None:
    mine = {"id": str(os.getpid()), "port": "1", "url": "http://127.0.0.1:1/user/x/"}
    assert describe(spawner, mine).status == "stopped"  # not started by this spawner: not ours
    spawner.stop(mine, "not ours")  # and must not kill the test run
    assert spawner.from_event({"taskArn": "x"}) is None


def test_stop_all_ends_every_server_and_refuses_new_ones(tmp_path: Path, spawner: LocalSpawner) -> None:
    python = fake_python(tmp_path, "trap '' TERM; sleep 300")
    launched = spawner.start({"path": str(tmp_path), "python": python}, ["a", "b", "c"], "l", "k" * 48)
    pids = [int(server.handle["id"]) for server in launched]
    assert sorted(spawner.pids()) == sorted(pids)
    spawner.stop_all()
    assert not any(alive(pid) for pid in pids)
    late, = spawner.start({"path": str(tmp_path), "python": python}, ["d"], "l", "k" * 48)
    assert late.failure == "local mode is shutting down"


@pytest.mark.parametrize("asked_by", ["setpriv", "preexec_fn"])
def test_servers_die_with_the_process_that_started_them(tmp_path: Path, asked_by: str) -> None:
    """If local mode is killed outright (no cleanup), Linux still ends its servers: asked for through
    util-linux's setpriv where it has --pdeathsig, else by Python in the forked child."""
    if asked_by == "setpriv" and not local_servers.parent_death_command():
        pytest.skip("this machine's setpriv has no --pdeathsig")
    without_setpriv = "local_servers.parent_death_command = lambda: (); " if asked_by == "preexec_fn" else ""
    code = ("import sys, time; from chalicelib.config import Settings; "
            "from chalicelib.backends import local_servers; "
            "from chalicelib.backends.local import LocalSpawner; " + without_setpriv +
            f"s = LocalSpawner(Settings(backend='local', local_dir={str(tmp_path)!r})); "
            f"environment = {{'path': {str(tmp_path)!r}, 'python': {fake_python(tmp_path, 'sleep 300')!r}}}; "
            "h, = s.start(environment, ['x'], 'l', 'k'); "
            "print(h.handle['id'], flush=True); time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    server = int(parent.stdout.readline())
    assert alive(server)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not alive(server), timeout=10)


def test_a_server_is_its_own_process_below_the_api_in_priority(tmp_path: Path, spawner: LocalSpawner) -> None:
    """The handle's pid is the server itself (setpriv execs it), and it runs at SERVER_NICENESS: a pool's
    start-ups (a second of CPU each) wait for the API's requests, not the other way round."""
    python = fake_python(tmp_path, "exec sleep 300")
    launched, = spawner.start({"path": str(tmp_path), "python": python}, ["a"], "l", "k" * 48)
    server = psutil.Process(int(launched.handle["id"]))
    wait_for(lambda: server.name() == "sleep", timeout=10)  # setpriv, then the script, exec'd in its place
    assert server.nice() == local_servers.SERVER_NICENESS == os.getpriority(os.PRIO_PROCESS, 0) + 10
    assert server.pid == os.getpgid(server.pid)  # still the leader of its own group: stop signals the group




def test_a_server_gets_the_apis_priority_back_once_it_answers(tmp_path: Path, spawner: LocalSpawner) -> None:
    """Its start-up (jupyter's imports) ran below the API; serving its reader does not, where this process
    may raise a priority (root here; an ordinary user keeps SERVER_NICENESS: the kernel refuses)."""
    if os.geteuid() != 0:
        pytest.skip("raising a priority takes root or CAP_SYS_NICE")
    python = tiny_jupyter(tmp_path)
    told: list[TaskState] = []
    spawner.subscribe(lambda task: told.append(task) or True)
    launched, = spawner.start({"path": str(tmp_path), "python": python}, ["a"], "l", "k" * 48)
    server = psutil.Process(int(launched.handle["id"]))
    wait_for(lambda: [task.status for task in told] == ["running"], timeout=20)
    assert server.nice() == os.getpriority(os.PRIO_PROCESS, 0)


def test_tasks_of_a_launch_are_what_one_start_call_started_and_still_runs(tmp_path: Path,
                                                                          spawner: LocalSpawner) -> None:
    python = fake_python(tmp_path, "exec sleep 300")
    lost = spawner.start({"path": str(tmp_path), "python": python}, ["a", "b"], "launch-1", "k" * 48)
    kept, = spawner.start({"path": str(tmp_path), "python": python}, ["c"], "launch-2", "k" * 48)

    assert sorted(h["id"] for h in spawner.tasks_of("launch-1")) == sorted(s.handle["id"] for s in lost)
    assert spawner.tasks_of("launch-2") == [kept.handle]
    assert kept.token == "k" * 48  # started alone: the key is its token
    assert spawner.token_for("", lost[0].handle) == lost[0].token

    spawner.stop(lost[0].handle, "deleted")
    wait_for(lambda: spawner.tasks_of("launch-1") == [lost[1].handle], timeout=10)
