"""A git host for tests: repositories made with `git`, served by `git upload-pack` over HTTPS exactly
as git's http-backend does (smart HTTP, TLS with a certificate from a throwaway CA), and the tests'
internet (``Network``) that routes public addresses to it on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import trustme

from chalicelib.resolver import ADVERTISEMENT_TYPE

# No user or system config (signing, hooks, default branch) may change what the tests build.
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
IDENTITY = ["-c", "user.name=Binder Test", "-c", "user.email=test@example.invalid"]
HOST = "git.test"  # the name in the test servers' certificates
PUBLIC = "140.82.112.3"  # what conftest's FakeDns answers for any name


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *IDENTITY, "-C", str(repo), *args], env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def make_repo(path: Path, branch: str = "main") -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", branch)
    return path


def commit(repo: Path, message: str) -> None:
    (repo / "notes.txt").write_text(message + "\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", message)


def pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


class Seen(NamedTuple):
    path: str
    agent: str
    host: str  # the Host header


class GitServer(ThreadingHTTPServer):
    """Smart HTTP over TLS on 127.0.0.1, with a certificate for HOST."""

    daemon_threads = True

    def __init__(self, repos: dict[str, Path], ca: trustme.CA) -> None:
        super().__init__(("127.0.0.1", 0), GitHandler)
        self.repos = repos
        self.stopping = threading.Event()
        self.requests: list[Seen] = []
        self.server_names: list[str | None] = []  # the name each TLS client asked for (SNI)
        self.redirects: dict[str, str] = {}  # repository path -> the Location a test has it answer
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(tls)
        tls.sni_callback = self.note_server_name
        self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def note_server_name(self, _sock: ssl.SSLSocket, name: str | None, _tls: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:  # in the request's thread, so a stalled handshake never holds up accept()
            request.do_handshake()
        except OSError:
            return  # the client refused the certificate
        super().finish_request(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"


class Network:
    """The tests' internet, the resolver's ``connect``: a connection to a public address reaches
    127.0.0.1 at the port asked for; anything else (loopback, the VPC) is unreachable, as are
    addresses in ``down``. Every address asked for is recorded."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []
        self.down: set[str] = set()

    def __call__(self, address: tuple[str, int], timeout: float) -> socket.socket:
        self.connected.append(address)
        host, port = address
        if not ipaddress.ip_address(host).is_global or host in self.down:
            raise ConnectionRefusedError(f"{host} is not reachable from the test network")
        return socket.create_connection(("127.0.0.1", port), timeout)


class GitHandler(BaseHTTPRequestHandler):
    """Answers GET <repo>[.git]/info/refs?service=git-upload-pack like `git http-backend`."""

    server: GitServer
    ERRORS: ClassVar[dict[str, int]] = {"/private": 401, "/forbidden": 403, "/broken": 500, "/busy": 503}

    def do_GET(self) -> None:
        self.server.requests.append(Seen(self.path, self.headers.get("User-Agent", ""), self.headers.get("Host", "")))
        path, _, query = self.path.partition("?")
        base = path.removesuffix("/info/refs")
        try:
            if base in self.server.redirects:
                self.redirect(self.server.redirects[base])
            elif base == "/loop":
                self.redirect(self.path)
            elif base == "/slow-loop":  # each hop's answer takes 0.25 s, a piece at a time
                self.drip(b"HTTP/1.0 302 Found\r\nLocation: /slow-loop/info/refs?service=git-upload-pack\r\n"
                          b"Content-Length: 0\r\n\r\n", pieces=5)
            elif base == "/trickle-headers":  # 2 s of headers, a piece at a time
                self.drip(b"HTTP/1.0 200 OK\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n", pieces=40)
            elif base in self.ERRORS:
                self.reply(self.ERRORS[base], b"no", "text/plain")
            elif base == "/slow":
                self.server.stopping.wait(2)  # far past the resolver's timeout
                self.reply(200, b"", ADVERTISEMENT_TYPE)
            elif base == "/trickle":
                self.trickle()
            elif base == "/website":
                self.reply(200, b"<html>a web page for every path</html>", "text/html")
            elif query == "service=git-upload-pack" and base.removesuffix(".git").lstrip("/") in self.server.repos:
                self.advertise(self.server.repos[base.removesuffix(".git").lstrip("/")])
            else:
                self.reply(404, b"Repository not found.", "text/plain")
        except OSError:
            pass  # the resolver gave up (timeout tests) and closed the connection

    def advertise(self, repo: Path) -> None:
        refs = subprocess.run(
            ["git", "upload-pack", "--stateless-rpc", "--advertise-refs", str(repo)],
            env=GIT_ENV,
            check=True,
            capture_output=True,
        ).stdout
        self.reply(200, pkt(b"# service=git-upload-pack\n") + b"0000" + refs, ADVERTISEMENT_TYPE)

    def trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ADVERTISEMENT_TYPE)
        self.end_headers()
        for _ in range(40):
            if self.server.stopping.wait(0.05):
                return
            self.wfile.write(b"0")
            self.wfile.flush()

    def drip(self, data: bytes, pieces: int) -> None:
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            if self.server.stopping.wait(0.05):
                return
            self.wfile.write(data[start : start + size])
            self.wfile.flush()

    def redirect(self, location: str) -> None:
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(repos: dict[str, Path], ca: trustme.CA) -> Iterator[GitServer]:
    server = GitServer(repos, ca)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()
