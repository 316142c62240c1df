"""Repository URLs as clients send them: one spelling per repository, and the edge checks.

The resolver and the builders fetch whatever URL a client names, so this refuses what should
never be fetched: other schemes, credentials, hosts the operator has not allowed, and hosts that
are, or resolve to, local and private addresses (all of it except the scheme check is skipped
in local mode, where the user is the operator).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Collection, Iterable
from typing import TypeAlias
from urllib.parse import SplitResult, urlsplit, urlunsplit

from chalicelib import errors

MAX_URL_LENGTH = 2048
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")
ANY_HOST = "*"
DEFAULT_ALLOWED_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "gist.github.com")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host name -> every IP address it resolves to; raises OSError when it does not resolve.
HostResolver: TypeAlias = Callable[[str], Iterable[str]]


def lookup_addresses(host: str) -> list[str]:
    """The addresses ``socket.getaddrinfo`` gives for ``host``: what a later fetch would connect to."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


_resolve_host: HostResolver = lookup_addresses


def set_host_resolver(resolver: HostResolver | None) -> None:
    """Replace the DNS lookup validation uses (tests have no network); None restores ``lookup_addresses``."""
    global _resolve_host
    _resolve_host = resolver or lookup_addresses


def normalize_allowed_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """The operator's allow-list, lower-cased; ValueError for an empty list or a malformed entry."""
    normalized = tuple(dict.fromkeys(host.strip().lower().rstrip(".") for host in hosts if host.strip()))
    if not normalized:
        raise ValueError(f"allowed_hosts is empty: list git hosts (e.g. {DEFAULT_ALLOWED_HOSTS[0]}), "
                         f"or {ANY_HOST} for any public host")
    bad = [host for host in normalized if host != ANY_HOST and not _HOSTNAME.fullmatch(host)]
    if bad:
        raise ValueError(f"allowed_hosts: not host names: {', '.join(bad)}")
    return normalized


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


# Hosts whose owner and repository names ignore case: "Owner/Repo" and "owner/repo" are one repository.
CASE_INSENSITIVE_HOSTS = frozenset({"github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "gist.github.com"})
_DEFAULT_PORTS = {"https": 443, "http": 80}


def canonical_repository(url: str) -> str:
    """The one name of a repository that builds, images and quotas count by: the normalized URL
    without a trailing dot on its host or a default port, its path lower-cased on
    ``CASE_INSENSITIVE_HOSTS``. "https://GitHub.com./Owner/Repo.git" -> "https://github.com/owner/repo"."""
    normalized = normalize_repository(url)
    parts = urlsplit(normalized)
    if not parts.netloc or "@" in parts.netloc or not parts.hostname:
        return normalized  # a local path, or a URL validation refuses anyway
    host = parts.hostname.rstrip(".")
    try:
        port = parts.port
    except ValueError:
        return normalized
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        netloc += f":{port}"
    path = parts.path.lower() if host in CASE_INSENSITIVE_HOSTS else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def validate_repository_url(
    url: str,
    *,
    allow_http: bool = False,
    allow_local: bool = False,
    allowed_hosts: Collection[str] | None = None,
    resolve: HostResolver | None = None,
) -> str:
    """The normalized URL, or errors.BadRequest saying what to fix.

    https only (http with ``allow_http``). ``allow_local`` (local mode) admits absolute paths,
    file:// URLs and any host, and skips the allow-list and the DNS check. Otherwise the host
    must be in ``allowed_hosts`` (the operator's list; None or "*" in it: any host) and every
    address it resolves to (through ``resolve``, by default ``lookup_addresses``) must be
    public, since the resolver and builders fetch whatever URL a client names."""
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
    if not allow_local:
        if _is_local_host(host):
            raise _local_address(host)
        _check_allowed(host, allowed_hosts)
        if _parse_ip(host) is None:  # an address was judged above; a name is judged by what it resolves to
            _resolve_public_addresses(host, resolve or _resolve_host)
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


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # What the resolver library accepts too: "127.1", "0x7f000001", "2130706433".
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _check_allowed(host: str, allowed_hosts: Collection[str] | None) -> None:
    if allowed_hosts is None:
        return
    allowed = {entry.lower().rstrip(".") for entry in allowed_hosts}
    if ANY_HOST not in allowed and host.rstrip(".") not in allowed:
        raise errors.BadRequest(
            f"repository host {host} is not allowed here; allowed: {', '.join(sorted(allowed))} "
            "(the operator's BINDERLESS_ALLOWED_HOSTS)"
        )


def public_addresses(host: str, resolve: HostResolver | None = None) -> list[IPAddress]:
    """The addresses a fetch of ``host`` (a name or an IP address) may connect to, every one checked
    public; errors.BadRequest otherwise. A name is looked up once, through ``resolve`` (by default the
    lookup ``set_host_resolver`` chose): connect to these addresses, never to the name again, since a
    second lookup may answer otherwise (DNS rebinding)."""
    if _is_local_host(host):
        raise _local_address(host)
    address = _parse_ip(host)
    if address is not None:
        return [address]
    return _resolve_public_addresses(host, resolve or _resolve_host)


def _local_address(host: str) -> errors.BadRequest:
    return errors.BadRequest(f"repository host {host} is a local or private address; use a public git host")


def _resolve_public_addresses(host: str, resolve: HostResolver) -> list[IPAddress]:
    """Every address, not just the first: a fetch may connect to any of them."""
    try:
        addresses = list(resolve(host.rstrip(".")))
    except (OSError, UnicodeError, ValueError):  # socket.gaierror is an OSError; idna refuses long labels
        addresses = []
    if not addresses:
        raise errors.BadRequest(f"cannot resolve repository host {host}; check the URL's host name")
    parsed = [_parse_resolved(address) for address in addresses]
    public = [address for address in parsed if address is not None and _is_public(address)]
    # Which address is not said: the client need not learn how private names resolve inside.
    if len(public) != len(parsed):
        raise errors.BadRequest(
            f"repository host {host} resolves to a local or private address; use a public git host"
        )
    return public


def _parse_resolved(address: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: drop the zone
    except ValueError:
        return None


def _is_public(address: IPAddress | None) -> bool:
    """Global unicast: not private, loopback, link-local, shared, multicast or reserved.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by that address."""
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return _is_public(embedded)
    return address.is_global and not address.is_multicast and not address.is_reserved


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    return None


def _is_local_host(host: str) -> bool:
    if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        return True
    address = _parse_ip(host)
    return address is not None and not _is_public(address)
