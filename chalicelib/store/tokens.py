"""API tokens: ``TOKEN#<sha256 of the token>`` items. The plain token is never stored."""

from __future__ import annotations

from typing import Iterator

from chalicelib.models import Token
from chalicelib.store.dynamo import ConditionFailed, Dynamo, serialize, values

TOKEN_KIND = "TOKEN"  # noqa: S105 (an index partition name, not a secret)


def _key(digest: str) -> tuple[str, str]:
    return f"TOKEN#{digest}", "TOKEN"


class TokenStore:
    def __init__(self, dynamo: Dynamo) -> None:
        self.db = dynamo

    def get(self, digest: str) -> Token | None:
        item = self.db.get(*_key(digest))
        return Token.model_validate(item) if item else None

    def create(self, token: Token) -> None:
        pk, sk = _key(token.digest)
        item = {"pk": pk, "sk": sk, "kind_pk": TOKEN_KIND, "kind_sk": token.name, **token.model_dump()}
        if not token.expires_at:
            item.pop("expires_at")  # no TTL attribute: the token never expires
        self.db.put(item, condition="attribute_not_exists(pk)")

    def all(self) -> Iterator[Token]:
        for item in self.db.query("kind_pk = :kind", values(kind=TOKEN_KIND), index="by-kind"):
            yield Token.model_validate(item)

    def delete(self, digest: str) -> bool:
        """Revoke a token; False if there was none."""
        try:
            pk, sk = _key(digest)
            self.db.call("delete_item", TableName=self.db.table_name, Key=serialize({"pk": pk, "sk": sk}),
                         ConditionExpression="attribute_exists(pk)")
        except ConditionFailed:
            return False
        return True
