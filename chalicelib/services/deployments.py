"""Deployments: hand out a pooled server at once, or start one cold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from chalicelib.config import Settings
from chalicelib.errors import Gone, NotFound, Unavailable
from chalicelib.models import LIVE_STATES, Server, ServerState
from chalicelib.services.servers import ServerLifecycle
from chalicelib.services.stagings import StagingService
from chalicelib.store import Store
from chalicelib.store.counters import RateLimit
from chalicelib.store.servers import Claim


@dataclass(frozen=True)
class Ended:
    """What the store still knows of the server a proxy route was for (the gone page says it)."""

    environment: str
    reason: str = ""
    when: int = 0  # epoch seconds it ended (0: unknown, or not ended yet)
    repository: str = ""
    ref: str = ""


class DeploymentService:
    def __init__(self, settings: Settings, store: Store, stagings: StagingService, servers: ServerLifecycle,
                 clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.stagings = stagings
        self.servers = servers
        self.clock = clock

    def launch(self, environment_name: str, *, client: str | None = None) -> tuple[Server, bool]:
        """A server for one user, and whether it came ready from the pool.

        ``client`` is an anonymous caller (``routes.api.anonymous_client``): its launches count
        against the rate limit and the server against its limit of live servers, in the same
        transaction as the claim or the new server."""
        now = self.clock()
        rates = self._rates(client, now)
        # One query finds an available server or, failing that, the staging to start one from.
        claim = self._claim(environment_name, client, now, rates)
        if claim.server:
            return claim.server, True
        staging = claim.staging or self.stagings.launchable(environment_name)  # not found: says why
        server, = self.servers.launch(staging, 1, claimed=True, rates=rates, client=client or "")
        if server.state is ServerState.failed:
            raise Unavailable(f"No server could be started right now ({server.reason}); try again shortly.",
                              headers={"Retry-After": "30"})
        return server, False

    def claim(self, environment_name: str, *, client: str | None = None) -> Server | None:
        """A ready server from the environment's pool, or None: never a cold start (tmpnb's spawn)."""
        now = self.clock()
        claim = self._claim(environment_name, client, now, self._rates(client, now))
        if claim.server is None and claim.staging is None:
            self.stagings.launchable(environment_name)  # an unknown or unready environment: says why
        return claim.server

    def _claim(self, environment_name: str, client: str | None, now: int, rates: list[RateLimit]) -> Claim:
        return self.store.servers.claim(environment_name, now=now, stop_at=now + self.settings.server_max_lifetime,
                                        rates=rates, client=client or "", quotas=self.servers.quotas)

    def _rates(self, client: str | None, now: int) -> list[RateLimit]:
        limit = self.settings.launch_rate_limit
        return [RateLimit(client, now, self.settings.launch_rate_window, limit)] if client and limit else []

    def find(self, environment_name: str, server_id: str) -> Server:
        """The server's record, whatever its state."""
        server = self.store.servers.get(environment_name, server_id)
        if server is None:
            raise _no_server(environment_name, server_id)
        return server

    def get(self, environment_name: str, server_id: str) -> Server:
        """A live server; one that has ended answers Gone, saying why and how to get another.

        A pooled server nobody has claimed is not there for anyone: its location carries the token
        the next user will get, so its id answers exactly like an unknown one."""
        server = self.find(environment_name, server_id)
        if not server.claimed:
            raise _no_server(environment_name, server_id)
        server = self.servers.refresh(server)
        if server.state not in LIVE_STATES:
            raise Gone(f"This server has {server.state.value} ({server.reason or 'no reason given'}). "
                       f"Launch a new one with POST /deployments/{environment_name}.")
        return server

    def list(self, environment_name: str) -> list[Server]:
        self.stagings.get(environment_name)  # 404 for an unknown environment rather than an empty list
        return sorted(self.store.servers.live(environment_name), key=lambda s: s.created_at)

    def stop(self, server: Server) -> Server:
        """Stop a server for its owner; stopping one that has ended already changes nothing."""
        return self.servers.stop(server, "deleted through the API")

    def ended(self, route: str) -> Ended | None:
        """What is known of the server a proxy route was for, when the proxy has no route for it (the gone
        page); None when nothing is. A server that is still reachable has lost its route only for a
        moment (a proxy restarted): errors.Unavailable, and the next tick puts the route back."""
        server = self.store.servers.of_route(route) if route else None
        if server is None:
            return None
        if server.state in LIVE_STATES and server.state is not ServerState.stopping:
            raise Unavailable("This server is being reconnected to the proxy; try again in a few seconds.",
                              headers={"Retry-After": "5"})
        staging = self.store.environments.get_staging(server.environment_name)
        build = self.store.builds.get(staging.image_name) if staging else None
        return Ended(server.environment_name, server.reason, server.ended_at,
                     build.repository if build else "", build.ref if build else "")


def _no_server(environment_name: str, server_id: str) -> NotFound:
    return NotFound(f"No server '{server_id}' in '{environment_name}' (it may have ended long ago); "
                    f"launch a new one with POST /deployments/{environment_name}.")
