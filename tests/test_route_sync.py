"""Routes follow the servers (issue 14), on moto with the AWS adapters and ``router = "chp"``.

The proxy here is ``TableRouter``: the Router contract's table (prefixes checked as the real adapters
check them) with the clock of the test as its activity, so lifetimes and idle times are exact. The real
configurable-http-proxy runs in tests/test_contract_router.py and, wired into local mode, in
tests/test_local_proxy.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Mapping

import pytest

from chalicelib.backends.base import Route
from chalicelib.backends.routers import check_route, normalise_prefix
from chalicelib.errors import Unavailable
from tests.conftest import World, auth, body
from tests.helpers import run_all_starting, staged, task_event, task_of, tick

PROXY = {"router": "chp", "proxy_api_url": "https://proxy.example.org", "proxy_public_url": "https://proxy.example.org",
         "proxy_auth_token": "t" * 32, "never_opened_timeout": 300, "idle_timeout": 600}
pytestmark = pytest.mark.settings(**PROXY)


class TableRouter:
    """A proxy's routing table in memory; ``last_activity`` is the test's clock at the last ``visit``."""

    proxied = True

    def __init__(self, world: World) -> None:
        self.world = world
        self.routes: dict[str, Route] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable("The proxy cannot be reached (refused); try again shortly.")

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.world.clock(), UTC)

    def add_route(self, path_prefix: str, target: str, data: Mapping[str, str]) -> None:
        self._check()
        check_route(target, data)
        self.routes[normalise_prefix(path_prefix)] = Route(target, dict(data), self._now())  # adding is activity

    def delete_route(self, path_prefix: str) -> None:
        self._check()
        self.routes.pop(normalise_prefix(path_prefix), None)

    def get_all_routes(self) -> dict[str, Route]:
        self._check()
        return dict(self.routes)

    def url_for(self, path_prefix: str, target: str) -> str:
        return "https://proxy.example.org" + normalise_prefix(path_prefix)

    def visit(self, location: str) -> None:
        """A reader's request through the proxy."""
        prefix = normalise_prefix(location.split("https://proxy.example.org", 1)[1].split("?")[0])
        route = self.routes[prefix]
        self.routes[prefix] = Route(route.target, route.data, self._now())


@pytest.fixture
def proxy(world: World) -> TableRouter:
    router = TableRouter(world)
    world.services.servers.router = router
    return router


def launch_running(client: Any, world: World, environment: str) -> dict[str, Any]:
    server_id = body(client.http.post(f"/deployments/{environment}", headers=auth()))["id"]
    task_event(client, world, task_of(world, environment, server_id), "RUNNING")
    reply = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert reply["status"] == "running", reply
    return {"id": server_id, **reply}


def test_a_running_server_is_reached_through_its_route_and_loses_it_when_deleted(
        client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    server = launch_running(client, world, environment)
    task_id = task_of(world, environment, server["id"]).rsplit("/", 1)[1]
    prefix = f"/user/{task_id}/"
    assert server["location"].startswith(f"https://proxy.example.org{prefix}?token=")
    route = proxy.routes[prefix]
    assert route.target.startswith("http://") and route.target.endswith(":8888")  # the task's private address
    assert route.data["environment"] == environment and server["id"] not in json.dumps(route.data)

    deleted = client.http.delete(f"/deployments/{environment}/{server['id']}", headers=auth())
    assert deleted.status_code == 202
    assert prefix not in proxy.routes  # the gone page answers at once, before the task has stopped


def test_a_server_the_proxy_cannot_route_yet_stays_starting_until_it_can(
        client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    server_id = body(client.http.post(f"/deployments/{environment}", headers=auth()))["id"]
    proxy.down = True
    task_event(client, world, task_of(world, environment, server_id), "RUNNING")
    reply = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert reply["status"] == "starting" and "location" not in reply  # no location that leads nowhere
    proxy.down = False
    world.clock.advance(world.settings.check_interval)
    tick(client)
    reply = body(client.http.get(f"/deployments/{environment}/{server_id}"))
    assert reply["status"] == "running" and reply["location"].startswith("https://proxy.example.org/user/")


def test_each_tick_puts_back_lost_routes_and_deletes_those_of_ended_servers(
        client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    assert client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=auth()).status_code == 200
    run_all_starting(client, world, environment)
    handed_out = launch_running(client, world, environment)
    assert len(proxy.routes) == 2  # one of the two pooled servers, and the one handed out from the pool
    before = dict(proxy.routes)

    proxy.routes.clear()  # the proxy restarted with an empty table
    proxy.routes["/user/ended/"] = Route("http://10.0.0.9:8888", {"environment": environment, "added": "0"})  # stale
    result = tick(client)
    assert result["routes_added"] == 2 and result["routes_deleted"] == 1, result
    assert {prefix: route.target for prefix, route in proxy.routes.items()} == \
        {prefix: route.target for prefix, route in before.items()}
    assert tick(client)["routes_added"] == 0  # nothing more to do
    assert body(client.http.get(f"/deployments/{environment}/{handed_out['id']}"))["status"] == "running"


def test_a_route_added_for_a_server_not_yet_saved_as_reachable_is_left_alone(
        client: Any, world: World, proxy: TableRouter) -> None:
    """A server's route is added just before the server is saved as available or running: a tick between the
    two sees a route with no reachable server. Seen as a 503 for a pooled server handed out in a burst."""
    environment = staged(client, world)
    now = str(world.clock())
    proxy.add_route("/user/being-routed/", "http://10.0.0.8:8888", {"environment": environment, "added": now})
    assert tick(client)["routes_deleted"] == 0 and "/user/being-routed/" in proxy.routes
    world.clock.advance(60)  # its server never became reachable (it ended as it started): now it goes
    assert tick(client)["routes_deleted"] == 1 and "/user/being-routed/" not in proxy.routes


def test_a_tick_with_the_proxy_down_still_does_the_rest(client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    assert client.http.post(f"/pools/{environment}", body=json.dumps({"size": 1}), headers=auth()).status_code == 200
    proxy.down = True
    result = tick(client)
    assert "routes_added" not in result and result["pools_balanced"] == 0  # nothing short: started on the POST
    assert body(client.http.get(f"/pools/{environment}"))["starting"] == 1


def test_a_server_handed_out_but_never_opened_is_stopped(client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    server = launch_running(client, world, environment)
    world.clock.advance(299)
    tick(client)
    assert body(client.http.get(f"/deployments/{environment}/{server['id']}"))["status"] == "running"
    world.clock.advance(1)
    assert tick(client)["servers_culled"] == 1
    reply = body(client.http.get(f"/deployments/{environment}/{server['id']}"))
    assert reply["status"] == "stopping" and reply["reason"] == "not opened within 300 seconds of its launch"


def test_a_pooled_server_counts_from_its_claim_and_an_opened_one_from_its_last_request(
        client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    assert client.http.post(f"/pools/{environment}", body=json.dumps({"size": 1}), headers=auth()).status_code == 200
    run_all_starting(client, world, environment)
    world.clock.advance(1000)  # pooled for long: its route's activity is its adding, long ago
    claimed = body(client.http.post(f"/deployments/{environment}", headers=auth()))
    assert claimed["status"] == "running"
    assert client.http.post(f"/pools/{environment}", body=json.dumps({"size": 0}), headers=auth()).status_code == 200
    world.clock.advance(10)
    proxy.visit(claimed["location"])  # opened, 10 s after the claim
    world.clock.advance(599)
    assert tick(client)["servers_culled"] == 0  # idle for 599 s: not yet
    world.clock.advance(1)
    assert tick(client)["servers_culled"] == 1
    reply = body(client.http.get(f"/deployments/{environment}/{claimed['id']}"))
    assert reply["status"] == "stopping" and reply["reason"] == "no activity for 600 seconds"


@pytest.mark.settings(**{**PROXY, "never_opened_timeout": 0, "idle_timeout": 0})
def test_zero_turns_either_rule_off(client: Any, world: World, proxy: TableRouter) -> None:
    environment = staged(client, world)
    server = launch_running(client, world, environment)
    world.clock.advance(3600)
    assert tick(client)["servers_culled"] == 0
    assert body(client.http.get(f"/deployments/{environment}/{server['id']}"))["status"] == "running"


def test_the_gone_page_says_why_and_links_to_the_same_repository(client: Any, world: World,
                                                                 proxy: TableRouter) -> None:
    environment = staged(client, world)
    server = launch_running(client, world, environment)
    prefix = server["location"].split("https://proxy.example.org", 1)[1].split("?")[0]
    token = server["location"].split("?token=")[1]
    # Chalice's test gateway matches {proxy+} as one segment: the path goes as local mode sends it.
    assert client.http.get(local_path(f"{prefix}lab?token={token}")).status_code == 503  # live: a route is coming
    client.http.delete(f"/deployments/{environment}/{server['id']}", headers=auth())

    page = client.http.get(local_path(f"{prefix}lab/tree/a.ipynb"), headers={"Accept": "text/html"})
    assert page.status_code == 410 and page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode()
    assert "deleted through the API" in text and token not in text and server["id"] not in text
    # The build's repository and ref, as its /v2/ link, relative to the reader's path.
    assert 'href="../../../../v2/gh/binder-examples/requirements/HEAD"' in text

    reply = client.http.post(local_path(f"{prefix}api/kernels"), body="{}")
    assert reply.status_code == 410 and body(reply)["error"] == "Gone"
    assert environment in body(reply)["message"] and "deleted through the API" in body(reply)["message"]


def local_path(path: str) -> str:
    from chalicelib.gone_page import local_path as quoted

    found = quoted(path)
    assert found is not None
    return found


@pytest.mark.parametrize(("context_path", "params", "expected"), [
    ("/api/user/abc/lab/tree/a.ipynb", {"proxy": "abc/lab/tree/a.ipynb"}, "/user/abc/lab/tree/a.ipynb"),  # API Gateway
    ("/user/abc%2Flab", {"proxy+": "abc%2Flab"}, "/user/abc/lab"),  # Chalice's local gateway
])
def test_the_gone_page_reads_the_servers_path_behind_either_gateway(
        context_path: str, params: dict[str, str], expected: str) -> None:
    from chalicelib.gone_page import route_of, server_path, to_root

    path = server_path(context_path, params)
    assert path == expected and route_of(path) == "/user/abc/"
    assert to_root(path) == "../" * (expected.count("/") - 1)
