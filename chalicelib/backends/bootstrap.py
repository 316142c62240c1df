"""The notebook container's first process: derive this task's own token, then exec the image's entry point.

ECS RunTask applies one set of overrides to every task of a batch, so the spawner cannot hand
each task its own token. It hands the batch a random key instead; each task derives its token
as HMAC(key, its own task id), which the spawner can compute too from the ARN RunTask returns.
A task started alone is given its token itself, so it is known, and saved, before RunTask.

Where the secret travels. Not in the container's environment: ECS runs the health check (and any
ECS Exec session) as new processes of the container with the container's environment, as the
notebook user, so the key would sit in a fresh ``/proc/<pid>/environ`` every few seconds. It is
the first argument of the command instead (``secret_argument``), and only the first process sees
it: the task definition's ``ENTRY_POINT`` makes ``BOOTSTRAP`` PID 1, in place of the image's own
entry point, which would keep its arguments and environment for the life of the task.

``BOOTSTRAP`` writes the token to ``TOKEN_FILE`` (0600, in a 0700 directory: the server's user
only), then execs, with no secret in the environment or the arguments, repo2docker's entry point
when the image has one (it loads the login shell's environment, runs the repository's ``start``
script, relays signals) and ``culling.SERVE`` under it. jupyter reads the token from the file
(``JUPYTER_TOKEN_FILE``, jupyter_server 1.x and 2.x), and so does the container's health check
(``HEALTH_CHECK``), so no process carries the token in its environment: only a path.
The key is gone from every process once PID 1 has exec'd, before any code of the repository runs.

Behind the proxy (``Settings.router == "chp"``) every server lives under ``/user/<task id>/``: the
spawner reports that path in its URL (aws_tasks.py) and the proxy routes it there. One command serves a
whole batch, so the command cannot name the task: ``bootstrap_command(base_prefix="/user/")`` passes the
prefix, and ``BOOTSTRAP`` appends the task id (the one it reads for the token) and hands jupyter
``--ServerApp.base_url``. It writes that base path to ``BASE_URL_FILE`` beside the token, where the
health check reads it (``/`` when the file is missing: a server started without a prefix).

Both run inside the user's image (``python3 -c``), so they use the standard library only, and
``BOOTSTRAP`` must compute exactly what ``token_for`` and ``base_url_for`` compute (tests run both).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from chalicelib.backends.culling import SERVE

KEY_VARIABLE = "BINDERLESS_BATCH_KEY"
TOKEN_VARIABLE = "BINDERLESS_TOKEN"  # noqa: S105 (a name, not a secret)
# Fixed, so that the health check finds it with the container's own environment; a test may point
# it elsewhere with TOKEN_FILE_VARIABLE in that environment.
TOKEN_FILE = "/tmp/binderless/token"  # noqa: S105, S108 (a path; the container's own /tmp, a 0700 directory)
TOKEN_FILE_VARIABLE = "BINDERLESS_TOKEN_FILE"  # noqa: S105 (a name, not a secret)
# The server's base path (``/`` or ``/user/<task id>/``), in this file of the token's directory.
BASE_URL_FILE = "base_url"
# BOOTSTRAP's optional second argument: "<PREFIX_VARIABLE>=/user/" serves under /user/<task id>/.
PREFIX_VARIABLE = "BINDERLESS_BASE_PREFIX"
# The task definition's entryPoint; the RunTask command override (``bootstrap_command``) follows it.
ENTRY_POINT = ["python3", "-c"]

# argv: -c, the secret (KEY=... or TOKEN=...), optionally PREFIX=/user/, then SERVE and its arguments,
# which run with this same interpreter (under repo2docker's entry point when it is on PATH). The metadata
# endpoint can lag the container by a moment: retry. The task id is read once, for the token and the path.
BOOTSTRAP = f"""\
import hashlib, hmac, json, os, shutil, sys, time, urllib.request
known = []
def task_id():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
    for attempt in range(10 if not known else 0):
        try:
            with opener.open(os.environ["ECS_CONTAINER_METADATA_URI_V4"] + "/task", timeout=5) as r:
                known.append(json.load(r)["TaskARN"].rsplit("/", 1)[-1])
                break
        except OSError:
            if attempt == 9:
                raise
            time.sleep(1)
    return known[0]
def write(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
name, _, secret = sys.argv[1].partition("=")
if name == "{TOKEN_VARIABLE}":
    token = secret
else:
    token = hmac.new(secret.encode(), task_id().encode(), hashlib.sha256).hexdigest()[:48]
args = sys.argv[2:]
base = "/"
if args and args[0].startswith("{PREFIX_VARIABLE}="):
    base = args.pop(0).partition("=")[2] + task_id() + "/"
    args.append("--ServerApp.base_url=" + base)
path = os.environ.get("{TOKEN_FILE_VARIABLE}", "{TOKEN_FILE}")
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
os.chmod(os.path.dirname(path), 0o700)
write(os.path.join(os.path.dirname(path), "{BASE_URL_FILE}"), base)
write(path, token)
env = {{k: v for k, v in os.environ.items() if k not in ("{KEY_VARIABLE}", "{TOKEN_VARIABLE}", "JUPYTER_TOKEN")}}
env["JUPYTER_TOKEN_FILE"] = path
serve = [sys.executable, "-c"] + args
entry = shutil.which("repo2docker-entrypoint")
if entry:
    os.execve(entry, [entry] + serve, env)
os.execve(sys.executable, serve, env)
"""

# GET <base path>api/status with the token: 0 once jupyter answers with this task's token, 1 before (and
# after). -I -S: no site-packages and no user site, so it starts in milliseconds, every few seconds, on the
# smallest task; urllib, not curl, which repo2docker images need not have. The base path is the one
# BOOTSTRAP wrote beside the token ("/" without the file).
HEALTH_CHECK = f"""\
import os, sys, urllib.request
try:
    path = os.environ.get("{TOKEN_FILE_VARIABLE}", "{TOKEN_FILE}")
    token = open(path).read()
    try:
        base = open(os.path.join(os.path.dirname(path), "{BASE_URL_FILE}")).read().strip("/")
    except OSError:
        base = ""
    url = "http://127.0.0.1:%d/" + (base + "/" if base else "") + "api/status"
    request = urllib.request.Request(url, headers={{"Authorization": "token " + token}})
    with urllib.request.build_opener(urllib.request.ProxyHandler({{}})).open(request, timeout=%d) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
"""


def token_for(key: str, task_arn: str) -> str:
    """The token the task ``task_arn`` derives from its batch key (192 bits, hex)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    return hmac.new(key.encode(), task_id.encode(), hashlib.sha256).hexdigest()[:48]


def secret_argument(key: str, *, solo: bool) -> str:
    """``BOOTSTRAP``'s first argument: the token of a task started alone, else the batch key."""
    return f"{TOKEN_VARIABLE if solo else KEY_VARIABLE}={key}"


def base_url_for(task_arn: str, base_prefix: str) -> str:
    """The base path the task ``task_arn`` serves under when started with ``base_prefix`` ("" for none)."""
    return f"{base_prefix}{task_arn.rsplit('/', 1)[-1]}/" if base_prefix else "/"


def bootstrap_command(port: int, secret: str, jupyter_arguments: Sequence[str] = (), *,
                      base_prefix: str = "") -> list[str]:
    """The RunTask command override (after ``ENTRY_POINT``): ``BOOTSTRAP`` with ``secret``, then
    ``SERVE`` on ``port`` with ``jupyter_arguments``; with ``base_prefix`` (``/user/``), each task serves
    under ``<base_prefix><its task id>/`` (``base_url_for``).

    ``trust_xheaders``: servers sit behind a proxy, whose X-Forwarded-Proto/-For jupyter then uses
    (https for its cookies, the client's address in its logs)."""
    if base_prefix and not (base_prefix.startswith("/") and base_prefix.endswith("/")):
        raise ValueError(f"a base prefix starts and ends with '/': {base_prefix!r}")
    prefix = [f"{PREFIX_VARIABLE}={base_prefix}"] if base_prefix else []
    return [BOOTSTRAP, secret, *prefix, SERVE, "--ip=0.0.0.0", f"--port={port}", "--no-browser",
            "--ServerApp.trust_xheaders=True", *jupyter_arguments]


def health_check_command(port: int, timeout: int) -> list[str]:
    """The container health check's command (ECS ``healthCheck.command``), for a server on ``port``."""
    return ["CMD", "python3", "-I", "-S", "-c", HEALTH_CHECK % (port, timeout)]
