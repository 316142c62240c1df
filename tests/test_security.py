"""Security (issue 5): which repositories may be fetched, unguessable ids, a strong admin token,
and no secret in any log record through the whole seed flow."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib import errors
from chalicelib.backends.bootstrap import KEY_VARIABLE, TOKEN_VARIABLE, token_for
from chalicelib.cli import main as cli
from chalicelib.config import Settings, get_settings
from chalicelib.logs import SERVICE, WIRE_LOGGERS, configure_logging
from chalicelib.repository_urls import DEFAULT_ALLOWED_HOSTS, lookup_addresses, validate_repository_url
from chalicelib.services.servers import new_server_id
from tests.conftest import ADMIN, FakeDns, World, auth, body
from tests.helpers import REPO, build_event, run_all_starting, staged, task_event, task_of, tick

# --- repository URLs ------------------------------------------------------------------------------


def test_the_default_allowed_hosts_are_the_big_public_forges() -> None:
    assert Settings().allowed_hosts == DEFAULT_ALLOWED_HOSTS == (
        "github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "gist.github.com")
    assert Settings.from_env({"BINDERLESS_ALLOWED_HOSTS": " GitHub.com, git.example.org. ,"}).allowed_hosts == (
        "github.com", "git.example.org")
    assert Settings.from_env({"BINDERLESS_ALLOWED_HOSTS": "*"}).allowed_hosts == ("*",)


@pytest.mark.parametrize("value", ["", " , ", "github.com,not a host", "https://github.com"])
def test_a_malformed_allow_list_fails_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        Settings.from_env({"BINDERLESS_ALLOWED_HOSTS": value})


def test_a_build_of_a_host_not_on_the_list_is_refused_without_a_dns_lookup(client: Any, world: World,
                                                                             dns: FakeDns) -> None:
    reply = client.http.post("/builds/repos", body=json.dumps({"repository": "https://example.com/u/r"}))

    assert reply.status_code == 400
    assert body(reply)["message"] == ("repository host example.com is not allowed here; allowed: bitbucket.org, "
                                      "codeberg.org, gist.github.com, github.com, gitlab.com "
                                      "(the operator's BINDERLESS_ALLOWED_HOSTS)")
    assert dns.asked == []  # a refused name is not looked up: no DNS queries chosen by strangers


def test_a_star_admits_any_public_host_but_still_checks_its_addresses(dns: FakeDns) -> None:
    assert validate_repository_url("https://git.example.org/u/r", allowed_hosts=["*"]) == "https://git.example.org/u/r"
    dns.answers["intranet.example.org"] = ["10.0.0.7"]
    with pytest.raises(errors.BadRequest, match="resolves to a local or private address"):
        validate_repository_url("https://intranet.example.org/u/r", allowed_hosts=["*"])


@pytest.mark.parametrize("addresses", [
    ["127.0.0.1"], ["10.1.2.3"], ["172.16.0.1"], ["192.168.1.1"], ["169.254.169.254"], ["100.64.0.1"],
    ["0.0.0.0"], ["224.0.0.251"], ["240.0.0.1"], ["255.255.255.255"], ["192.0.2.1"],
    ["::1"], ["fe80::1%eth0"], ["fd00::1"], ["ff0e::1"], ["::"],
    ["::ffff:127.0.0.1"], ["64:ff9b::a00:1"], ["2002:a00:1::"],  # IPv4 inside IPv6: mapped, NAT64, 6to4
    ["140.82.112.3", "10.0.0.1"],  # every address counts: a fetch may connect to any of them
    ["not-an-address"],
])
def test_a_host_that_resolves_to_a_non_public_address_is_refused(dns: FakeDns, addresses: list[str]) -> None:
    dns.answers["github.com"] = addresses
    with pytest.raises(errors.BadRequest) as caught:
        validate_repository_url("https://github.com/u/r", allowed_hosts=DEFAULT_ALLOWED_HOSTS)
    assert caught.value.message == ("repository host github.com resolves to a local or private address; "
                                    "use a public git host")


@pytest.mark.parametrize("addresses", [["140.82.112.3"], ["2606:4700::1"], ["64:ff9b::8c52:7003"],
                                       ["140.82.112.3", "2606:4700::1"]])
def test_a_host_that_resolves_only_to_public_addresses_is_accepted(dns: FakeDns, addresses: list[str]) -> None:
    dns.answers["github.com"] = addresses
    assert validate_repository_url("https://github.com/u/r.git") == "https://github.com/u/r"
    assert dns.asked == ["github.com"]


def test_a_host_that_does_not_resolve_is_refused(dns: FakeDns) -> None:
    dns.answers["gitlab.com"] = []
    with pytest.raises(errors.BadRequest, match="cannot resolve repository host gitlab.com; check the URL"):
        validate_repository_url("https://gitlab.com/u/r")


def test_the_system_resolver_is_what_validation_uses_by_default() -> None:
    assert lookup_addresses("127.0.0.1") == ["127.0.0.1"]  # a literal: no network needed
    with pytest.raises(errors.BadRequest, match="cannot resolve repository host nowhere.invalid"):
        validate_repository_url("https://nowhere.invalid/u/r", resolve=lookup_addresses)  # RFC 6761: never resolves


def test_the_api_refuses_a_repository_whose_name_points_inside(client: Any, world: World, dns: FakeDns) -> None:
    """The SSRF this stops: a public-looking name whose DNS answer is the instance metadata address."""
    dns.answers["github.com"] = ["169.254.169.254"]
    world.git.push(REPO)

    reply = client.http.post("/builds/repos", body=json.dumps({"repository": REPO}))

    assert reply.status_code == 400 and "local or private address" in body(reply)["message"]
    assert world.codebuild.list_builds_for_project(projectName="binderless-repo2docker")["ids"] == []


def test_local_mode_takes_any_host_without_a_dns_lookup(dns: FakeDns) -> None:
    dns.answers["git.lan"] = ["192.168.1.9"]
    local = validate_repository_url("http://git.lan/u/r", allow_http=True, allow_local=True,
                                    allowed_hosts=DEFAULT_ALLOWED_HOSTS)
    assert local == "http://git.lan/u/r"
    assert dns.asked == []
    with pytest.raises(errors.BadRequest, match="scheme http:// is not supported; use https://"):
        validate_repository_url("http://github.com/u/r", allowed_hosts=DEFAULT_ALLOWED_HOSTS)


# --- ids and the admin token ----------------------------------------------------------------------


def test_server_ids_are_128_random_bits() -> None:
    ids = [new_server_id() for _ in range(1000)]

    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
    assert len(set(ids)) == 1000
    # No fixed or counting part: each of the 128 bits is set in about half the ids (a fair bit
    # lands outside 35%..65% of 1000 draws with probability ~1e-21).
    numbers = [int(i, 16) for i in ids]
    assert all(350 < sum(n >> bit & 1 for n in numbers) < 650 for bit in range(128))


@pytest.mark.parametrize("token", ["s3cr3t!", "x" * 15, "sixteen chars ok", "\t" * 20])
def test_a_weak_admin_token_stops_the_app_at_start_without_being_echoed(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.from_env({"BINDERLESS_ADMIN_TOKEN": token})
    assert "BINDERLESS_ADMIN_TOKEN" in str(caught.value) and token not in str(caught.value)


def test_a_long_admin_token_or_none_is_accepted() -> None:
    assert Settings.from_env({"BINDERLESS_ADMIN_TOKEN": "x" * 16}).admin_token == "x" * 16
    assert Settings.from_env({}).admin_token == ""


# --- no secret in the logs ------------------------------------------------------------------------


class Capture(logging.Handler):
    """Every record, rendered every way it could be written: message, args, traceback, extra fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        parts = [record.getMessage(), repr(record.msg), repr(record.args), repr(vars(record))]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(record.exc_info[1])))
        for handler in logging.getLogger(SERVICE).handlers:  # what powertools would print (JSON)
            if handler.formatter:
                parts.append(handler.formatter.format(record))
        self.texts.append("\n".join(parts))

    def leaks(self, secrets: set[str]) -> list[tuple[str, str]]:
        return [(secret, text[:300]) for text in self.texts for secret in secrets if secret in text]


DEBUG_LOGGERS = ("", "chalicelib", "botocore", "boto3", "urllib3", SERVICE, "binderless")  # "binderless": Chalice's


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Capture]:
    """DEBUG everywhere (as an operator or the Lambda runtime might set it), then the app's own logging setup."""
    everything = [logging.getLogger(), *(logger for logger in logging.root.manager.loggerDict.values()
                                         if isinstance(logger, logging.Logger))]
    saved = [(logger, logger.level, logger.propagate) for logger in everything]
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    monkeypatch.setenv("BINDERLESS_LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    configure_logging()  # what app.py does at a cold start
    caplog.set_level(logging.DEBUG)
    capture = Capture()
    # The root, and every logger that does not pass records on to it (powertools' own do not).
    hooked = [logging.getLogger(), *(logger for logger in logging.root.manager.loggerDict.values()
                                     if isinstance(logger, logging.Logger) and not logger.propagate)]
    for logger in hooked:
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger in hooked:
            logger.removeHandler(capture)
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate
        get_settings.cache_clear()


def batch_keys_and_tokens(world: World) -> tuple[set[str], set[str]]:
    """Every RunTask batch key (from the tasks' overrides) and every server token: derived from a
    key, or given as it is to a task started alone."""
    arns = world.ecs.list_tasks(cluster="binderless", desiredStatus="RUNNING")["taskArns"]
    arns += world.ecs.list_tasks(cluster="binderless", desiredStatus="STOPPED")["taskArns"]
    keys, tokens = set(), set()
    for task in world.ecs.describe_tasks(cluster="binderless", tasks=arns)["tasks"]:
        for override in task["overrides"]["containerOverrides"]:
            # The bootstrap's first argument (bootstrap.secret_argument): NAME=secret.
            name, _, value = override["command"][1].partition("=")
            if name == KEY_VARIABLE:
                keys.add(value)
                tokens.add(token_for(value, task["taskArn"]))
            elif name == TOKEN_VARIABLE:
                tokens.add(value)
    return keys, tokens


def launch(client: Any, world: World, environment: str) -> tuple[str, str]:
    """(id, the server's own token) of a server handed out from the pool or started cold."""
    reply = client.http.post(f"/deployments/{environment}", body="")
    server_id = body(reply)["id"]
    if reply.status_code == 202:
        task_event(client, world, task_of(world, environment, server_id), "RUNNING")
    location = body(client.http.get(f"/deployments/{environment}/{server_id}"))["location"]
    return server_id, location.split("?token=")[1]


def test_the_seed_flow_logs_no_secret_even_at_debug(client: Any, world: World, captured: Capture,
                                                    caplog: pytest.LogCaptureFixture, capsys: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli(["token", "create", "--name", "flow", "--scopes", "builds,stagings,deployments,pools"]) == 0
    api_token = capsys.readouterr().out.splitlines()[0].strip()
    key = auth(api_token)
    wrong = "wrong-token-" + "y" * 30

    # build -> its event -> stage -> pool -> its task events
    world.git.push(REPO)
    image_name = body(client.http.post("/builds/repos", body=json.dumps({"repository": REPO}), headers=key))[
        "image-name"]
    build_event(client, world, image_name, "SUCCEEDED")
    assert client.http.get(f"/builds/repos/{image_name}/status", headers=key).status_code == 200
    stage = client.http.post("/stagings", headers=key, body=json.dumps(
        {"image-name": image_name, "limits": {"cpu": "0.5", "memory": "1G"}}))
    environment = body(stage)["environment-name"]
    assert client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=key).status_code == 200
    run_all_starting(client, world, environment)

    # two claims from the pool, one cold deploy, the schedule, a listing
    (first, first_token), (second, _), (cold, cold_token) = (launch(client, world, environment) for _ in range(3))
    tick(client)
    run_all_starting(client, world, environment)
    assert client.http.get(f"/deployments/{environment}", headers=key).status_code == 200

    # stops: by the owner, by an admin; refused with a wrong token and with a non-admin API token
    assert client.http.delete(f"/deployments/{environment}/{cold}", headers=auth(first_token)).status_code == 401
    assert client.http.delete(f"/deployments/{environment}/{cold}", headers=key).status_code == 403
    assert client.http.delete(f"/deployments/{environment}/{first}", headers=auth(first_token)).status_code == 202
    assert client.http.delete(f"/deployments/{environment}/{second}", headers=auth()).status_code == 202
    for server_id in (first, second):
        task_event(client, world, task_of(world, environment, server_id), "STOPPED", "Task stopped by user")

    # a token revoked through the CLI, a wrong token, and an error nobody handled
    assert cli(["token", "revoke", api_token]) == 0
    assert client.http.get("/pools", headers=key).status_code == 401
    assert client.http.get("/pools", headers=auth(wrong)).status_code == 401

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("ECS is down")

    monkeypatch.setattr(world.services.deployments, "stop", explode)
    reply = client.http.delete(f"/deployments/{environment}/{cold}", headers=auth(cold_token))
    assert reply.status_code == 500

    keys, server_tokens = batch_keys_and_tokens(world)
    assert keys and len(server_tokens) >= 4  # the pool's batch (2), a cold start, a refill
    assert {first_token, cold_token} <= server_tokens
    secrets = {ADMIN, api_token, wrong, *keys, *server_tokens}
    crash = [r for r in captured.records if r.getMessage() == "unhandled error in deployments.delete"]
    assert crash and crash[0].exc_info, "the capture saw the unhandled error with its traceback"
    assert captured.leaks(secrets) == []
    assert logging.getLogger("botocore").getEffectiveLevel() == logging.WARNING  # though DEBUG was asked for
    assert [r for r in caplog.records if any(s in r.getMessage() or s in repr(r.args) for s in secrets)] == []
    printed = capsys.readouterr()
    assert [s for s in secrets if s in printed.out or s in printed.err] == []


def test_the_capture_does_see_what_botocore_logs_at_debug(client: Any, world: World, captured: Capture) -> None:
    """Why WIRE_LOGGERS stay at WARNING: at DEBUG, botocore logs RunTask's parameters, batch key and all."""
    environment = staged(client, world)
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)  # what configure_logging undoes

    client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=auth())

    keys, _ = batch_keys_and_tokens(world)
    assert keys and {secret for secret, _ in captured.leaks(keys)} == keys
