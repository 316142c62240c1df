"""The recorder of tests/aws_rules/: each rule refuses what AWS documents it refuses, and the hook
sees every client (the tests', chalicelib's lazy ones, a fresh session's, one talking to a moto server)."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.backends import aws_tasks
from chalicelib.backends.aws import AwsSpawner
from chalicelib.config import Settings
from tests import aws_rules
from tests.aws_rules import AwsRuleViolation, Recorder, Rule
from tests.conftest import REGION, World, auth
from tests.helpers import staged

TABLE = "binderless"


def broken(service: str, operation: str, params: dict[str, Any]) -> set[Rule]:
    return {violation.rule for violation in Recorder().violations(service, operation, params)}


def item(pk: str, sk: str = "S", **attributes: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, **{name: {"S": value} for name, value in attributes.items()}}


# ---------------------------------------------------------------- ECS

@pytest.mark.parametrize("started", ["binderless.5f0c", "x" * 129, "a b", "", "binderless:x"])
def test_started_by_allows_letters_digits_hyphen_slash_underscore_up_to_128(started: str) -> None:
    assert broken("ecs", "RunTask", {"taskDefinition": "td", "startedBy": started}) == {aws_rules.STARTED_BY}
    assert broken("ecs", "ListTasks", {"startedBy": started}) == {aws_rules.STARTED_BY}


def test_a_good_started_by_passes() -> None:
    assert not broken("ecs", "RunTask", {"taskDefinition": "td", "startedBy": "binderless-5f0c_1/" + "x" * 100})


@pytest.mark.parametrize("other", [{"desiredStatus": "RUNNING"}, {"family": "f"}, {"launchType": "FARGATE"},
                                   {"serviceName": "s"}, {"containerInstance": "c"}])
def test_list_tasks_by_started_by_takes_no_other_filter(other: dict[str, str]) -> None:
    assert broken("ecs", "ListTasks", {"cluster": "c", "startedBy": "binderless-1", **other}) == {
        aws_rules.LIST_TASKS_FILTERS}
    assert not broken("ecs", "ListTasks", {"cluster": "c", "startedBy": "binderless-1", "nextToken": "t"})
    assert not broken("ecs", "ListTasks", {"cluster": "c", **other})  # without startedBy, filters combine


@pytest.mark.parametrize(("count", "refused"), [(0, True), (1, False), (10, False), (11, True)])
def test_run_task_starts_1_to_10_tasks(count: int, refused: bool) -> None:
    assert (broken("ecs", "RunTask", {"taskDefinition": "td", "count": count}) == {aws_rules.RUN_TASK_COUNT}) is refused


def test_run_task_overrides_are_8192_characters_of_json_at_most() -> None:
    def overrides(size: int) -> dict[str, Any]:
        shell = {"containerOverrides": [{"name": "notebook", "command": [""]}]}
        padding = size - len(json.dumps(shell, separators=(",", ":")))
        return {"containerOverrides": [{"name": "notebook", "command": ["x" * padding]}]}

    assert not broken("ecs", "RunTask", {"taskDefinition": "td", "overrides": overrides(8192)})
    assert broken("ecs", "RunTask", {"taskDefinition": "td", "overrides": overrides(8193)}) == {
        aws_rules.OVERRIDES_SIZE}


@pytest.mark.parametrize("tag", [
    {"key": "k" * 129, "value": "v"},
    {"key": "repository", "value": "v" * 257},
    {"key": "repository", "value": "https://github.com/o/r?x=1"},
    {"key": "repository", "value": "a#b"},
    {"key": "aws:mine", "value": "v"},
    {"key": "mine", "value": "AWS:v"},
    {"key": "", "value": "v"},
])
def test_ecs_tags_follow_the_tagging_rules(tag: dict[str, str]) -> None:
    assert broken("ecs", "RunTask", {"taskDefinition": "td", "tags": [tag]}) == {aws_rules.ECS_TAGS}


def test_good_ecs_tags_pass_and_keys_may_not_repeat() -> None:
    good = [{"key": "binderless:environment", "value": "https://github.com/owner/repo @ v1.0+x=y"},
            {"key": "café", "value": "ünïcode letters and numbers ²"}]
    assert not broken("ecs", "RunTask", {"taskDefinition": "td", "tags": good})
    assert broken("ecs", "RunTask", {"taskDefinition": "td", "tags": [good[0], good[0]]}) == {aws_rules.ECS_TAGS}
    assert broken("ecs", "RunTask", {"taskDefinition": "td", "tags": [{"key": f"k{n}", "value": ""}
                                                                        for n in range(51)]}) == {aws_rules.ECS_TAGS}


# ---------------------------------------------------------------- DynamoDB

def test_keys_are_2048_bytes_of_partition_key_and_1024_of_sort_key() -> None:
    assert not broken("dynamodb", "PutItem", {"TableName": TABLE, "Item": item("p" * 2048, "s" * 1024)})
    assert broken("dynamodb", "PutItem", {"TableName": TABLE, "Item": item("p" * 2049)}) == {aws_rules.PARTITION_KEY}
    assert broken("dynamodb", "PutItem", {"TableName": TABLE, "Item": item("p", "s" * 1025)}) == {aws_rules.SORT_KEY}
    assert broken("dynamodb", "PutItem", {"TableName": TABLE, "Item": item("é" * 1025)}) == {  # bytes, not characters
        aws_rules.PARTITION_KEY}
    assert broken("dynamodb", "GetItem", {"TableName": TABLE, "Key": item("p" * 2049)}) == {aws_rules.PARTITION_KEY}
    assert broken("dynamodb", "BatchGetItem", {"RequestItems": {TABLE: {"Keys": [item("p"), item("p", "")]}}}) == {
        aws_rules.SORT_KEY}


def test_index_keys_of_written_items_and_queried_values_have_the_same_limits() -> None:
    long = "https://github.com/o/" + "r" * 2030
    assert broken("dynamodb", "PutItem", {"TableName": TABLE, "Item": item("BUILD#x", "BUILD", repository=long)}) == {
        aws_rules.PARTITION_KEY}
    update = {"TableName": TABLE, "Key": item("ENV#e", "SERVER#1"), "UpdateExpression": "SET #a = :a, launch = :l",
              "ExpressionAttributeNames": {"#a": "avail_env"},
              "ExpressionAttributeValues": {":a": {"S": "e" * 2049}, ":l": {"S": "1"}}}
    assert broken("dynamodb", "UpdateItem", update) == {aws_rules.PARTITION_KEY}
    query = {"TableName": TABLE, "IndexName": "by-repository", "KeyConditionExpression": "repository = :repository",
             "ExpressionAttributeValues": {":repository": {"S": long}}}
    assert broken("dynamodb", "Query", query) == {aws_rules.PARTITION_KEY}
    assert not broken("dynamodb", "Query", {**query, "ExpressionAttributeValues": {":repository": {"S": "r"}}})


def test_a_transaction_has_100_actions_at_most_one_per_item() -> None:
    def put(n: int) -> dict[str, Any]:
        return {"Put": {"TableName": TABLE, "Item": item(f"p{n}")}}

    assert not broken("dynamodb", "TransactWriteItems", {"TransactItems": [put(n) for n in range(100)]})
    assert broken("dynamodb", "TransactWriteItems", {"TransactItems": [put(n) for n in range(101)]}) == {
        aws_rules.TRANSACTION_ACTIONS}
    same = {"Update": {"TableName": TABLE, "Key": item("p1"), "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}
    assert broken("dynamodb", "TransactWriteItems", {"TransactItems": [put(1), same]}) == {
        aws_rules.TRANSACTION_ITEMS}


def test_a_transaction_holds_4_mb_of_items_at_most() -> None:
    big = [{"Put": {"TableName": TABLE, "Item": {**item(f"p{n}"), "blob": {"S": "x" * 390_000}}}} for n in range(11)]
    assert broken("dynamodb", "TransactWriteItems", {"TransactItems": big}) == {aws_rules.TRANSACTION_SIZE}
    assert not broken("dynamodb", "TransactWriteItems", {"TransactItems": big[:10]})


def test_a_created_table_teaches_its_own_keys() -> None:
    recorder = Recorder()
    recorder.violations("dynamodb", "CreateTable", {
        "TableName": "other", "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [], "GlobalSecondaryIndexes": [
            {"IndexName": "by-owner", "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}]}]})
    assert recorder.violations("dynamodb", "PutItem", {"TableName": "other", "Item": {"id": {"S": "i" * 2049}}})
    assert recorder.violations("dynamodb", "PutItem", {"TableName": "other",
                                                        "Item": {"id": {"S": "i"}, "owner": {"S": "o" * 2049}}})
    assert not recorder.violations("dynamodb", "PutItem", {"TableName": "other",
                                                            "Item": {"id": {"S": "i"}, "pk": {"S": "p" * 3000}}})


# ---------------------------------------------------------------- images and builds

@pytest.mark.parametrize(("tag", "refused"), [("latest", False), ("_x.y-z", False), ("a" * 128, False),
                                              ("a" * 129, True), (".hidden", True), ("-x", True), ("a/b", True),
                                              ("é", True), ("", True)])
def test_image_tags_are_docker_tags(tag: str, refused: bool) -> None:
    uri = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/binderless:{tag}"
    variables = [{"name": "IMAGE_URI", "value": uri, "type": "PLAINTEXT"}]
    assert (broken("codebuild", "StartBuild", {"projectName": "p", "environmentVariablesOverride": variables})
            == {aws_rules.IMAGE_TAG}) is refused
    assert (broken("ecr", "DescribeImages", {"repositoryName": "r", "imageIds": [{"imageTag": tag}]})
            == {aws_rules.IMAGE_TAG}) is refused
    containers = [{"name": "notebook", "image": uri}]
    assert (broken("ecs", "RegisterTaskDefinition", {"family": "f", "containerDefinitions": containers})
            == {aws_rules.IMAGE_TAG}) is refused


def test_images_without_a_tag_or_with_a_registry_port_are_not_tags() -> None:
    containers = [{"name": "a", "image": "localhost:5000/jupyter"}, {"name": "b", "image": "python@sha256:" + "0" * 64}]
    assert not broken("ecs", "RegisterTaskDefinition", {"family": "f", "containerDefinitions": containers})


def test_build_variables_have_a_name_and_a_known_type() -> None:
    def start(variable: dict[str, str]) -> set[Rule]:
        return broken("codebuild", "StartBuild", {"projectName": "p", "environmentVariablesOverride": [variable]})

    assert not start({"name": "REPOSITORY", "value": "https://github.com/o/" + "r" * 2030, "type": "PLAINTEXT"})
    assert start({"name": "", "value": "v"}) == {aws_rules.CODEBUILD_VARIABLES}
    assert start({"name": "X", "value": "v", "type": "plaintext"}) == {aws_rules.CODEBUILD_VARIABLES}


def test_every_rule_quotes_its_documentation() -> None:
    for rule in aws_rules.RULES:
        assert rule.source.startswith("https://docs.") and len(rule.sentence) > 40
        violation = aws_rules.Violation(rule, "ecs.RunTask", "what was sent")
        assert rule.sentence in str(violation) and rule.source in str(violation)


# ---------------------------------------------------------------- the hook, on every client

def test_the_app_breaking_a_rule_is_caught_and_fails_the_test(client: Any, world: World,
                                                              aws_requests: Recorder,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    environment = staged(client, world)
    monkeypatch.setattr(aws_tasks, "started_by", lambda launch: f"binderless.{launch}")  # the old spelling

    reply = client.http.post(f"/deployments/{environment}", body="", headers=auth())

    assert reply.status_code >= 500  # raised inside RunTask, as AWS's refusal would be
    (violation,) = aws_requests.take()  # taken: else this test would fail at teardown
    assert violation.rule is aws_rules.STARTED_BY and violation.operation == "ecs.RunTask"
    assert "binderless." in violation.detail


def test_the_apps_own_lazy_clients_are_checked(world: World, aws_requests: Recorder) -> None:
    before = aws_requests.requests
    lazy = AwsSpawner(Settings(region=REGION))  # builds its own client on first use

    assert lazy.tasks_of("5f0c1a2b") == []
    assert aws_requests.requests == before + 1
    with pytest.raises(AwsRuleViolation, match="startedBy"):
        lazy.ecs.list_tasks(cluster="binderless", startedBy="binderless.5f0c1a2b")
    assert [v.rule for v in aws_requests.take()] == [aws_rules.STARTED_BY]


def test_the_store_breaking_a_key_limit_is_caught(world: World, aws_requests: Recorder) -> None:
    with pytest.raises(AwsRuleViolation, match="2048"):
        world.services.store.dynamo.get("QUOTA#REPO#" + "r" * 2048, "QUOTA")
    assert [v.rule for v in aws_requests.take()] == [aws_rules.PARTITION_KEY]


def test_clients_of_a_new_session_and_of_a_moto_server_are_checked(aws_requests: Recorder) -> None:
    from tests.load import moto_over_http

    with mock_aws():
        fresh = boto3.session.Session().client("ecs", region_name=REGION)
        with pytest.raises(AwsRuleViolation):
            fresh.list_tasks(cluster="c", startedBy="binderless-1", desiredStatus="RUNNING")
    with moto_over_http():
        over_http = boto3.client("ecs", region_name=REGION)
        over_http.create_cluster(clusterName="c")
        with pytest.raises(AwsRuleViolation):
            over_http.run_task(cluster="c", taskDefinition="td", count=11)
    assert [v.rule for v in aws_requests.take()] == [aws_rules.LIST_TASKS_FILTERS, aws_rules.RUN_TASK_COUNT]


def test_the_longest_origin_list_allowed_still_fits_runtask_overrides() -> None:
    """The servers' allowed origins and ``culling.SERVE`` travel in every RunTask's command override."""
    origins, number = [], 0
    while len(",".join(origins)) < 1950:  # Settings refuses more than 2,000 characters in all
        origins.append(f"https://docs-{number:04d}.example.org")
        number += 1
    sent: dict[str, Any] = {}

    class Ecs:
        def run_task(self, **params: Any) -> dict[str, Any]:
            sent.update(params)
            return {"tasks": [], "failures": []}

    spawner = AwsSpawner(Settings(cors_origins=tuple(origins), subnets=("subnet-1",)), ecs=Ecs())  # type: ignore[arg-type]
    spawner.start({"task_definition": "arn:aws:ecs:us-east-1:1:task-definition/td:1"}, [f"s{i}" for i in range(10)],
                  "5f0c1a2b", "k" * 64)
    command = sent["overrides"]["containerOverrides"][0]["command"]
    assert any(re.escape(origins[-1]) in argument for argument in command)
    assert not broken("ecs", "RunTask", sent)
