"""Which browser pages may use the API: the operator's allowed origins, and the CORS headers that say so.

A browser adds ``Origin`` to every cross-origin request and to every POST, even one that needs no
preflight (``text/plain`` in ``no-cors`` mode, the drive-by case): so refusing an unlisted
``Origin`` before the view runs stops a page the user merely visits from building, launching or
reading anything. Requests without ``Origin`` (curl, server-side clients, same-origin GETs) pass.

On AWS stages the default is ``*``: any page may launch, as on mybinder.org, because servers are
sandboxed tasks. Local mode's servers run as the user, so there the default is no origin at all,
and its ``Host`` must be a loopback name: a DNS-rebinding page (its own name pointed at
127.0.0.1) is same-origin to the browser but names itself in ``Host``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.errors import Forbidden

ANY_ORIGIN = "*"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ALLOW_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key")
# Replies a page must be able to read: when to retry, and the rate limit's figures.
EXPOSE_HEADERS = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
MAX_AGE = 600
# The list travels in every RunTask's overrides (the servers' allow_origin_pat), and AWS allows "A total
# of 8192 characters ... for overrides"; the bootstrap takes about 4,500 of them (tests/test_aws_rules.py).
MAX_ORIGINS_CHARACTERS = 2000


def normalize_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """``scheme://host[:port]`` entries (lower-cased, no trailing "/"), or ``*``; ValueError otherwise."""
    normalized = []
    for entry in origins:
        origin = entry.strip().rstrip("/").lower()
        if not origin:
            continue
        parts = urlsplit(origin)
        if origin != ANY_ORIGIN and (parts.scheme not in ("http", "https") or not parts.hostname
                                     or parts.path or parts.query or parts.fragment or "@" in parts.netloc):
            raise ValueError(f"cors_origins: {entry!r} is not an origin such as https://example.org or "
                             "http://localhost:5173 (scheme, host and port only), or *")
        normalized.append(origin)
    if sum(len(origin) + 1 for origin in normalized) > MAX_ORIGINS_CHARACTERS:
        raise ValueError(f"cors_origins: more than {MAX_ORIGINS_CHARACTERS} characters in all; they travel in "
                         "each server's start request, which AWS limits. List fewer origins, or *")
    return tuple(dict.fromkeys(normalized))


def host_name(host: str) -> str:
    """The name in a ``Host`` header: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "::1"."""
    return (urlsplit(f"//{host}").hostname or "") if host else ""


@dataclass(frozen=True)
class OriginPolicy:
    origins: tuple[str, ...]
    loopback_only: bool = False  # local mode bound to loopback: refuse other Host names

    @property
    def any_origin(self) -> bool:
        return ANY_ORIGIN in self.origins

    def check(self, headers: Mapping[str, str]) -> None:
        """Forbidden unless the request's Host and Origin are allowed (``headers`` lower-case keys)."""
        host = headers.get("host", "")
        if self.loopback_only and host and host_name(host) not in LOOPBACK_HOSTS:
            raise Forbidden(f"This server answers only as localhost or 127.0.0.1, not as {host_name(host)!r} "
                            "(a page pointing its own name at this machine is refused).")
        origin = headers.get("origin")
        if origin is not None and not self.allows(origin, host):
            listed = ", ".join(self.origins) or "none"
            raise Forbidden(f"Pages from {origin} may not use this API (allowed origins: {listed}). The operator "
                            "lists the origins of trusted pages in BINDERLESS_CORS_ORIGINS.")

    def allows(self, origin: str, host: str = "") -> bool:
        origin = origin.strip().rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        # Same origin: a page served by this very host (its Host header already passed check()).
        return bool(host) and origin != "null" and urlsplit(origin).netloc == host.lower()

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """The Access-Control-Allow-Origin a reply to ``origin`` carries (none for an unlisted one)."""
        if self.any_origin:
            return {"Access-Control-Allow-Origin": ANY_ORIGIN}
        if origin and origin.strip().rstrip("/").lower() in self.origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {"Vary": "Origin"}


def policy_for(origins: tuple[str, ...], *, local: bool, allow_remote: bool) -> OriginPolicy:
    return OriginPolicy(origins, loopback_only=local and not allow_remote)
