"""Local mode: ``python -m chalicelib.local`` (``make run``) serves the whole API with no AWS account.

One process: the Chalice app on Chalice's own local server (http://127.0.0.1:8000, or HOST and
PORT); DynamoDB from an embedded moto, atomic per request and reached without a socket (its HTTP
server is for other processes), or whatever AWS_ENDPOINT_URL names (e.g. DynamoDB Local); the local
backend (git clones, ``jupyter server`` processes) and a timer thread standing in for the scheduled
function. Ctrl-C (or SIGTERM) stops it and every notebook server it started.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import sys
import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Callable

from chalicelib.backends.local_common import PROJECT_DIR, work_dir
from chalicelib.config import Settings, get_settings
from chalicelib.context import set_services
from chalicelib.services import Services, build_services

if TYPE_CHECKING:
    from chalice.config import Config
    from chalice.local import LocalDevServer

    from chalicelib.local_database import Foreground
    from chalicelib.local_proxy import LocalProxy

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
CHALICE_STAGE = "local"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
LOCAL_DEFAULTS = {
    # The spawner's events say the moment a server answers or exits (subscribe_to_servers), as ECS's do on
    # AWS; the schedule's checks are their safety net, as there, only sooner. Checking every server on
    # every tick instead made an idle tick 100 ms of CPU (a describe and a rescheduling transaction for
    # each pooled server, every 2 s: measured), and a claim that met one waited for it; now 37 ms.
    "BINDERLESS_CHECK_INTERVAL": "10",  # a starting or stopping server
    "BINDERLESS_AVAILABLE_CHECK_INTERVAL": "30",
    "BINDERLESS_RUNNING_CHECK_INTERVAL": "30",
    "BINDERLESS_BUILD_POLL_AFTER": "1",  # builds tell nothing: poll() on the next tick
    "AWS_DEFAULT_REGION": "us-east-1",
    # Local servers run repositories' code as the user: no page from another origin may launch one
    # (or build) unless the operator lists it, e.g. a Thebe page under development.
    "BINDERLESS_CORS_ORIGINS": "",
}
# On loopback the only client is the person who started it: rebuilding commit after commit is the
# point. Served to other machines (BINDERLESS_ALLOW_REMOTE) the AWS defaults apply.
LOOPBACK_DEFAULTS = {"BINDERLESS_BUILD_RATE_LIMIT": "0"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# With remote access on, anybody who reaches the port could otherwise build (run setup code) as you.
TOKEN_ONLY_WHEN_REMOTE = "builds.create"  # noqa: S105 (an endpoint name)


class CannotStart(Exception):
    """Local mode cannot serve (the port is taken): said in one line, without a traceback."""


class Ticker(threading.Thread):
    """The scheduled function's stand-in: ``tick`` every ``interval`` seconds until stopped."""

    def __init__(self, tick: Callable[[], Any], interval: float, foreground: Foreground | None = None) -> None:
        from chalicelib.local_database import FOREGROUND

        super().__init__(name="local-tick", daemon=True)
        self.tick = tick
        self.interval = interval
        self.foreground = foreground or FOREGROUND
        self._stopped = threading.Event()

    def run(self) -> None:
        from chalicelib.local_database import BACKGROUND, QUIET, YIELD_AT_MOST

        BACKGROUND.active = True  # its database calls let API requests go first (local_database.py)
        while not self._stopped.wait(self.interval):
            self.foreground.wait_quiet(QUIET, YIELD_AT_MOST)  # so does its start
            if self._stopped.is_set():
                break
            try:
                self.tick()
            except Exception:  # one failed run must not end the schedule; the next may succeed
                log.exception("the scheduled tick failed")

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def load_chalice_config() -> Config:
    """The "local" stage of .chalice/config.json, as ``chalice local --stage local`` reads it.

    Its environment variables become defaults: what the caller set wins."""
    from chalice.cli.factory import CLIFactory

    config = CLIFactory(str(PROJECT_DIR), environ={}).create_config_obj(chalice_stage_name=CHALICE_STAGE)
    for name, value in {**config.environment_variables, **LOCAL_DEFAULTS}.items():
        os.environ.setdefault(name, value)
    os.environ["BINDERLESS_BACKEND"] = "local"  # this runner has no other backend to offer
    return config


def check_remote_access(host: str) -> None:
    """Loopback only, unless the operator opts in (BINDERLESS_ALLOW_REMOTE=1); then builds need a token."""
    remote = host not in LOOPBACK
    opted_in = os.environ.get("BINDERLESS_ALLOW_REMOTE", "").strip().lower() in ("1", "true", "yes")
    if remote and not opted_in:
        raise CannotStart(f"binderless local mode serves only on loopback (127.0.0.1), not on {host}: it runs "
                          "repositories' code as you. Set BINDERLESS_ALLOW_REMOTE=1 to serve other machines "
                          "(builds then need an API token).")
    os.environ["BINDERLESS_ALLOW_REMOTE"] = "true" if remote else "false"
    if not remote:
        for name, value in LOOPBACK_DEFAULTS.items():
            os.environ.setdefault(name, value)
    if remote:
        from chalicelib.config import DEFAULT_PUBLIC_ENDPOINTS

        public = os.environ.get("BINDERLESS_PUBLIC_ENDPOINTS", ",".join(DEFAULT_PUBLIC_ENDPOINTS))
        os.environ["BINDERLESS_PUBLIC_ENDPOINTS"] = ",".join(
            name for name in public.split(",") if name.strip() and name.strip() != TOKEN_ONLY_WHEN_REMOTE)


def ensure_admin_token() -> None:
    """BINDERLESS_ADMIN_TOKEN, or a fresh one that this run accepts as the admin token."""
    if not os.environ.get("BINDERLESS_ADMIN_TOKEN"):
        os.environ["BINDERLESS_ADMIN_TOKEN"] = secrets.token_urlsafe(32)


def start_database(cleanup: ExitStack) -> str:
    """Point boto3 at DynamoDB: AWS_ENDPOINT_URL when set, else a moto server in this process.
    Returns what the banner says about it."""
    external = os.environ.get("AWS_ENDPOINT_URL")
    if external:
        for name, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)  # DynamoDB Local accepts any credentials
        return f"{external} (AWS_ENDPOINT_URL)"
    from chalicelib import local_moto
    from chalicelib.local_database import AtomicMotoServer, answer_in_process

    local_moto.install()  # moto's costs that grow with the table, gone (local_moto.py says which)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per tick's queries otherwise
    server = AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    cleanup.callback(server.stop)
    host, port = server.get_host_and_port()
    # Fake credentials always: nothing this process signs should carry a real key, even to moto.
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    answer_in_process(os.environ["AWS_ENDPOINT_URL"])  # the server is for other processes (the CLI)
    return f"{os.environ['AWS_ENDPOINT_URL']} (embedded moto; gone when this stops)"


def plan_proxy(host: str, port: int, cleanup: ExitStack) -> LocalProxy | None:
    """configurable-http-proxy on ``host:port`` in front of the API (started by ``run`` once the API
    serves), unless BINDERLESS_ROUTER=direct or it cannot run here (said in one line)."""
    from chalicelib.local_proxy import LocalProxy, unavailable_reason

    if os.environ.get("BINDERLESS_ROUTER", "chp") == "direct":
        return None
    reason = unavailable_reason()
    if reason:
        print(f"no proxy: {reason}; servers get their own ports (BINDERLESS_ROUTER=direct)", file=sys.stderr)
        os.environ["BINDERLESS_ROUTER"] = "direct"
        return None
    from chalicelib.backends.local_servers import free_port

    api_port = free_port(avoid={port})  # free until the proxy binds PORT: it may be offered again (seen in CI)
    proxy = LocalProxy(host, port, f"http://127.0.0.1:{api_port}", work_dir(get_settings()) / "proxy.log")
    cleanup.callback(proxy.stop)  # unwound last: the API and the servers go first
    os.environ.update({"BINDERLESS_ROUTER": "chp", "BINDERLESS_PROXY_API_URL": proxy.api_url,
                       "BINDERLESS_PROXY_PUBLIC_URL": proxy.public_url})
    return proxy


def start_services(proxy: LocalProxy | None = None) -> Services:
    """Settings from the environment prepared above, the services wired to the local backend. The proxy's
    token goes to the settings, not to the environment that servers and tools inherit."""
    get_settings.cache_clear()
    settings = get_settings()
    if proxy is not None:
        settings = settings.model_copy(update={"proxy_auth_token": proxy.token})
    services = build_services(settings)
    set_services(services)
    ensure_table(services)
    subscribe_to_servers(services)
    return services


def subscribe_to_servers(services: Services) -> None:
    """A server's readiness and exit reach the store the moment they happen, through the path ECS
    events take on AWS (the tick's describe() stays as the safety net)."""
    from chalicelib.backends.local import LocalSpawner

    spawner = services.servers.spawner
    if isinstance(spawner, LocalSpawner):
        spawner.subscribe(services.servers.take_event)


def scheduled(services: Services) -> Callable[[], Any]:
    """What the schedule runs on AWS (the pools' tick), and what DynamoDB does there by itself: deleting
    expired items (local_database.Sweeper; neither moto nor DynamoDB Local does)."""
    from chalicelib.local_database import Sweeper

    sweep = Sweeper(services.store)

    def tick() -> None:
        services.pools.tick()
        sweep()

    return tick


def ensure_table(services: Services) -> None:
    """Local mode only (the Lambda role may not create tables): the table, if its DynamoDB lacks it."""
    services.store.dynamo.create_table(if_missing=True)


def stop_servers(services: Services) -> None:
    from chalicelib.backends.local import LocalSpawner

    spawner = services.servers.spawner
    if isinstance(spawner, LocalSpawner):
        spawner.stop_all()


def serve(config: Config, host: str, port: int, cleanup: ExitStack) -> LocalDevServer:
    """Chalice's local server (what ``chalice local`` runs) in a thread; the main thread waits for signals."""
    from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer

    from chalicelib.local_http import LocalHTTPServer, LocalRequestHandler

    app = config.chalice_app
    # What chalice.local.create_local_server does: the current request becomes thread-local.
    CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
    app.__class__ = CustomLocalChalice
    try:
        server = LocalDevServer(app, config, host, port, handler_cls=LocalRequestHandler, server_cls=LocalHTTPServer)
    except OSError as error:  # most likely the port is taken
        raise CannotStart(f"binderless local mode could not start on {host}:{port}: {error}") from None
    cleanup.callback(server.server.server_close)
    thread = threading.Thread(target=server.server.serve_forever, name="local-http", daemon=True)
    thread.start()
    cleanup.callback(server.shutdown)  # only once serve_forever runs: shutdown() waits for it
    return server


def banner(url: str, settings: Settings, database: str) -> str:
    proxy = ("configurable-http-proxy: servers at /user/<name>/ on the API's origin" if settings.router == "chp"
             else "none: each server on a port of its own")
    return "\n".join([
        "binderless local mode",
        f"  API          {url}",
        f"  proxy        {proxy}",
        f"  admin token  {settings.admin_token}",
        f"  database     {database}",
        f"  work dir     {work_dir(settings)}",
        f"  origins      {', '.join(settings.cors_origins) or 'none'} (web pages that may use it; "
        "BINDERLESS_CORS_ORIGINS)",
        f"  try          curl -H 'Authorization: token {settings.admin_token}' {url}/pools",
        "Ctrl-C stops it and every notebook server it started.",
    ])


def run(host: str, port: int, stop: threading.Event) -> None:
    with ExitStack() as cleanup:
        config = load_chalice_config()
        check_remote_access(host)
        ensure_admin_token()
        database = start_database(cleanup)
        proxy = plan_proxy(host, port, cleanup)
        services = start_services(proxy)
        cleanup.callback(stop_servers, services)  # unwound after the HTTP server and the ticker stop
        if proxy is None:
            serve(config, host, port, cleanup)
        else:  # the API behind the proxy, which takes HOST:PORT
            serve(config, "127.0.0.1", int(proxy.default_target.rsplit(":", 1)[1]), cleanup)
            try:
                proxy.start()
            except (OSError, RuntimeError) as error:
                raise CannotStart(f"binderless local mode could not start its proxy: {error}") from None
        ticker = Ticker(scheduled(services), services.settings.local_tick)
        ticker.start()
        cleanup.callback(ticker.stop)
        # A full garbage collection walks every object the process holds: over 150,000 once started (the
        # SDK's service models, moto, the app), which live as long as it does. Traced beside pool hits, full
        # collections took 115-430 ms (one every 20-60 s, a pause for every request); they are collected once
        # here and left out of later ones: 9 ms traced after (with local_moto.forget_dropped_items).
        gc.collect()
        gc.freeze()
        print(banner(f"http://{host}:{port}", services.settings, database), flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping binderless local mode and its notebook servers", flush=True)


def main() -> int:
    host = os.environ.get("HOST") or DEFAULT_HOST
    port = int(os.environ.get("PORT") or DEFAULT_PORT)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        run(host, port, stop)
    except CannotStart as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
