"""API tokens: random, stored as SHA-256 hashes, carrying scopes; and which endpoints need one.

Stopping a server is "owner or admin": its own token (the one in its ``location``) or an admin
token, never merely a ``deployments`` token, since whoever launched it holds only the former.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Callable

from chalicelib.config import Settings
from chalicelib.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from chalicelib.models import Server, Token
from chalicelib.store.tokens import TokenStore

# endpoint -> the scope a token needs when the operator has not made the endpoint public
ENDPOINT_SCOPES = {
    "builds.create": "builds",
    "builds.get": "builds",
    "builds.find": "builds",
    "builds.status": "builds",
    "builds.logs": "builds",
    "images.register": "admin",
    "stagings.create": "stagings",
    "stagings.get": "stagings",
    "stagings.status": "stagings",
    "deployments.create": "deployments",
    "deployments.get": "deployments",
    "deployments.list": "deployments",
    "deployments.delete": "admin",  # or the server's own token: OWNER_OR_ADMIN
    "pools.get": "pools",
    "pools.list": "pools",
    "pools.put": "pools",
    "pools.delete": "pools",
    # The v1 seed's, as their v2 equivalents: a binding is a build plus a staging, a binder a deployment.
    "bindings.create": "stagings",
    "bindings.get": "stagings",
    "binders.create": "deployments",
    "binders.list": "deployments",
    "binders.get": "deployments",
}
# Pages for people (the front page, the badge, /v2/ launch links) are public: a browser sends no token.
ALWAYS_PUBLIC = frozenset({"health", "versions", "openapi", "repoproviders", "index", "badge", "launch",
                           "gone"})
CHALLENGE = {"WWW-Authenticate": 'token realm="binderless"'}
# Endpoints about one server that its own token opens too; the route calls ``authorize_server``.
OWNER_OR_ADMIN = frozenset({"deployments.delete"})
OWNER_OR_ADMIN_HINT = "Only the server's own token (the one in its location) or an admin token may do this."
MIN_TOKEN_ID_LENGTH = 8  # of a hash prefix that `cli token revoke` takes as an id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_authorization(header: str | None) -> str | None:
    """The token in ``token T``, ``Bearer T`` or a bare ``T`` (the seeds send it bare)."""
    if not header or not header.strip():
        return None
    parts = header.strip().split()
    if len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
        return parts[1]
    return parts[0] if len(parts) == 1 else None


class Authenticator:
    def __init__(self, settings: Settings, tokens: TokenStore, clock: Callable[[], int]) -> None:
        self.settings = settings
        self.tokens = tokens
        self.clock = clock
        unknown = set(settings.public_endpoints) - set(ENDPOINT_SCOPES)
        if unknown:
            raise ValueError(f"BINDERLESS_PUBLIC_ENDPOINTS names unknown endpoints: {sorted(unknown)}")

    def is_public(self, endpoint: str) -> bool:
        return endpoint in ALWAYS_PUBLIC or endpoint in self.settings.public_endpoints

    def authorize(self, endpoint: str, header: str | None) -> None:
        """Raise Unauthorized/Forbidden unless the endpoint is public or the token has its scope.

        For OWNER_OR_ADMIN endpoints this only insists on a token; ``authorize_server`` decides."""
        if self.is_public(endpoint):
            return
        if endpoint in OWNER_OR_ADMIN:
            self._token_in(header, OWNER_OR_ADMIN_HINT)
            return
        scopes = self.scopes_of(header)
        needed = ENDPOINT_SCOPES[endpoint]
        if needed not in scopes and "admin" not in scopes:
            raise Forbidden(f"This token does not have the '{needed}' scope that this endpoint needs.")

    def authorize_server(self, endpoint: str, header: str | None, server: Server) -> None:
        """For an OWNER_OR_ADMIN endpoint: pass with ``server``'s own token or an admin token.

        No token: 401. A token that is neither this server's nor a valid API token (garbage,
        revoked, expired, another server's): 401, the same answer whichever it is. A valid API
        token without the admin scope: 403."""
        if self.is_public(endpoint):
            return
        token = self._token_in(header, OWNER_OR_ADMIN_HINT)
        # Constant time: a server token must not be recoverable byte by byte from reply timings.
        if server.token and hmac.compare_digest(token.encode(), server.token.encode()):
            return
        try:
            scopes = self.scopes_of(header)
        except Unauthorized as error:
            raise Unauthorized(f"{OWNER_OR_ADMIN_HINT} This is not the server's token, and as an API token: "
                               f"{error.message}", headers=CHALLENGE) from None
        if "admin" not in scopes:
            raise Forbidden(f"{OWNER_OR_ADMIN_HINT} This API token does not have the 'admin' scope.")

    @staticmethod
    def _token_in(header: str | None, hint: str = "This endpoint needs an API token.") -> str:
        token = parse_authorization(header)
        if token is None:
            raise Unauthorized(f"{hint} Send it as 'Authorization: token <token>'.", headers=CHALLENGE)
        return token

    def scopes_of(self, header: str | None) -> frozenset[str]:
        token = self._token_in(header)
        admin = self.settings.admin_token
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            return frozenset({"admin"})
        digest = hash_token(token)
        stored = self.tokens.get(digest)
        # The lookup is by hash, so its timing tells nothing about the token; compare anyway.
        if stored is None or not hmac.compare_digest(stored.digest, digest):
            raise Unauthorized("The API token is not valid (unknown or revoked).", headers=CHALLENGE)
        if stored.expires_at and stored.expires_at <= self.clock():
            raise Unauthorized("The API token has expired; ask the operator for a new one.", headers=CHALLENGE)
        return frozenset(stored.scopes)

    def is_admin(self, header: str | None) -> bool:
        """Whether ``header`` holds a valid admin token; no token or a bad one is simply not admin."""
        try:
            return "admin" in self.scopes_of(header)
        except Unauthorized:
            return False

    def create_token(self, name: str, scopes: list[str], ttl: int | None = None) -> tuple[str, Token]:
        """A new token; the plain value is returned once and never stored."""
        plain = secrets.token_urlsafe(32)
        try:
            record = Token(digest=hash_token(plain), name=name, scopes=scopes, created_at=self.clock(),
                           expires_at=self.clock() + ttl if ttl else 0)
        except ValueError as error:
            raise Invalid(str(error)) from None
        self.tokens.create(record)
        return plain, record

    def revoke(self, token_or_id: str) -> Token:
        """Revoke by the token itself, or by the id (hash prefix, >= 8 characters) that ``list`` shows.

        An id that more than one token starts with revokes nothing: guessing which one was meant
        could leave the leaked token working and cut off another."""
        records = list(self.tokens.all())
        digest = hash_token(token_or_id)
        matches = [record for record in records if record.digest == digest]
        if not matches and len(token_or_id) >= MIN_TOKEN_ID_LENGTH:
            matches = [record for record in records if record.digest.startswith(token_or_id.lower())]
        if not matches:
            raise NotFound("No such token.")
        if len(matches) > 1:
            raise Conflict(f"The id '{token_or_id}' matches {len(matches)} tokens; nothing was revoked. Give more "
                           "of the id ('token list' shows 12 characters) or the token itself.")
        record, = matches
        self.tokens.delete(record.digest)
        return record
