"""Culling: a server that was used stops itself once idle; a pooled server waiting to be claimed does not.

jupyter_server has the rule we want, ``ServerApp.shutdown_no_activity_timeout``: no kernels and no
activity for N seconds, and the server stops. Applied inside the server, it needs no Lambda that
reaches into the VPC: the process exits, the task stops, and the ECS STOPPED event marks the server
stopped (locally, ``describe`` sees the exit). But jupyter counts from the server's start when
nothing has happened, so a pooled server nobody has claimed would stop itself after N seconds and
the pool would start another, over and over.

``SERVE`` runs jupyter_server with that rule armed only once the server has been used: once a
request has recorded activity in the web app's settings. jupyter records ``api_last_activity`` for
every *authenticated* API request (a browser opening the location makes many at once); terminals
record ``terminal_last_activity`` and jupyter-server-proxy records ``api_last_activity`` the same
way. Requests without the token do not count, and neither do readiness checks: jupyter marks
``GET api/status`` ``_track_activity = False``. Once armed, jupyter's own check decides, counting
from the last activity: any kernel keeps the server up.

So idle kernels must go too, or a kernel left behind would keep its server until the maximum
lifetime: jupyter's kernel culler shuts down a kernel that has sent nothing for
``kernel_idle_timeout`` seconds, connected or not (a tab left open in the background), but never a
busy one (a long computation). Culling a kernel is activity, so a server whose user walked away
from a running kernel stops after about ``kernel_idle_timeout + idle_timeout``. Idle terminals are
culled the same way.

A server handed out but never opened is never armed: the maximum lifetime ends it.

Two flaws of jupyter_server that a page on another origin meets are mended there too. An error
reply (403, 404, 500) carries no ``Access-Control-Allow-Origin``: jupyter sets it in ``prepare`` and
tornado's ``send_error`` clears every header but the defaults, so the page sees an opaque "blocked by
CORS policy" instead of the error; with the operator's origins set (never the token-based default)
SERVE adds them to the defaults. And ``GET api/kernels`` answers 500 when it lands while a kernel is
being started (listed, but not yet given ``last_activity``), which @jupyterlab/services' polling does
on a busy server: that kernel is left out of the list until it is marked, as a kernel that just went
away already is.

``SERVE`` also starts jupyter 2.5 s sooner where jsonschema would load ``rfc3987_syntax`` (jsonschema 4.25+
with its format-nongpl extra, which jupyter_events asks for): that module compiles a grammar on import
for its optional "iri" format checks, which jsonschema skips when the module cannot be imported.

``SERVE`` runs inside the user's image (``python3 -c``): the standard library and the image's own
jupyter_server (1.x or 2.x) only. Where it cannot subclass ``ServerApp`` it execs plain
``jupyter server`` with the no-activity shutdown off (kernels are still culled): a server that
never stops itself beats a pool that never stops starting servers.

What users see first is decided there too, from what the image has: JupyterLab (``/lab``) when
``jupyterlab`` is installed, else the classic tree (``/tree``, from ``notebook`` or ``nbclassic``),
else jupyter's own ``/``. It is the default of ``default_url``, so an image's own configuration still
wins (plain ``jupyter server`` only takes it as an option). The repository's directory is not
searched: a folder named ``notebook`` in it is not the notebook package. Where it is JupyterLab, its
import no longer asks node for yarn's configuration (half of the 0.9 s JupyterLab adds to a start here):
that names the npm registry for building JupyterLab's extensions, which a temporary server never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chalicelib.config import Settings

SHUTDOWN_OPTION = "--ServerApp.shutdown_no_activity_timeout="

# argv[1:] are `jupyter server` arguments. jupyter checks for no activity every 60 s whatever the
# timeout; this checks every timeout/2 (1 to 60 s), so short timeouts are honoured closely.
SERVE = f"""\
import os, sys
# jsonschema, imported by jupyter_server through jupyter_events, builds rfc3987_syntax's grammar on import:
# 2.5 s of every start here, for two format checks ("iri") of event schemas. jsonschema does without it.
sys.modules.setdefault("rfc3987_syntax", None)
from importlib.machinery import PathFinder
def installed(name):
    spec = PathFinder.find_spec(name, [p for p in sys.path if p not in ("", os.getcwd())])
    return bool(spec and spec.origin)
page = "/lab" if installed("jupyterlab") else "/tree" if installed("notebook") or installed("nbclassic") else ""
if page == "/lab":
    try:  # JupyterLab runs node on import (0.4-0.5 s of every start) to read yarn's registry, which only
        # `jupyter labextension install` uses: a temporary server never builds JupyterLab.
        import jupyterlab.commands
        jupyterlab.commands._yarn_config = lambda logger: {{"yarn config": {{}}, "npm config": {{}}}}
    except Exception:
        pass
try:
    from jupyter_server.serverapp import ServerApp
    from tornado.ioloop import PeriodicCallback
    from traitlets import default
    ServerApp.init_shutdown_no_activity, ServerApp.shutdown_no_activity
except (ImportError, AttributeError):
    args = [a for a in sys.argv[1:] if not a.startswith("{SHUTDOWN_OPTION}")]
    if page and not any(a.startswith("--ServerApp.default_url=") for a in args):
        args.append("--ServerApp.default_url=" + page)
    os.execvp("jupyter", ["jupyter", "server"] + args + ["{SHUTDOWN_OPTION}0"])


class BinderlessServerApp(ServerApp):
    @default("default_url")
    def first_page(self):
        return page or "/"

    def init_shutdown_no_activity(self):
        timeout = self.shutdown_no_activity_timeout
        if timeout > 0:
            self.log.info("Once used, will shut down after %d seconds with no kernels and no activity.", timeout)
            PeriodicCallback(self.shutdown_if_used_and_idle, 1000 * max(1, min(60, timeout // 2))).start()

    def shutdown_if_used_and_idle(self):
        if any(key.endswith("_last_activity") for key in self.web_app.settings):
            self.shutdown_no_activity()


try:
    from jupyter_server.base.handlers import JupyterHandler
    from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
    from traitlets import TraitError
    model_of, headers_of = MappingKernelManager.kernel_model, JupyterHandler.set_default_headers

    def kernel_model(self, kernel_id):
        try:
            return model_of(self, kernel_id)
        except (AttributeError, TraitError):  # listed before start_kernel has marked it: not there yet
            raise KeyError(kernel_id) from None

    def set_default_headers(self):
        headers_of(self)
        if (self.allow_origin or self.allow_origin_pat) and hasattr(self, "set_cors_headers"):
            self.set_cors_headers()

    MappingKernelManager.kernel_model = kernel_model
    JupyterHandler.set_default_headers = set_default_headers
except (ImportError, AttributeError):
    pass

BinderlessServerApp.launch_instance(sys.argv[1:])
"""


def check_interval(timeout: int) -> int:
    """Seconds between checks for a timeout of ``timeout`` seconds: late by at most half of it, or a minute."""
    return max(1, min(60, timeout // 2))


def culling_arguments(settings: Settings) -> list[str]:
    """``jupyter server`` options for the idle rules of ``settings`` (for ``SERVE``; 0 turns a rule off).

    Always given, 0 included: the operator's settings win over whatever config files the image has."""
    kernels, every = settings.kernel_idle_timeout, check_interval(settings.kernel_idle_timeout)
    arguments = [f"{SHUTDOWN_OPTION}{settings.idle_timeout}", f"--MappingKernelManager.cull_idle_timeout={kernels}",
                 f"--TerminalManager.cull_inactive_timeout={kernels}"]
    if kernels:
        arguments += [f"--MappingKernelManager.cull_interval={every}", "--MappingKernelManager.cull_connected=True",
                      f"--TerminalManager.cull_interval={every}"]
    return arguments
