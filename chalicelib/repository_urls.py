"""Repository URLs as clients send them: one spelling per repository, and the edge checks.

The resolver and the builders fetch whatever URL a client names, so this refuses what should
never be fetched: other schemes, credentials, local and private hosts (except in local mode).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Collection
from urllib.parse import SplitResult, urlsplit, urlunsplit

from chalicelib import errors

MAX_URL_LENGTH = 2048
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def normalize_repository(url: str) -> str:
    """One spelling per repository: no surrounding whitespace, no trailing "/" or ".git",
    lower-case scheme and host. "HTTPS://GitHub.com/User/Repo.git/" -> "https://github.com/User/Repo".

    Local paths (and file:// URLs) keep ".git": there it is part of a directory's name."""
    text = url.strip()
    parts = urlsplit(text)
    if not parts.netloc:
        return text.rstrip("/") or text
    path = parts.path.rstrip("/").removesuffix(".git").rstrip("/")
    return urlunsplit((parts.scheme.lower(), _lower_host(parts), path, parts.query, parts.fragment))


def _lower_host(parts: SplitResult) -> str:
    userinfo, at, hostport = parts.netloc.rpartition("@")
    return f"{userinfo}{at}{hostport.lower()}"


def validate_repository_url(
    url: str,
    *,
    allow_http: bool = False,
    allow_local: bool = False,
    allowed_hosts: Collection[str] | None = None,
) -> str:
    """The normalized URL, or errors.BadRequest saying what to fix.

    https only (http with ``allow_http``). ``allow_local`` (local mode) also admits absolute
    paths, file:// URLs and local/private hosts; without it those are refused, since the
    resolver and builders fetch whatever URL a client names. ``allowed_hosts``, if given, is
    the operator's list of git hosts."""
    if not isinstance(url, str) or not url.strip():
        raise errors.BadRequest("repository must be a URL such as https://github.com/user/name")
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise errors.BadRequest(f"repository URL is longer than {MAX_URL_LENGTH} characters")
    if any(character.isspace() or unicodedata.category(character).startswith("C") for character in text):
        raise errors.BadRequest("repository URL must not contain whitespace or control characters")
    if text.startswith("/") or text.lower().startswith("file:"):
        return _validate_local(text, allow_local)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        raise errors.BadRequest(f"repository {text!r} is not a valid URL") from None
    if not parts.scheme or not parts.netloc:
        raise errors.BadRequest(
            f"repository {text!r} is not a URL; give e.g. https://github.com/user/name (ssh is not supported)"
        )
    _check_scheme(parts.scheme, allow_http)
    host = _check_authority(parts)
    if parts.query or parts.fragment:
        raise errors.BadRequest("repository URL must not have a ?query or #fragment")
    if not allow_local and _is_local_host(host):
        raise errors.BadRequest(f"repository host {host} is a local or private address")
    if allowed_hosts is not None and host not in {allowed.lower() for allowed in allowed_hosts}:
        raise errors.BadRequest(
            f"repository host {host} is not allowed here; allowed: {', '.join(sorted(allowed_hosts))}"
        )
    return normalize_repository(text)


def _validate_local(text: str, allow_local: bool) -> str:
    if not allow_local:
        raise errors.BadRequest("local repositories are not accepted here; give an https:// URL")
    parts = urlsplit(text)
    if parts.scheme and parts.netloc not in ("", "localhost"):
        raise errors.BadRequest("a file:// repository URL must name a local path (file:///path/to/repo)")
    if not parts.path.startswith("/"):
        raise errors.BadRequest("a local repository must be an absolute path")
    return normalize_repository(text)


def _check_scheme(scheme: str, allow_http: bool) -> None:
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme.lower() not in allowed:
        raise errors.BadRequest(f"repository URL scheme {scheme}:// is not supported; use https://")


def _check_authority(parts: SplitResult) -> str:
    """The lower-cased host, after refusing credentials, odd hosts and bad ports."""
    if "@" in parts.netloc:
        raise errors.BadRequest("repository URL must not contain credentials (user:password@); use a public URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise errors.BadRequest("repository URL has no host")
    if not host.isascii():
        raise errors.BadRequest(f"repository host {host} must be ASCII; use its xn-- form")
    valid = _parse_ip(host) is not None if ":" in host else bool(_HOSTNAME.fullmatch(host))
    if not valid:
        raise errors.BadRequest(f"repository host {host!r} is not a valid host name")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise errors.BadRequest("repository URL port must be a number from 1 to 65535")
    return host


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # What the resolver library accepts too: "127.1", "0x7f000001", "2130706433".
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _is_local_host(host: str) -> bool:
    if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        return True
    address = _parse_ip(host)
    return address is not None and (not address.is_global or address.is_multicast)
