"""No drive-by from a web page: local mode over real HTTP, as a browser on the same machine would call it.

A page the developer merely visits can POST ``text/plain`` to 127.0.0.1 without a preflight; the
browser still says where it comes from in ``Origin``. Local mode refuses unlisted origins (and
Host names other than loopback, the DNS-rebinding case) before anything changes, and answers every
method and path with our JSON.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.local_mode import PROJECT, LocalMode, free_port, local_mode, wait_for
from tests.local_repo import make_repository

ADMIN = "origins-admin-" + secrets.token_hex(16)
THEBE_PAGE = "http://localhost:5173"  # the operator's listed origin: a Thebe page under development
EVIL = "http://evil.example"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> dict[str, str]:
        body: dict[str, str] = json.loads(self.text)
        return body


def raw(method: str, url: str, body: str | None = None, **headers: str) -> Raw:
    request = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method,
                                     headers={name.replace("_", "-"): value for name, value in headers.items()})
    try:
        with NO_PROXY.open(request, timeout=30) as reply:
            return Raw(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read().decode())
    except urllib.error.HTTPError as error:
        return Raw(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode())


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("local-origins"), ADMIN, BINDERLESS_CORS_ORIGINS=THEBE_PAGE) as mode:
        yield mode


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("origin-repositories") / "payload"
    make_repository(path, {"setup.py": "open('/tmp/pwned', 'w')\n"})
    return path


def builds_dir(local: LocalMode) -> Path:
    return Path(local.log.parent / "binderless" / "builds")


def test_a_drive_by_build_is_refused_before_anything_happens(local: LocalMode, repository: Path) -> None:
    refused = raw("POST", f"{local.base}/builds/repos", json.dumps({"repository": str(repository)}),
                  Origin=EVIL, Content_Type="text/plain")

    assert refused.status == 403 and refused.json["error"] == "Forbidden", refused
    assert EVIL in refused.json["message"] and "BINDERLESS_CORS_ORIGINS" in refused.json["message"]
    assert "access-control-allow-origin" not in refused.headers  # the page cannot even read the refusal
    found = local.api("GET", f"/builds/repos?repository={repository}")
    assert found.status == 404, found.body  # no build recorded
    assert not builds_dir(local).exists() or not any(builds_dir(local).iterdir())  # nothing cloned
    assert local.servers() == []  # no git, pip or server process started


def test_a_drive_by_launch_or_read_is_refused(local: LocalMode, repository: Path) -> None:
    environment = local.build_and_stage(repository)  # the developer's own doing: curl sends no Origin
    launched = raw("POST", f"{local.base}/deployments/{environment}", "", Origin=EVIL, Content_Type="text/plain")
    assert launched.status == 403, launched
    assert local.api("GET", f"/pools/{environment}").body == {"running": 0, "available": 0, "starting": 0,
                                                                "size": 0, "minPool": 0}
    assert local.api("GET", f"/deployments/{environment}").body == []
    assert local.servers() == []

    mine = local.api("POST", f"/deployments/{environment}", admin=False)
    assert mine.status == 202, mine.body
    read = raw("GET", f"{local.base}/deployments/{environment}/{mine.body['id']}", Origin=EVIL)
    assert read.status == 403 and "location" not in read.text and "token" not in read.json["message"]
    assert local.api("DELETE", f"/deployments/{environment}/{mine.body['id']}").status == 202


def test_a_listed_origin_is_preflighted_and_served(local: LocalMode) -> None:
    preflight = raw("OPTIONS", f"{local.base}/builds/repos", Origin=THEBE_PAGE,
                    Access_Control_Request_Method="POST",
                    Access_Control_Request_Headers="authorization,content-type,idempotency-key")
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == THEBE_PAGE
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]

    served = raw("GET", f"{local.base}/health", Origin=THEBE_PAGE)
    assert served.status == 200 and served.headers["access-control-allow-origin"] == THEBE_PAGE
    assert "retry-after" in served.headers["access-control-expose-headers"].lower()
    assert raw("OPTIONS", f"{local.base}/builds/repos", Origin=EVIL,
               Access_Control_Request_Method="POST").status == 403


def test_same_origin_works_and_a_rebinding_host_does_not(local: LocalMode) -> None:
    assert raw("GET", f"{local.base}/health", Origin=local.base).status == 200
    port = local.base.rsplit(":", 1)[1]
    rebound = raw("GET", f"{local.base}/health", Host=f"evil.example:{port}", Origin=f"http://evil.example:{port}")
    assert rebound.status == 403 and "evil.example" in rebound.json["message"]
    assert raw("GET", f"{local.base}/health", Host=f"localhost:{port}").status == 200


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PATCH", "CONNECT", "BREW"])
def test_a_method_nothing_serves_is_405_json(local: LocalMode, method: str) -> None:
    # configurable-http-proxy (node's HTTP parser) turns CONNECT and unknown methods away itself (400, or
    # the connection closed) before they reach the API; the API's own answer is checked behind it.
    base = local.api_origin() if method in ("CONNECT", "BREW") else local.base
    reply = raw(method, f"{base}/pools")
    assert reply.status == 405 and reply.json["error"] == "MethodNotAllowed", reply
    assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["GET", "POST", "TRACE"])
def test_a_path_nothing_serves_is_404_json_that_echoes_nothing(local: LocalMode, method: str) -> None:
    secret = "token-" + secrets.token_hex(12)
    for path in ("/nothing", "/nothing/here", "/api/nothing/here"):  # ("/" is the front page)
        reply = raw(method, f"{local.base}{path}", Authorization=f"token {secret}")
        assert reply.status == 404 and reply.json["error"] == "NotFound", reply
        assert secret not in reply.text and all(secret not in value for value in reply.headers.values())


def test_head_replies_have_no_body(local: LocalMode) -> None:
    reply = raw("HEAD", f"{local.base}/nothing")
    assert reply.status == 404 and reply.text == ""
    assert raw("GET", f"{local.base}/health").status == 200  # the connection's framing held


def test_serving_beyond_loopback_needs_an_opt_in(tmp_path: Path) -> None:
    environ = {"PATH": "/usr/bin:/bin", "HOST": "0.0.0.0", "PORT": str(free_port()),  # noqa: S104 (the refusal)
               "BINDERLESS_LOCAL_DIR": str(tmp_path)}
    refused = subprocess.run([sys.executable, "-m", "chalicelib.local"], cwd=PROJECT, env=environ,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "BINDERLESS_ALLOW_REMOTE=1" in refused.stderr and "Traceback" not in refused.stderr


def test_with_remote_access_builds_need_a_token(tmp_path: Path, repository: Path) -> None:
    with local_mode(tmp_path, ADMIN, HOST="0.0.0.0", BINDERLESS_ALLOW_REMOTE="1") as remote:  # noqa: S104
        anonymous = remote.api("POST", "/builds/repos", {"repository": str(repository)}, admin=False)
        assert anonymous.status == 401, anonymous.body
        assert not builds_dir(remote).exists() or not any(builds_dir(remote).iterdir())
        assert remote.api("GET", "/health", admin=False).status == 200
        wait_for(lambda: remote.api("POST", "/builds/repos", {"repository": str(repository)}).status == 202, 10,
                 "an admin may build")


def test_loopback_lifts_the_build_rate_limit_and_remote_access_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import Settings
    from chalicelib.local import check_remote_access

    for name in ("BINDERLESS_BUILD_RATE_LIMIT", "BINDERLESS_PUBLIC_ENDPOINTS", "BINDERLESS_ALLOW_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    check_remote_access("127.0.0.1")
    local = Settings.from_env()
    assert local.build_rate_limit == 0 and not local.allow_remote and "builds.create" in local.public_endpoints

    monkeypatch.delenv("BINDERLESS_BUILD_RATE_LIMIT")
    monkeypatch.setenv("BINDERLESS_ALLOW_REMOTE", "1")
    check_remote_access("0.0.0.0")  # noqa: S104
    remote = Settings.from_env()
    assert remote.build_rate_limit == Settings().build_rate_limit > 0 and remote.allow_remote
    assert "builds.create" not in remote.public_endpoints and "deployments.create" in remote.public_endpoints
