"""AWS's documented request limits that moto does not enforce, checked on every botocore call of the suite.

moto answers requests real AWS refuses (a "." in startedBy, ListTasks with two filters, a key past
2,048 bytes), so a suite that passes on moto can still fail "the first time on a real account".
``install`` hooks ``check_request`` on botocore's ``before-parameter-build`` event in every session
(botocore.handlers.BUILTIN_HANDLERS, as moto's own stubber is, and the boto3 default session), so
it sees the clients of the tests, chalicelib's lazy ones and those talking to a moto server alike.

A request that breaks a rule raises ``AwsRuleViolation`` at the call, as AWS would refuse it, and is
recorded: tests/conftest.py fails the test at teardown even if the code under test swallowed the
error. Each rule quotes the documentation it comes from, and a failure quotes the rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore import handlers

from tests.aws_rules.documented import (
    CODEBUILD_VARIABLES,
    ECS_TAGS,
    IMAGE_TAG,
    LIST_TASKS_FILTERS,
    OVERRIDES_SIZE,
    PARTITION_KEY,
    RULES,
    RUN_TASK_COUNT,
    SORT_KEY,
    STARTED_BY,
    TRANSACTION_ACTIONS,
    TRANSACTION_ITEMS,
    TRANSACTION_SIZE,
    AwsRuleViolation,
    Found,
    Rule,
    Violation,
)
from tests.aws_rules.dynamodb import DynamoRules
from tests.aws_rules.services import (
    ecr_image_ids,
    list_tasks,
    register_task_definition,
    run_task,
    start_build,
    tag_resource,
)

__all__ = ["CODEBUILD_VARIABLES", "ECS_TAGS", "IMAGE_TAG", "LIST_TASKS_FILTERS", "OVERRIDES_SIZE", "PARTITION_KEY",
           "RECORDER", "RULES", "RUN_TASK_COUNT", "SORT_KEY", "STARTED_BY", "TRANSACTION_ACTIONS",
           "TRANSACTION_ITEMS", "TRANSACTION_SIZE", "AwsRuleViolation", "Recorder", "Rule", "Violation", "install"]

Check = Callable[[Mapping[str, Any]], Found]
CHECKS: dict[tuple[str, str], Check] = {
    ("ecs", "RunTask"): run_task,
    ("ecs", "StartTask"): run_task,
    ("ecs", "ListTasks"): list_tasks,
    ("ecs", "RegisterTaskDefinition"): register_task_definition,
    ("ecs", "TagResource"): tag_resource,
    ("ecr", "DescribeImages"): ecr_image_ids,
    ("ecr", "BatchGetImage"): ecr_image_ids,
    ("ecr", "PutImage"): ecr_image_ids,
    ("codebuild", "StartBuild"): start_build,
}


class Recorder:
    """The violations of the requests made since the last ``take``, from every thread."""

    def __init__(self) -> None:
        self.dynamo = DynamoRules()
        self.requests = 0  # how many requests were checked: proof that the hook runs
        self._violations: list[Violation] = []
        self._lock = threading.Lock()

    def violations(self, service: str, operation: str, params: Mapping[str, Any]) -> list[Violation]:
        check = CHECKS.get((service, operation))
        if service == "dynamodb":
            check = lambda request: self.dynamo.check(operation, request)  # noqa: E731
        try:
            found = list(check(params)) if check else []
        except (KeyError, TypeError, AttributeError, ValueError):
            found = []  # a malformed request: botocore's own validation will refuse it
        return [Violation(rule, f"{service}.{operation}", detail) for rule, detail in found]

    def check_request(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        violations = self.violations(model.service_model.service_name, model.name, params)
        with self._lock:
            self.requests += 1
            self._violations.extend(violations)
        if violations:
            raise AwsRuleViolation("\n".join(map(str, violations)))

    def take(self) -> list[Violation]:
        with self._lock:
            taken, self._violations = self._violations, []
        return taken


RECORDER = Recorder()
_EVENT = "before-parameter-build"


def _hook(params: Mapping[str, Any], model: Any, **kwargs: Any) -> None:
    RECORDER.check_request(params, model, **kwargs)


def install() -> None:
    """Check every request of every botocore session from now on (clients made before keep their handlers)."""
    if (_EVENT, _hook) not in handlers.BUILTIN_HANDLERS:
        handlers.BUILTIN_HANDLERS.append((_EVENT, _hook))
    if boto3.DEFAULT_SESSION is not None:  # made before us: register on it too (once; the id makes it idempotent)
        boto3.DEFAULT_SESSION.events.register(_EVENT, _hook, unique_id="binderless-aws-rules")
