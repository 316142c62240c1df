"""The seams ``backends/base.py`` promises, checked in the source: what lies on the far side of a port
is read only by the adapter that made it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backends import base
from chalicelib.backends.base import BuildState
from chalicelib.config import Settings
from chalicelib.models import BuildStatus, IllegalTransition, ServerState, StagingStatus
from chalicelib.store.dynamo import ConditionFailed
from tests.conftest import World, auth, body
from tests.helpers import staged

CHALICELIB = Path(__file__).resolve().parent.parent / "chalicelib"
ADAPTERS = CHALICELIB / "backends"
# A handle read the way only its adapter may: handle["task_arn"], handle.get("pid"), ...
LOOKS_INSIDE = re.compile(r"handle\s*(\[|\.get\s*\(|\.items\s*\(|\.keys\s*\()")


def test_only_adapters_look_inside_a_handle() -> None:
    outside = [path for path in CHALICELIB.rglob("*.py") if ADAPTERS not in path.parents]
    assert len(outside) > 20  # services, store, routes and the app's own modules
    readers = [f"{path.relative_to(CHALICELIB)}:{number}: {line.strip()}"
               for path in outside for number, line in enumerate(path.read_text().splitlines(), 1)
               if LOOKS_INSIDE.search(line)]
    assert readers == []  # everyone else compares and indexes handles by handle_id()


def test_the_pattern_catches_the_reads_it_forbids() -> None:
    for read in ('arn = task.handle["task_arn"]', 'server.handle.get("pid", "")', "for k in handle.keys():"):
        assert LOOKS_INSIDE.search(read), read
    assert not LOOKS_INSIDE.search("task_id = handle_id(task.handle)")


def test_a_forbidden_state_change_is_a_bug_not_a_lost_race(client: Any, world: World) -> None:
    environment = staged(client, world)
    launched = client.http.post(f"/deployments/{environment}", headers=auth())
    server = world.services.store.servers.get(environment, body(launched)["id"])
    assert server is not None and server.state is ServerState.starting
    ended = server.model_copy(update={"state": ServerState.stopped})  # a caller that thinks it has ended
    with pytest.raises(IllegalTransition, match="server stopped -> running") as raised:
        world.services.store.servers.transition(ended, ServerState.running)  # an ended server never runs again
    assert not isinstance(raised.value, ConditionFailed)  # callers retry a ConditionFailed; this they must not
    assert world.services.store.servers.get(environment, server.id) == server  # and nothing was written


def test_each_resource_has_one_status_type(client: Any, world: World) -> None:
    environment = staged(client, world)
    staging = world.services.stagings.get(environment)
    assert type(staging.status) is StagingStatus and staging.status is StagingStatus.completed
    assert BuildState("pending").status is BuildStatus.pending  # what a Builder reports is the store's type
    assert not hasattr(base, "BuildStatus") or base.BuildStatus is BuildStatus


def test_every_error_reply_comes_from_one_function() -> None:
    """``errors.to_response`` alone turns an exception into a reply: no route, middleware or server builds one."""
    builders = [str(path.relative_to(CHALICELIB)) for path in CHALICELIB.rglob("*.py")
                if re.search(r"error_body\(|status_code=500|\"InternalError\"", path.read_text())]
    assert builders == ["errors.py"]


def test_a_bug_is_a_500_that_says_nothing_of_its_cause(client: Any, world: World, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail of the bug")

    monkeypatch.setattr(world.services.pools, "get", explode)
    reply = client.http.get("/pools/anything", headers=auth())
    assert reply.status_code == 500
    assert body(reply) == {"error": "InternalError", "message": "Something went wrong on our side; try again."}
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error in pools.get"]
    assert logged and logged[0].exc_info and "secret detail" in str(logged[0].exc_info[1])


def test_unknown_services_and_bad_limits_are_the_same_kind_of_mistake(client: Any, world: World) -> None:
    image = world.services.store.environments.get_staging(staged(client, world))
    assert image is not None
    replies = [client.http.post("/stagings", body=json.dumps({"image-name": image.image_name, **extra}),
                                headers=auth())
               for extra in ({"services": [{"name": "no-such-service", "version": "1"}]},
                             {"limits": {"cpu": "lots"}})]
    assert [(r.status_code, body(r)["error"]) for r in replies] == [(422, "Invalid")] * 2


def test_only_the_adapter_registry_asks_which_backend_this_is() -> None:
    """Routes may say which backend runs (``/health``) and pick the origin policy, and the streaming
    function's entry point wires local mode's database for its tests (and trusts the Web Adapter's request
    context only on AWS); the services and the store never branch on it: what differs is in the adapters
    ``backends.adapters_for`` chose."""
    askers = [str(path.relative_to(CHALICELIB)) for path in CHALICELIB.rglob("*.py")
              if re.search(r"\.backend\s*[=!]=", path.read_text())]
    assert sorted(askers) == ["backends/__init__.py", "routes/middleware.py", "stream_server.py"]


def test_aws_adapters_come_with_the_https_resolver_and_build_public_repositories_only() -> None:
    from chalicelib.backends import adapters_for
    from chalicelib.resolver import GitHttpResolver

    chosen = adapters_for(Settings())
    assert isinstance(chosen.resolver, GitHttpResolver) and chosen.builder.local_repositories is False


def test_config_imports_nothing_of_auth() -> None:
    assert "chalicelib.auth" not in (CHALICELIB / "config.py").read_text()


def test_services_and_routes_pass_intent_and_the_store_speaks_dynamodb() -> None:
    """A rate limit is a ``RateLimit`` (who, what, how many per how long), not a transaction action; the
    idempotency layer is handed its records by the store (``store.idempotency``), not the table's client."""
    embedded_database = {CHALICELIB / "local_database.py", CHALICELIB / "local_moto.py"}  # moto, for local mode
    outside = [path for path in [*CHALICELIB.rglob("*.py"), CHALICELIB.parent / "app.py"]
               if CHALICELIB / "store" not in path.parents and path not in embedded_database]
    speakers = [f"{path.relative_to(CHALICELIB.parent)}: {line.strip()}" for path in outside
                for line in path.read_text().splitlines()
                if re.search(r"\bdynamo\b|dynamodb|rate_update|\bCounted\b|TransactItems|ConditionExpression", line)]
    # Local mode creates the table it runs on (on AWS, infra/ does): its one word with the table itself.
    assert speakers == ["chalicelib/local.py: services.store.dynamo.create_table(if_missing=True)"]


def test_a_table_that_exists_is_kept_when_local_mode_starts_on_it(world: World) -> None:
    """DynamoDB Local (``AWS_ENDPOINT_URL``) keeps its table between runs of local mode."""
    store = world.services.store
    store.leases.take("kept", "me", now=1, expires_at=2)
    store.dynamo.create_table(if_missing=True)
    assert store.leases.get("kept") is not None
    with pytest.raises(Exception, match="ResourceInUse"):
        store.dynamo.create_table()  # tests that make a table twice by mistake still hear of it
