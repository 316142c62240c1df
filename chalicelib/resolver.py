"""Resolve a git ref to a commit without the git binary (Lambda has none).

``GitHttpResolver`` does what ``git ls-remote`` does over HTTPS: one GET of
``<repository>/info/refs?service=git-upload-pack`` and a parse of the pkt-line ref
advertisement (git's smart-HTTP protocol, v0). It works with any git host, no API token.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from chalicelib import errors

FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
ABBREVIATED_SHA = re.compile(r"[0-9a-fA-F]{7,39}")
ADVERTISEMENT_TYPE = "application/x-git-upload-pack-advertisement"
USER_AGENT = "git/binderless"  # some hosts only speak smart HTTP to agents named git/*
RETRY_AFTER = "10"
# Hosts that advertise every pull request (refs/pull/*) send megabytes for big repositories;
# beyond this something is wrong and a Lambda should not hold it in memory.
MAX_ADVERTISEMENT_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024
_PKT_LENGTH = re.compile(rb"[0-9a-fA-F]{4}")


class AdvertisementError(ValueError):
    """The server's answer is not a git ref advertisement."""


class Opener(Protocol):
    """What the resolver needs of ``urllib.request.OpenerDirector`` (tests pass their own)."""

    def open(self, fullurl: urllib.request.Request, data: None = None, timeout: float = ...) -> Any: ...


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


class SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same host (GitHub's renamed repositories): a checked URL must
    not lead the resolver on to an unchecked one, such as an address inside the VPC."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        if urlsplit(newurl).hostname != urlsplit(req.full_url).hostname:
            raise HTTPError(newurl, code, "redirect to another host refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class GitHttpResolver:
    """RefResolver over git smart HTTP. ``timeout`` bounds each socket wait and the whole fetch."""

    def __init__(self, timeout: float = 5.0, opener: Opener | None = None) -> None:
        self.timeout = timeout
        self._opener: Opener = opener or urllib.request.build_opener(SameHostRedirects())

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
        """Every ref ``repository`` advertises (one HTTP request)."""
        try:
            return parse_advertisement(self._fetch(repository))
        except AdvertisementError as error:
            raise errors.BadRequest(f"repository {repository} did not answer as a git server: {error}") from None

    def _fetch(self, repository: str) -> bytes:
        if urlsplit(repository).scheme not in ("http", "https"):
            # urllib would happily read file:// (and ftp://); only git hosts are meant here.
            raise errors.BadRequest(f"repository {repository} must be an http(s) URL")
        url = repository + "/info/refs?service=git-upload-pack"
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310 (scheme checked above)
        deadline = time.monotonic() + self.timeout
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                _check_content_type(repository, response.headers.get("Content-Type", ""))
                return _read_until(response, deadline)
        except HTTPError as error:
            error.close()
            raise _http_error(repository, error.code) from None
        except TimeoutError:
            raise _unavailable(repository, "timed out") from None
        except URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise _unavailable(repository, "timed out") from None
            raise errors.BadRequest(f"repository {repository} could not be reached ({error.reason})") from None
        except (OSError, http.client.HTTPException) as error:
            # The connection broke mid-answer: transient, like a 5xx.
            raise _unavailable(repository, f"connection failed ({error})") from None


def _check_content_type(repository: str, content_type: str) -> None:
    """Smart HTTP must answer with the advertisement type; anything else is a web page, a dumb
    HTTP server or a login form (checked before reading, so a large page is never downloaded)."""
    if content_type.split(";")[0].strip().lower() != ADVERTISEMENT_TYPE:
        raise errors.BadRequest(
            f"repository {repository} is not a git repository served over smart HTTP "
            f"(got content type {content_type or 'none'!r})"
        )


def _read_until(response: Any, deadline: float) -> bytes:
    """The body, refusing to wait past ``deadline`` (a trickling server would otherwise hold
    the Lambda for timeout x chunks) or to hold more than MAX_ADVERTISEMENT_BYTES."""
    chunks: list[bytes] = []
    size = 0
    # read1 returns what has arrived; read(n) would block until n bytes, past any deadline.
    read = getattr(response, "read1", response.read)
    while chunk := read(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ADVERTISEMENT_BYTES:
            raise AdvertisementError(f"ref advertisement larger than {MAX_ADVERTISEMENT_BYTES} bytes")
        if time.monotonic() > deadline:
            raise TimeoutError
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
