"""Resolve a git ref to a commit without the git binary (Lambda has none).

``GitHttpResolver`` does what ``git ls-remote`` does over HTTPS: one GET of
``<repository>/info/refs?service=git-upload-pack`` and a parse of the pkt-line ref
advertisement (git's smart-HTTP protocol, v0). It works with any git host, no API token.

Whatever URL a client names is fetched from inside the VPC, so the fetch resolves the host once,
checks every address is public and connects to one of those addresses (a second lookup could
answer 169.254.169.254), follows redirects only within the same https host and port, and ends
within one deadline however slowly the server answers.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from chalicelib import errors
from chalicelib.pinned_https import Connect, PinnedHTTPSConnection, default_tls, remaining
from chalicelib.repository_urls import IPAddress, public_addresses

if TYPE_CHECKING:
    pass

FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
ABBREVIATED_SHA = re.compile(r"[0-9a-fA-F]{7,39}")
ADVERTISEMENT_TYPE = "application/x-git-upload-pack-advertisement"
USER_AGENT = "git/binderless"  # some hosts only speak smart HTTP to agents named git/*
RETRY_AFTER = "10"
# API Gateway's integration timeout is "50 milliseconds - 29 seconds for all integration types"
# (docs.aws.amazon.com/apigateway/latest/developerguide/limits.html; the default, raised only on
# request): the whole resolution (DNS, connect, TLS, every redirect, the body) ends well inside
# it, leaving the request time to record the build.
TIMEOUT = 10.0
MAX_REDIRECTS = 5  # GitHub's renamed repositories redirect once
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Hosts that advertise every pull request (refs/pull/*) send megabytes for big repositories;
# beyond this something is wrong and a Lambda should not hold it in memory.
MAX_ADVERTISEMENT_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024
_PKT_LENGTH = re.compile(rb"[0-9a-fA-F]{4}")
_URL_SAFE = "/%:@!$&'()*+,;=?~"  # what may stay as it is in a request's path and query

# getaddrinfo takes no timeout, so lookups run here and are given up on at the deadline.
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolver-dns")


class AdvertisementError(ValueError):
    """The server's answer is not a git ref advertisement."""


@dataclass(frozen=True)
class Advertisement:
    """The refs a repository advertises. ``peeled``: annotated tag -> the commit it tags."""

    refs: dict[str, str] = field(default_factory=dict)
    peeled: dict[str, str] = field(default_factory=dict)
    head_target: str = ""  # "refs/heads/main" when HEAD is a symref the server announced

    def commit(self, refname: str) -> str | None:
        # An annotated tag's own sha names a tag object, which repo2docker cannot check out.
        return self.peeled.get(refname) or self.refs.get(refname)

    def lookup(self, ref: str) -> str | None:
        """The commit ``ref`` names: HEAD, a branch, a tag or a full ``refs/...`` name.

        Branches win over tags of the same name (what a binder link to a branch means)."""
        if ref in ("", "HEAD"):
            return self.commit("HEAD") or (self.commit(self.head_target) if self.head_target else None)
        candidates = [ref] if ref.startswith("refs/") else []
        candidates += [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        for refname in candidates:
            commit = self.commit(refname)
            if commit:
                return commit
        return None


def parse_pkt_lines(data: bytes) -> list[bytes | None]:
    """Split git pkt-lines; a flush packet (``0000``) becomes None."""
    packets: list[bytes | None] = []
    position = 0
    while position < len(data):
        header = data[position : position + 4]
        if not _PKT_LENGTH.fullmatch(header):
            raise AdvertisementError(f"bad pkt-line length {header!r}")
        length = int(header, 16)
        if length == 0:
            packets.append(None)
            position += 4
            continue
        if length < 4 or position + length > len(data):
            raise AdvertisementError(f"bad pkt-line length {length}")
        packets.append(data[position + 4 : position + length])
        position += length
    return packets


def parse_advertisement(data: bytes) -> Advertisement:
    """Parse a smart-HTTP upload-pack advertisement (protocol v0/v1)."""
    packets = parse_pkt_lines(data)
    lines = [packet.rstrip(b"\n") if packet is not None else None for packet in packets]
    start = 0
    if lines and lines[0] is not None and lines[0].startswith(b"# service="):
        start = 2 if len(lines) > 1 and lines[1] is None else 1
    if start < len(lines) and lines[start] == b"version 1":
        start += 1
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head_target = ""
    for index, line in enumerate(lines[start:]):
        if line is None:
            break
        if line.startswith(b"ERR "):
            raise AdvertisementError(line[4:].decode("utf-8", "replace"))
        if index == 0:
            line, _, capabilities = line.partition(b"\0")
            head_target = _head_symref(capabilities.decode("utf-8", "replace"))
        sha, _, refname = line.decode("utf-8", "replace").partition(" ")
        if not FULL_SHA.fullmatch(sha) or not refname:
            raise AdvertisementError(f"bad ref line {line[:100]!r}")
        if refname == "capabilities^{}":  # an empty repository: capabilities only, no refs
            continue
        if refname.endswith("^{}"):
            peeled[refname[:-3]] = sha.lower()
        else:
            refs[refname] = sha.lower()
    return Advertisement(refs=refs, peeled=peeled, head_target=head_target)


def _head_symref(capabilities: str) -> str:
    for capability in capabilities.split():
        if capability.startswith("symref=HEAD:"):
            return capability.removeprefix("symref=HEAD:")
    return ""


class GitHttpResolver:
    """RefResolver over git smart HTTPS. ``timeout`` bounds the whole resolution.

    ``tls`` and ``connect`` are for tests (a throwaway CA; a network in a box): by default the
    system's CAs and ``socket.create_connection``."""

    def __init__(self, timeout: float = TIMEOUT, *, tls: ssl.SSLContext | None = None,
                 connect: Connect = socket.create_connection) -> None:
        self.timeout = timeout
        self._tls = tls
        self._connect_tcp = connect

    def resolve(self, repository: str, ref: str) -> str:
        ref = ref.strip()
        if FULL_SHA.fullmatch(ref):
            return ref.lower()  # nothing to ask: builds pinned to a commit work offline
        commit = self.list_refs(repository).lookup(ref)
        if commit:
            return commit
        if ABBREVIATED_SHA.fullmatch(ref):
            # The advertisement only lists ref tips; an abbreviation cannot be expanded from it.
            raise errors.BadRequest(f"ref {ref!r} looks like an abbreviated commit; give the full 40-character sha")
        if ref in ("", "HEAD"):
            raise errors.NotFound(f"repository {repository} has no commit on its default branch (is it empty?)")
        raise errors.NotFound(f"ref {ref!r} not found in repository {repository}")

    def list_refs(self, repository: str) -> Advertisement:
        """Every ref ``repository`` advertises (one HTTP request, and any redirects)."""
        try:
            return parse_advertisement(self._fetch(repository))
        except AdvertisementError as error:
            raise errors.BadRequest(f"repository {repository} did not answer as a git server: {error}") from None

    def _fetch(self, repository: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        url = repository + "/info/refs?service=git-upload-pack"
        origin = urlsplit(url)
        host, port = origin.hostname, _port(origin)
        if origin.scheme != "https" or not host or port is None:
            raise errors.BadRequest(f"repository {repository} must be an https URL")
        try:
            addresses = _LOOKUPS.submit(public_addresses, host).result(remaining(deadline))
            for _ in range(MAX_REDIRECTS + 1):
                connection = self._connect(repository, (host, port), addresses, deadline)
                try:
                    connection.request("GET", _request_target(url), headers={"User-Agent": USER_AGENT})
                    with connection.getresponse() as response:  # it may own the socket now: close both
                        location = response.getheader("Location")
                        if response.status in _REDIRECTS and location:
                            url = _redirect_target(repository, origin, urljoin(url, location))
                            continue
                        if not 200 <= response.status < 300:
                            raise _http_error(repository, response.status)
                        _check_content_type(repository, response.getheader("Content-Type", ""))
                        return _read_capped(response)
                finally:
                    connection.close()
        except TimeoutError:
            raise _unavailable(repository, "timed out") from None
        except (OSError, http.client.HTTPException) as error:
            # The connection broke mid-answer: transient, like a 5xx.
            raise _unavailable(repository, f"connection failed ({error})") from None
        raise errors.BadRequest(f"repository {repository} redirects more than {MAX_REDIRECTS} times")

    def _connect(self, repository: str, origin: tuple[str, int], addresses: list[IPAddress],
                 deadline: float) -> PinnedHTTPSConnection:
        """A connection to ``origin`` (host, port) at the first of its checked ``addresses`` that answers."""
        host, port = origin
        failure: OSError | None = None
        for address in addresses:
            connection = PinnedHTTPSConnection(host, port, str(address), deadline, self._tls or default_tls(),
                                               self._connect_tcp)
            try:
                connection.connect()
                return connection
            except TimeoutError:
                raise
            except OSError as error:  # refused, unreachable, or a certificate not for this host
                connection.close()
                failure = error
        raise errors.BadRequest(f"repository {repository} could not be reached ({failure})")


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or 443
    except ValueError:  # not a number, or out of range
        return None


def _redirect_target(repository: str, origin: SplitResult, target: str) -> str:
    """``target``, if it stays on the repository's https host and port (GitHub's renamed repositories
    redirect within github.com): a checked URL must not lead on to an unchecked one, such as an
    address inside the VPC."""
    try:
        parts = urlsplit(target)
        allowed = parts.scheme == "https" and parts.hostname == origin.hostname and _port(parts) == _port(origin)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        allowed = False
    if not allowed:
        raise errors.BadRequest(f"repository {repository} redirects to {target[:200]}; only redirects within "
                                f"https://{origin.netloc} are followed")
    return target


def _request_target(url: str) -> str:
    """The path and query to GET, percent-encoded where http.client would refuse them (a
    redirect's Location may hold spaces or non-ASCII)."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe=_URL_SAFE)
    return f"{path}?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else path


def _check_content_type(repository: str, content_type: str) -> None:
    """Smart HTTP must answer with the advertisement type; anything else is a web page, a dumb
    HTTP server or a login form (checked before reading, so a large page is never downloaded)."""
    if content_type.split(";")[0].strip().lower() != ADVERTISEMENT_TYPE:
        raise errors.BadRequest(
            f"repository {repository} is not a git repository served over smart HTTP "
            f"(got content type {content_type or 'none'!r})"
        )


def _read_capped(response: http.client.HTTPResponse) -> bytes:
    """The body, refusing to hold more than MAX_ADVERTISEMENT_BYTES (the deadline bounds the
    wait for it: see _ResponseWithin)."""
    chunks: list[bytes] = []
    size = 0
    # read1 returns what has arrived, so the size is checked as the body comes.
    while chunk := response.read1(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ADVERTISEMENT_BYTES:
            raise AdvertisementError(f"ref advertisement larger than {MAX_ADVERTISEMENT_BYTES} bytes")
    return b"".join(chunks)


def _unavailable(repository: str, what: str) -> errors.Unavailable:
    return errors.Unavailable(
        f"repository {repository} {what}; try again shortly", headers={"Retry-After": RETRY_AFTER}
    )


def _http_error(repository: str, status: int) -> errors.BinderError:
    if status in (408, 429) or status >= 500:
        return _unavailable(repository, f"answered HTTP {status}")
    # Hosts answer 401/403/404 alike for private and missing repositories.
    return errors.BadRequest(f"repository {repository} not found or not public (HTTP {status})")
