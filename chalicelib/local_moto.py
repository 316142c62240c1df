"""Nine costs of moto's DynamoDB, taken away for local mode's embedded server.

moto is written to check programs against, not to serve them. Three of its habits make local mode
slower the longer it runs (its TTL never deletes, so stopped servers and counters pile up; it keeps
every item it ever made), the others make every call dearer than it need be:

- **Every item ever made is kept**, in a list of its class's (``instances_tracked``, for moto's
  dashboard) that only a reset of moto empties: every version of every item, two an UpdateItem.
  Traced beside 60 pool hits, local mode held 2,531 items for about 30 live ones, and each of its
  full garbage collections (one every 20-60 s) took 115-430 ms, a pause for every request.
  ``forget_dropped_items`` makes items untracked: one nobody holds any more is freed.

- **Every Query and Scan sorts the whole table** by its keys (``Table.all_items``), comparing
  DynamoType against DynamoType, each comparison converting both values again: a claim's Query of
  the ``available`` index took 34 ms at 1,000 items and 102 ms at 3,000, against 3 ms at 10 (a slow
  day). ``sort_items_by_key_values`` sorts by the keys' values, converted once an item: the same
  order (a key attribute has one type, so comparing values is comparing DynamoTypes).
- **Every TransactWriteItems deep-copies the whole table** first, to roll back if a condition fails:
  227 ms a transaction at 1,000 items, against 8 ms at 20 (this machine). ``journal_transactions``
  copies only the items the transaction names, the only ones it can change, and puts them back
  itself when it fails; moto's own copy becomes the table itself, so its rollback does nothing.
- **Each update expression's clauses are counted at every level of its tree** (no two SET, ADD or
  REMOVE clauses), a third of a claim's transaction. ``count_clauses_once`` counts them at the root,
  which holds every clause of the levels below: the same expressions pass, the same ones fail.
- **Its generic response serializer** walks each attribute value through the service model: a
  query of 11 items spends most of its time there. Data-plane results are DynamoDB JSON already,
  so ``plain_json_results`` writes them with ``json.dumps``; anything else (bytes, timestamps,
  the control plane, errors) still goes through moto's serializer.
- **Each update expression is parsed twice a call, its tree deep-copied, then walked ten times**
  (once by each of the validator's processors, each asking ``isinstance`` of every node against
  every kind it handles, through abc's slow checks): most of an UpdateItem's time. A parse took 1.6
  ms and a copy 2.7 ms of a 9.4 ms UpdateItem on a slow day. ``reuse_parsed_expressions`` parses
  each expression string once (a parsed tree is only read; the validator works on its own copy)
  and copies trees node by node; ``walk_trees_once_per_kind`` asks which processor a node's class
  gets once per class and traverser, not once per node. A claim's transaction: 12.1 -> 7.7 ms.
- **A Query reads the whole table in key order**, then sorts what it keeps by every key again (an
  index's, then the table's: a total order), so the first sort never shows: ``queries_leave_the_table_unsorted``
  skips it (a Scan still sorts). **Every request lists its handler's methods** with ``inspect.getmembers``
  to find the action's: ``list_each_handlers_methods_once`` lists them once per class. A claim beside
  1,000 stopped servers: 18.7 -> 13.7 ms; on an empty table 13.3 -> 12.7 ms (a slow day).
- **A transaction's conditions are parsed three times a call** (to check that every name and value
  given is used, to check the condition, then again in the update it makes).
  ``reuse_parsed_conditions`` parses a condition once for the same names and values: a claim's
  Query and transaction 11.8 -> 11.1 ms (0.94x, medians of 600 claims in turns).

All are checked against moto's own behaviour in tests/test_local_moto.py. Installed once, by local
mode before it starts its embedded server (``local.start_database``); they change nothing a client
can see (but moto's dashboard, which lists no items since ``forget_dropped_items``).
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from types import SimpleNamespace
from typing import Any, Callable

from moto.core import responses as moto_responses
from moto.core.common_models import BaseModel
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node, UpdateExpression  # type: ignore[attr-defined]
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.validators import ActionCountValidator
from moto.dynamodb.responses import DynamoResult

# Operations whose results hold only strings, numbers, booleans, lists and maps (binary values are
# bytes and fall back): what the app calls, and their neighbours.
PLAIN_JSON_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
                                   "BatchWriteItem", "TransactGetItems", "TransactWriteItems"})
CONTENT_TYPE = "application/x-amz-json-1.0"  # DynamoDB's JSON protocol version

_installed = threading.Lock()
_in_transaction = threading.local()
_in_query = threading.local()
# What install() replaced, by name: the tests put them back to compare with moto's own answers.
ORIGINALS: dict[str, Any] = {}
Snapshot = list[tuple[Table, DynamoType, DynamoType | None, Item | None]]


def install() -> None:
    """The speed-ups, once per process."""
    with _installed:
        if not ORIGINALS:
            ORIGINALS.update(transact_write_items=DynamoDBBackend.transact_write_items,
                             copy=vars(dynamodb_models)["copy"], execute_result=DynamoResult.execute_result,
                             traverse=ActionCountValidator.traverse, make=vars(UpdateExpressionParser)["make"],
                             validators_deepcopy=vars(validators)["deepcopy"],
                             depth_first=DepthFirstTraverser.traverse, all_items=Table.all_items,
                             query=Table.query, method_names=vars(moto_responses)["method_names_from_class"],
                             condition_parse=ConditionExpressionParser.parse, item_new=vars(BaseModel)["__new__"])
            journal_transactions()
            count_clauses_once()
            plain_json_results()
            reuse_parsed_expressions()
            walk_trees_once_per_kind()
            sort_items_by_key_values()
            queries_leave_the_table_unsorted()
            list_each_handlers_methods_once()
            reuse_parsed_conditions()
            forget_dropped_items()


def journal_transactions() -> None:
    original: Callable[[DynamoDBBackend, list[dict[str, Any]]], None] = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        before = _snapshot(self, transact_items)
        _in_transaction.active = True
        try:
            original(self, transact_items)
        except Exception:
            _restore(before)
            raise
        finally:
            _in_transaction.active = False

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    # moto's module reads copy.deepcopy through its own ``copy`` name: in a transaction, a table is its own copy.
    vars(dynamodb_models)["copy"] = SimpleNamespace(**{**vars(copy), "deepcopy": _deepcopy_outside_transactions})


def _deepcopy_outside_transactions(value: Any, memo: dict[int, Any] | None = None) -> Any:
    if isinstance(value, Table) and getattr(_in_transaction, "active", False):
        return value  # the journal (``_snapshot``) keeps what this transaction may change
    return copy.deepcopy(value, memo)


def _snapshot(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Snapshot:
    """Each item the transaction names, as it is now (None: absent)."""
    saved: Snapshot = []
    for action in transact_items:
        for kind, operation in action.items():
            table = backend.tables.get(str(operation.get("TableName", "")))
            key = operation.get("Item" if kind == "Put" else "Key") or {}
            if table is None or table.hash_key_attr not in key:
                continue  # moto refuses the transaction before it writes anything
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            current = table.get_item(hash_key, range_key) if range_key or not table.has_range_key else None
            saved.append((table, hash_key, range_key, copy.deepcopy(current)))
    return saved


def _restore(saved: Snapshot) -> None:
    for table, hash_key, range_key, item in reversed(saved):  # the first snapshot of a key is the oldest
        if range_key is None:
            table.items.pop(hash_key, None)
            if item is not None:
                table.items[hash_key] = item  # type: ignore[assignment]  # (moto's own annotation is off)
        else:
            table.items[hash_key].pop(range_key, None)
            if item is not None:
                table.items[hash_key][range_key] = item
            elif not table.items[hash_key]:
                del table.items[hash_key]  # as if this transaction had never made its partition


def count_clauses_once() -> None:
    original = ActionCountValidator.traverse

    def traverse(self: ActionCountValidator, node: Any) -> Any:
        if isinstance(node, UpdateExpression):  # the root: what it passes, every subtree passes
            return self.verify_action_counts(node)
        return original(self, node)

    ActionCountValidator.traverse = traverse  # type: ignore[method-assign]


def plain_json_results() -> None:
    original = DynamoResult.execute_result

    def execute_result(self: DynamoResult, context: Any) -> Any:
        if context.operation_model.name in PLAIN_JSON_OPERATIONS:
            try:
                body = json.dumps(self.result, separators=(",", ":"))
            except TypeError:  # bytes or a datetime: moto's serializer knows how to write them
                pass
            else:
                return 200, {"Content-Type": CONTENT_TYPE}, body
        return original(self, context)

    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]


PARSED_EXPRESSIONS = 1024  # distinct update expressions kept parsed (the app writes a few dozen)


def reuse_parsed_expressions() -> None:
    parse = UpdateExpressionParser.make  # bound to the class: make(expression) -> a new tree
    parsed = functools.lru_cache(maxsize=PARSED_EXPRESSIONS)(parse)  # a refused expression raises, never cached

    def make(cls: type, expression_str: str) -> Any:
        return parsed(expression_str)

    UpdateExpressionParser.make = classmethod(make)  # type: ignore[assignment]
    vars(validators)["deepcopy"] = _copy_tree_or_deepcopy  # the validator's copy of the tree (and of values)


PARSED_CONDITIONS = 1024  # distinct (condition, names, values) kept parsed: a call's three parses share one


def reuse_parsed_conditions() -> None:
    """A condition is parsed once for the same names and values: moto parses a transaction's each
    time it reads it (to check its names are used, to check it, and again in the update it makes)."""
    parse = ConditionExpressionParser.parse

    @functools.lru_cache(maxsize=PARSED_CONDITIONS)  # a refused condition raises, never cached
    def parsed(expression: str | None, names_and_values: str) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
        parser = ConditionExpressionParser(expression, *json.loads(names_and_values))
        return parse(parser), tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found)

    def parse_once(self: ConditionExpressionParser) -> Any:
        try:
            names_and_values = json.dumps([self.expression_attribute_names, self.expression_attribute_values],
                                          sort_keys=True)
        except TypeError:  # a binary value (bytes): parsed as moto parses it, every time
            return parse(self)
        operator, names, values = parsed(self.condition_expression, names_and_values)
        self.expr_attr_names_found.extend(names)  # what the parse found: moto checks that every one given is used
        self.expr_attr_values_found.extend(values)
        return operator  # a tree of operators is only read: evaluating it against an item changes neither

    ConditionExpressionParser.parse = parse_once  # type: ignore[method-assign]


def forget_dropped_items() -> None:
    """moto's models are kept in a list of their class's as they are made (``instances_tracked``, for its
    dashboard), and the list is emptied only when moto is reset: every version of every item ever
    written stays in memory (two an UpdateItem: the new one and moto's copy of the old). Items are
    made untracked, and an item nobody holds any more is freed. moto's dashboard (``/moto-api/`` at
    the embedded endpoint) lists no items since; a Scan, or the operator CLI, shows them."""
    Item.__new__ = staticmethod(_untracked)  # type: ignore[assignment]


def _untracked(cls: type, *_: Any, **__: Any) -> Any:
    return object.__new__(cls)


class _NotATree(Exception):
    """A node refers to another node other than through its children: deepcopy's own walk copies it."""


def _copy_tree_or_deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    if isinstance(value, Node) and value.parent is None:  # a whole tree, as the validator copies it
        try:
            return _copy_tree(value, None)
        except _NotATree:
            pass
    return copy.deepcopy(value, memo)


def _copy_tree(node: Any, parent: Any) -> Any:
    """``copy.deepcopy(node)`` for a parsed expression's tree: every node anew with its parent set, and
    every other child deep-copied (a parsed tree holds only names, placeholders and numbers)."""
    clone = object.__new__(type(node))
    for name, value in node.__dict__.items():
        if name in ("children", "parent"):
            continue
        if isinstance(value, Node):
            raise _NotATree(name)
        setattr(clone, name, value if isinstance(value, (str, int, float, bool, type(None))) else copy.deepcopy(value))
    clone.parent = parent
    children = node.children
    clone.children = [_copy_tree(child, clone) if isinstance(child, Node) else copy.deepcopy(child)
                      for child in children] if isinstance(children, list) else copy.deepcopy(children)
    return clone


def walk_trees_once_per_kind() -> None:
    DepthFirstTraverser.traverse = _traverse  # type: ignore[method-assign]


def _traverse(self: Any, root: Any) -> Any:
    """``DepthFirstTraverser.traverse``: children first, then the node by the first processor of the
    map whose class it is an instance of, the result put in the node's place under its parent."""
    processors = self._processing_map()  # moto rebuilds it twice a node; its keys depend on the class only
    traverser = type(self)

    def visit(node: Any, child_id: int) -> Any:
        kind = type(node)
        is_node = _IS_NODE.get(kind)
        if is_node is None:
            is_node = _IS_NODE[kind] = issubclass(kind, Node)
        if not is_node:
            return node
        parent = node.parent
        if node.children is not None:
            for position, child in enumerate(node.children):
                self.pre_processing_of_child(node, position)
                visit(child, position)
        handled_as = _HANDLED_AS.get((traverser, kind), _UNKNOWN)
        if handled_as is _UNKNOWN:
            handled_as = _HANDLED_AS[(traverser, kind)] = next(
                (cls for cls in processors if issubclass(kind, cls)), None)
        if handled_as is not None:
            node = processors[handled_as](node)
            node.parent = parent
            if parent:
                parent.children[child_id] = node
        return node

    return visit(root, -1)


_UNKNOWN = object()
_IS_NODE: dict[type, bool] = {}
_HANDLED_AS: dict[tuple[type, type], Any] = {}  # (traverser class, node class) -> its processor's key, or None


def sort_items_by_key_values() -> None:
    Table.all_items = _all_items  # type: ignore[method-assign]


def _all_items(self: Table) -> list[Item]:
    """``Table.all_items``: every item, in the order of its keys (any order in a Query: it sorts what it keeps)."""
    if self.range_key_attr:
        items = [item for partition in self.items.values() for item in partition.values()]
    else:
        items = list(self.items.values())  # type: ignore[arg-type]  # (moto's own annotation is off)
    if getattr(_in_query, "active", False):
        return items
    return sorted(items, key=_key_values)


def queries_leave_the_table_unsorted() -> None:
    """A Query sorts the items it keeps by every key (an index's, then the table's: a total order), so the
    order it reads the table in never shows; only Scan's does."""
    query = Table.query

    def unsorted_query(self: Table, *args: Any, **kwargs: Any) -> Any:
        _in_query.active = True
        try:
            return query(self, *args, **kwargs)
        finally:
            _in_query.active = False

    Table.query = unsorted_query  # type: ignore[method-assign]


def list_each_handlers_methods_once() -> None:
    """moto lists its response handler's methods with ``inspect.getmembers`` on every request, to find the
    action's: a class's methods do not change, so the list is made once per class (as a set)."""
    names = vars(moto_responses)["method_names_from_class"]
    vars(moto_responses)["method_names_from_class"] = functools.lru_cache(maxsize=None)(
        lambda cls: frozenset(names(cls)))


def _key_values(item: Item) -> Any:
    if item.range_key:
        return item.hash_key.cast_value, item.range_key.cast_value
    return item.hash_key.cast_value
