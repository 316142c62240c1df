"""The notebook container's entry command: derive this task's own token, then exec jupyter.

ECS RunTask applies one set of overrides to every task of a batch, so the spawner cannot hand
each task its own token. It hands the batch a random key instead; each task derives its token
as HMAC(key, its own task id), which the spawner can compute too from the ARN RunTask returns.
A task started alone is given its token itself (``TOKEN_VARIABLE``), so it is known, and
saved, before RunTask.
``BOOTSTRAP`` runs inside the user's image (``python3 -c``), so it uses the standard library
only, and it must compute exactly what ``token_for`` computes (a test runs both). It then execs
``culling.SERVE``, the jupyter server that stops itself once used and idle.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from chalicelib.backends.culling import SERVE

KEY_VARIABLE = "BINDERLESS_BATCH_KEY"
TOKEN_VARIABLE = "BINDERLESS_TOKEN"  # noqa: S105 (a variable's name, not a secret)

# argv[1] is the program to run once the token is set (SERVE), argv[2:] its arguments. The key
# leaves the environment before exec, so neither the notebook user nor the kernels it starts can
# read it (not even in /proc/<pid>/environ, which only an exec replaces); the token goes through
# JUPYTER_TOKEN, not argv, so it does not show in `ps`. The metadata endpoint can lag the
# container by a moment: retry.
BOOTSTRAP = """\
import hashlib, hmac, json, os, sys, time, urllib.request
def task_id():
    for attempt in range(10):
        try:
            with urllib.request.urlopen(os.environ["ECS_CONTAINER_METADATA_URI_V4"] + "/task", timeout=5) as r:
                return json.load(r)["TaskARN"].rsplit("/", 1)[-1]
        except OSError:
            if attempt == 9:
                raise
            time.sleep(1)
token = os.environ.pop("BINDERLESS_TOKEN", "")
key = os.environ.pop("BINDERLESS_BATCH_KEY", "")
os.environ["JUPYTER_TOKEN"] = token or hmac.new(key.encode(), task_id().encode(), hashlib.sha256).hexdigest()[:48]
os.execv(sys.executable, [sys.executable, "-c"] + sys.argv[1:])
"""


def token_for(key: str, task_arn: str) -> str:
    """The token the task ``task_arn`` derives from its batch key (192 bits, hex)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    return hmac.new(key.encode(), task_id.encode(), hashlib.sha256).hexdigest()[:48]


def bootstrap_command(port: int, jupyter_arguments: Sequence[str] = ()) -> list[str]:
    """The container command override: ``BOOTSTRAP``, then ``SERVE`` on ``port`` with ``jupyter_arguments``."""
    return ["python3", "-c", BOOTSTRAP, SERVE, "--ip=0.0.0.0", f"--port={port}", "--no-browser", *jupyter_arguments]
