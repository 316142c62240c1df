"""v1 bindings: ``BINDING#<org>/<repo>`` / ``BINDING`` (found by its path) and ``ENV#<name>`` / ``BINDING``
(found by its binder's name, which it reserves), two copies of one record written together.

The path is matched without regard to case, as GitHub's are. A binding changes only when its build
failed and a new POST built another commit (``repoint``); otherwise it is written once.
"""

from __future__ import annotations

from typing import Any

from chalicelib.models import Binding
from chalicelib.store.dynamo import ConditionFailed, Dynamo, serialize, values
from chalicelib.store.environments import env_pk

BINDING = "BINDING"


def path_pk(path: str) -> str:
    return f"BINDING#{path.lower()}"


def _keys(binding: Binding) -> list[tuple[str, str]]:
    return [(path_pk(binding.path), BINDING), (env_pk(binding.name), BINDING)]


def _item(pk: str, binding: Binding) -> dict[str, Any]:
    return {"pk": pk, "sk": BINDING, **binding.model_dump(mode="json")}


class BindingStore:
    def __init__(self, dynamo: Dynamo) -> None:
        self.db = dynamo

    def get(self, path: str) -> Binding | None:
        item = self.db.get(path_pk(path), BINDING)
        return Binding.model_validate(item) if item else None

    def by_name(self, name: str) -> Binding | None:
        item = self.db.get(env_pk(name), BINDING)
        return Binding.model_validate(item) if item else None

    def create(self, binding: Binding) -> bool:
        """Save a new binding under its path and its name; False if either is taken (nothing is saved)."""
        try:
            self.db.transact([{"Put": {"TableName": self.db.table_name, "Item": serialize(_item(pk, binding)),
                                       "ConditionExpression": "attribute_not_exists(pk)"}}
                              for pk, _ in _keys(binding)])
        except ConditionFailed:
            return False
        return True

    def repoint(self, binding: Binding, image_name: str) -> Binding | None:
        """Point ``binding`` at another image (its build failed; a new commit is built); None if another
        request repointed it first."""
        updates = [{"Update": self.db.update_args(pk, sk, "SET #image = :new", condition="#image = :old",
                                                  names={"#image": "image_name"},
                                                  vals=values(new=image_name, old=binding.image_name))}
                   for pk, sk in _keys(binding)]
        try:
            self.db.transact(updates)
        except ConditionFailed:
            return None
        return binding.model_copy(update={"image_name": image_name})
