"""The AWS limits the recorder enforces, each with the documentation's own words and where they are."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    name: str
    sentence: str  # the documentation's own words
    source: str


ECS_API = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference"
DYNAMODB_GUIDE = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide"
STARTED_BY = Rule(
    "RunTask startedBy", "Up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward slash (/), "
    "and underscores (_) are allowed.", f"{ECS_API}/API_RunTask.html#ECS-RunTask-request-startedBy")
LIST_TASKS_FILTERS = Rule(
    "ListTasks startedBy alone", "When you specify startedBy as the filter, it must be the only filter that you use.",
    f"{ECS_API}/API_ListTasks.html#ECS-ListTasks-request-startedBy")
RUN_TASK_COUNT = Rule(
    "RunTask count", "The number of instantiations of the specified task to place on your cluster. "
    "You can specify up to 10 tasks for each call.", f"{ECS_API}/API_RunTask.html#ECS-RunTask-request-count")
OVERRIDES_SIZE = Rule(
    "RunTask overrides size", "A total of 8192 characters are allowed for overrides. This limit includes the JSON "
    "formatting characters of the override structure.", f"{ECS_API}/API_RunTask.html#ECS-RunTask-request-overrides")
ECS_TAGS = Rule(
    "ECS tags", "Maximum number of tags per resource - 50. For each resource, each tag key must be unique, and each "
    "tag key can have only one value. Maximum key length - 128 Unicode characters in UTF-8. Maximum value length - "
    "256 Unicode characters in UTF-8. [...] Generally allowed characters are: letters, numbers, and spaces "
    "representable in UTF-8, and the following characters: + - = . _ : / @. [...] Do not use aws:, AWS:, or any "
    "upper or lowercase combination of such as a prefix for either keys or values as it is reserved for Amazon Web "
    "Services use.", f"{ECS_API}/API_RunTask.html#ECS-RunTask-request-tags")
TRANSACTION_ACTIONS = Rule(
    "TransactWriteItems actions", "TransactWriteItems is a synchronous write operation that groups up to 100 action "
    "requests.", "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html")
TRANSACTION_ITEMS = Rule(
    "TransactWriteItems one action per item", "These actions can target items in different tables, but not in "
    "different Amazon Web Services accounts or Regions, and no two actions can target the same item.",
    "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html")
TRANSACTION_SIZE = Rule(
    "TransactWriteItems size", "The aggregate size of the items in the transaction cannot exceed 4 MB.",
    "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html")
PARTITION_KEY = Rule(
    "DynamoDB partition key length", "The minimum length of a partition key value is 1 byte. The maximum length is "
    "2048 bytes. [...] There is no practical limit on the number of distinct partition key values, for tables or "
    "for secondary indexes.", f"{DYNAMODB_GUIDE}/Constraints.html#limits-partition-sort-keys")
SORT_KEY = Rule(
    "DynamoDB sort key length", "The minimum length of a sort key value is 1 byte. The maximum length is 1024 bytes.",
    f"{DYNAMODB_GUIDE}/Constraints.html#limits-partition-sort-keys")
IMAGE_TAG = Rule(
    "Image tag", "A tag name must be valid ASCII and may contain lowercase and uppercase letters, digits, "
    "underscores, periods and hyphens. A tag name may not start with a period or a hyphen and may contain a "
    "maximum of 128 characters.", "https://docs.docker.com/reference/cli/docker/image/tag/")
CODEBUILD_VARIABLES = Rule(
    "StartBuild environmentVariablesOverride", "name [...] Length Constraints: Minimum length of 1. [...] "
    "type [...] Valid Values: PLAINTEXT | PARAMETER_STORE | SECRETS_MANAGER",
    "https://docs.aws.amazon.com/codebuild/latest/APIReference/API_EnvironmentVariable.html")
RULES = (STARTED_BY, LIST_TASKS_FILTERS, RUN_TASK_COUNT, OVERRIDES_SIZE, ECS_TAGS, TRANSACTION_ACTIONS,
         TRANSACTION_ITEMS, TRANSACTION_SIZE, PARTITION_KEY, SORT_KEY, IMAGE_TAG, CODEBUILD_VARIABLES)


@dataclass(frozen=True)
class Violation:
    rule: Rule
    operation: str
    detail: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.detail}\n    AWS: \"{self.rule.sentence}\"\n    ({self.rule.source})"


class AwsRuleViolation(AssertionError):
    """A request real AWS would refuse; moto would have taken it."""


Found = Iterator[tuple[Rule, str]]
