"""Deployments: hand out a pooled server at once, or start one cold."""

from __future__ import annotations

from typing import Callable

from chalicelib.config import Settings
from chalicelib.errors import NotFound, Unavailable
from chalicelib.models import Server, ServerState
from chalicelib.services.servers import ServerLifecycle
from chalicelib.services.stagings import StagingService
from chalicelib.store import Store


class DeploymentService:
    def __init__(self, settings: Settings, store: Store, stagings: StagingService, servers: ServerLifecycle,
                 clock: Callable[[], int]) -> None:
        self.settings = settings
        self.store = store
        self.stagings = stagings
        self.servers = servers
        self.clock = clock

    def launch(self, environment_name: str) -> tuple[Server, bool]:
        """A server for one user, and whether it came ready from the pool."""
        now = self.clock()
        # Claim first: an available server proves the environment is launchable, saving a read on the fast path.
        claimed = self.store.servers.claim(environment_name, now=now, stop_at=now + self.settings.server_max_lifetime)
        if claimed:
            return claimed, True
        server, = self.servers.launch(self.stagings.launchable(environment_name), 1, claimed=True)
        if server.state is ServerState.failed:
            raise Unavailable(f"No server could be started right now ({server.reason}); try again shortly.",
                              headers={"Retry-After": "30"})
        return server, False

    def get(self, environment_name: str, server_id: str) -> Server:
        server = self.store.servers.get(environment_name, server_id)
        if server is None:
            raise NotFound(f"No server '{server_id}' in '{environment_name}' (it may have ended long ago); "
                           f"launch a new one with POST /deployments/{environment_name}.")
        return server

    def list(self, environment_name: str) -> list[Server]:
        self.stagings.get(environment_name)  # 404 for an unknown environment rather than an empty list
        return sorted(self.store.servers.live(environment_name), key=lambda s: s.created_at)

    def delete(self, environment_name: str, server_id: str) -> Server:
        return self.servers.stop(self.get(environment_name, server_id), "deleted through the API")
