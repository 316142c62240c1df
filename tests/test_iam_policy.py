"""The Lambda role's policy grants every AWS call the code makes, on the resources it makes it on, and no more.

Two independent ways to find the calls:

* statically: every ``<x>.ecs|ec2|ecr|codebuild.<method>(``, ``<x>.client.<method>(`` (DynamoDB) and
  ``.call("<method>"`` in chalicelib (local mode excepted: it never runs in Lambda). A new call
  without a policy line fails here;
* dynamically: the whole API flow (token, build, poll, stage, pool, public address, claim, stop,
  schedule) against the resources the infra stack created in moto, with every botocore request
  recorded and checked, with its real resource ARN and condition keys, against the policy that
  ``scripts/configure.py`` writes for that stack.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from chalicelib.backends.aws import AwsBuilder, AwsSpawner, AwsStager
from chalicelib.backends.aws_stagings import family_name
from chalicelib.config import Settings
from chalicelib.context import set_services
from chalicelib.services import build_services
from chalicelib.store import Store
from scripts.cfn import ROOT, SINGLE_STACK, load_template
from scripts.configure import configure_stage, stage_environment
from scripts.policy import LOG_ACTIONS, TASK_FAMILY_PREFIX, UNRESTRICTABLE, default_outputs, lambda_policy
from scripts.single_stack import ROLES
from tests.conftest import ADMIN, Clock, GitRefs, World, auth, body
from tests.helpers import REPO, build_event, run_all_starting, staged, tasks_of_launch, tick
from tests.test_contract_builder import CodeBuildWithLogs
from tests.test_infra import REGION, deploy_stack

CHALICE = ROOT / ".chalice"
BUILD_LOGS = "/aws/codebuild/binderless-repo2docker"  # infra/binderless.yml's BuildLogGroup for Name=binderless
# attribute holding a boto3 client in chalicelib -> its service (= the IAM prefix)
CLIENT_ATTRIBUTES = {"ecs": "ecs", "ec2": "ec2", "ecr": "ecr", "codebuild": "codebuild", "client": "dynamodb",
                     "logs_client": "logs", "secretsmanager": "secretsmanager"}
# Calls only a deployment with the proxy makes (its token, routers.SecretToken): granted exactly then, on its
# one secret (tests/test_aws_proxy.py runs them against the proxy stack).
PROXY_ACTIONS = {"secretsmanager:GetSecretValue"}
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem"}
# Granted though no code line names them: the policy must hold them, nothing else beyond the calls.
IMPLIED = {"iam:PassRole": "RegisterTaskDefinition/RunTask hand the servers' roles to ECS",
           "ecs:TagResource": "RunTask's tags: AWS authorizes tagging at creation as ecs:TagResource", **{
    action: "the functions' own logs" for action in LOG_ACTIONS}}


# ---------------------------------------------------------------- the calls in the code

def _is_local_mode(path: Path) -> bool:
    return path.name.startswith("local")  # chalicelib/local.py, backends/local*.py: never in Lambda


def _skipped_nodes(path: Path, tree: ast.AST) -> set[int]:
    """Dynamo.create_table builds the table for tests and local mode; in AWS, infra/ creates it."""
    if path.name != "dynamo.py":
        return set()
    return {id(node) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "create_table"
            for node in ast.walk(f)}


def code_calls() -> dict[tuple[str, str], list[str]]:
    """(service, boto3 method) -> where chalicelib calls it."""
    calls: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        if _is_local_mode(path):
            continue
        tree = ast.parse(path.read_text())
        skipped = _skipped_nodes(path, tree)
        for node in ast.walk(tree):
            if id(node) in skipped or not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr in CLIENT_ATTRIBUTES and not (
                    isinstance(owner.value, ast.Name) and owner.value.id == "http"):
                calls[(CLIENT_ATTRIBUTES[owner.attr], node.func.attr)].append(where)
            elif node.func.attr == "call" and node.args and isinstance(node.args[0], ast.Constant):
                calls[("dynamodb", str(node.args[0].value))].append(where)
    return dict(calls)


def code_clients() -> set[str]:
    services = set()
    for path in (ROOT / "chalicelib").rglob("*.py"):
        if not _is_local_mode(path):
            services |= set(re.findall(r"boto3\.client\(\s*\"([a-z0-9-]+)\"", path.read_text()))
    return services


def transaction_actions() -> set[str]:
    """The item actions inside the store's TransactWriteItems calls (IAM checks each, not the call)."""
    kinds = set()
    for path in (ROOT / "chalicelib" / "store").glob("*.py"):
        kinds |= set(re.findall(r"\{\"(Put|Update|Delete|ConditionCheck)\":", path.read_text()))
    return {f"dynamodb:{TRANSACT_ACTIONS[kind]}" for kind in kinds}


def required_actions() -> set[str]:
    actions = set()
    for service, method in code_calls():
        operation = boto3.client(service, region_name=REGION).meta.method_to_api_mapping.get(method)
        assert operation, f"{service}.{method} is not an AWS operation: teach code_calls() about it"
        if operation == "TransactWriteItems":
            actions |= transaction_actions()
        else:
            actions.add(f"{service}:{operation}")
    return actions


def test_the_scan_sees_the_calls_the_code_makes() -> None:
    actions = required_actions()

    assert code_clients() <= set(CLIENT_ATTRIBUTES.values()), "a new AWS client: extend CLIENT_ATTRIBUTES"
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
            "ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "ecs:RegisterTaskDefinition",
            "codebuild:StartBuild", "codebuild:BatchGetBuilds", "ecr:DescribeImages",
            "ec2:DescribeNetworkInterfaces"} <= actions
    assert "dynamodb:CreateTable" not in actions  # tests and local mode only
    for path in (ROOT / "chalicelib").rglob("*.py"):
        if not _is_local_mode(path) and path.name != "dynamo.py":
            assert ".create_table(" not in path.read_text(), f"{path}: the Lambda role may not create tables"


# ---------------------------------------------------------------- the policies we ship

def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


PROXY_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:binderless/proxy-auth-token-AbCdEf"


def with_proxy(document: dict[str, Any], proxy: bool) -> dict[str, Any]:
    """A single-stack policy as CloudFormation resolves it with the condition ``Proxy`` true or false."""
    statements = []
    for statement in document["Statement"]:
        if "Fn::If" in statement:
            condition, when_true, when_false = statement["Fn::If"]
            assert condition == "Proxy" and when_false == {"Ref": "AWS::NoValue"}, statement
            if proxy:
                statements.append(when_true)
        else:
            statements.append(statement)
    return {**document, "Statement": statements}


def shipped_policies() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every policy a deployment gets: the stages' policy files, configured ones (without and with the proxy),
    the single stack's (both ways)."""
    config = json.loads((CHALICE / "config.json").read_text())
    for stage, stage_config in config["stages"].items():
        if stage_environment(config, stage).get("BINDERLESS_BACKEND", "aws") == "aws":
            assert stage_config.get("autogen_policy") is False, f"stage {stage}: autogen_policy must be false"
            yield stage, json.loads((CHALICE / stage_config["iam_policy_file"]).read_text())
    outputs = default_outputs("binderless", region="eu-west-1", account="123456789012")
    yield "configured", lambda_policy(outputs, "binderless", "prod")
    yield "configured-proxy", lambda_policy({**outputs, "ProxyAuthTokenSecretArn": PROXY_SECRET}, "binderless", "prod")
    resources = load_template(SINGLE_STACK)["Resources"]
    documents = [resources[role]["Properties"]["Policies"][0]["PolicyDocument"] for role in ROLES.values()]
    assert all(document == documents[0] for document in documents)
    yield "single-stack", with_proxy(documents[0], False)
    yield "single-stack-proxy", with_proxy(documents[0], True)


@pytest.mark.parametrize("name, policy", [pytest.param(*p, id=p[0]) for p in shipped_policies()])
def test_the_policy_grants_every_call_and_nothing_else(name: str, policy: dict[str, Any]) -> None:
    proxied = name.endswith("-proxy")
    required = required_actions() if proxied else required_actions() - PROXY_ACTIONS
    granted = {action for s in policy["Statement"] for action in _list(s["Action"])}

    missing = {a for a in required if not any(fnmatch.fnmatchcase(a, g) for g in granted)}
    assert not missing, f"{name}: no policy line for {sorted(missing)} (scripts/policy.py STATEMENTS)"
    assert not granted - required - set(IMPLIED), f"{name}: grants what the code never calls"
    assert required_actions() >= PROXY_ACTIONS  # the scan sees the token's call
    if proxied:  # the proxy's token: its one secret, nothing else of Secrets Manager
        (token,) = [s for s in policy["Statement"] if set(_list(s["Action"])) & PROXY_ACTIONS]
        assert _list(token["Action"]) == ["secretsmanager:GetSecretValue"]
        assert token["Resource"] in (PROXY_SECRET, {"Ref": "ProxyAuthToken"}), token
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in _list(statement["Action"]))
        if "*" in _list(statement["Resource"]):
            assert set(_list(statement["Action"])) <= set(UNRESTRICTABLE), f"{name}: '*' for {statement['Action']}"


def test_each_stage_policy_names_the_resources_of_its_stage() -> None:
    config = json.loads((CHALICE / "config.json").read_text())
    for stage, stage_config in config["stages"].items():
        if "iam_policy_file" not in stage_config:
            continue
        environment = stage_environment(config, stage)
        settings = Settings.from_env(environment)
        text = (CHALICE / stage_config["iam_policy_file"]).read_text()
        resources = [f":table/{settings.table_name}\"", f":task/{settings.cluster}/*\"",
                     f":cluster/{settings.cluster}\"", f":project/{settings.codebuild_project}\"",
                     f"log-group:/aws/lambda/binderless-{stage}"]
        if "BINDERLESS_ECR_REPOSITORY_URI" in environment:  # its account is known once configured
            resources.append(f":repository/{settings.ecr_repository_name}\"")
        for resource in resources:
            assert resource in text, f"policy of stage {stage} lacks {resource}"
        for role in (settings.execution_role_arn, settings.task_role_arn):
            assert not role or f'"{role}"' in text
    assert family_name("x").startswith(TASK_FAMILY_PREFIX)


# ---------------------------------------------------------------- the flow, recorded and checked

def _arn(service: str, kind: str, name: str, account: str) -> str:
    """The ARN of a resource the API names by ARN or by name."""
    return name if name.startswith("arn:") else f"arn:aws:{service}:{REGION}:{account}:{kind}{name}"


def iam_requests(service: str, operation: str, params: dict[str, Any], account: str) -> list[tuple[str, str, dict]]:
    """What IAM authorizes for one API call: (action, resource ARN, condition keys)."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return [(f"dynamodb:{TRANSACT_ACTIONS[kind]}", _arn("dynamodb", "table/", item["TableName"], account), {})
                    for entry in params["TransactItems"] for kind, item in entry.items()]
        if operation == "BatchGetItem":
            return [("dynamodb:BatchGetItem", _arn("dynamodb", "table/", name, account), {})
                    for name in params["RequestItems"]]
        table = _arn("dynamodb", "table/", params["TableName"], account)
        index = f"/index/{params['IndexName']}" if "IndexName" in params else ""
        return [(f"dynamodb:{operation}", table + index, {})]
    if service == "ecs":
        cluster = params.get("cluster", "default")
        cluster_arn = _arn("ecs", "cluster/", cluster, account)
        if operation == "RunTask":
            definition = _arn("ecs", "task-definition/", params["taskDefinition"], account)
            # "If tags are specified in the resource-creating action, AWS performs additional authorization"
            # (ecs:TagResource on the new task, with ecs:CreateAction): the task's id is not known yet.
            tagging = [("ecs:TagResource", _arn("ecs", f"task/{cluster}/", "new-task-id", account),
                        {"ecs:cluster": cluster_arn, "ecs:CreateAction": "RunTask"})] if params.get("tags") else []
            return [("ecs:RunTask", definition, {"ecs:cluster": cluster_arn}), *tagging]
        if operation in ("StopTask", "DescribeTasks"):
            tasks = params["tasks"] if operation == "DescribeTasks" else [params["task"]]
            return [(f"ecs:{operation}", _arn("ecs", f"task/{cluster}/", t, account), {"ecs:cluster": cluster_arn})
                    for t in tasks]
        if operation == "ListTasks":  # resource: container instances only; the cluster is a condition key
            return [("ecs:ListTasks", "*", {"ecs:cluster": cluster_arn})]
        if operation == "RegisterTaskDefinition":
            roles = [params[k] for k in ("executionRoleArn", "taskRoleArn") if params.get(k)]
            return [("ecs:RegisterTaskDefinition", "*", {})] + [
                ("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}) for role in roles]
    if service == "codebuild":
        projects = [params["projectName"]] if operation == "StartBuild" else [i.split(":")[0] for i in params["ids"]]
        return [(f"codebuild:{operation}", _arn("codebuild", "project/", p, account), {}) for p in projects]
    if service == "ecr" and operation == "DescribeImages":
        return [("ecr:DescribeImages", _arn("ecr", "repository/", params["repositoryName"], account), {})]
    if service == "ec2" and operation == "DescribeNetworkInterfaces":
        return [("ec2:DescribeNetworkInterfaces", "*", {})]
    if service == "secretsmanager" and operation == "GetSecretValue":  # the proxy's token, by its ARN
        return [("secretsmanager:GetSecretValue", params["SecretId"], {})]
    if service == "logs" and operation == "GetLogEvents":  # authorized on the log stream
        stream = f"{params['logGroupName']}:log-stream:{params['logStreamName']}"
        return [("logs:GetLogEvents", _arn("logs", "log-group:", stream, account), {})]
    raise AssertionError(f"teach iam_requests() which resource {service}:{operation} is authorized on")


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    if key not in context:
        return False
    if operator in ("ArnEquals", "ArnLike", "StringLike"):
        return any(fnmatch.fnmatchcase(context[key], pattern) for pattern in _list(expected))
    if operator == "StringEquals":
        return context[key] in _list(expected)
    raise AssertionError(f"teach _condition_holds() the {operator} operator")


def is_allowed(policy: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's evaluation for an identity policy of Allow statements: action, resource, conditions."""
    for statement in policy["Statement"]:
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in _list(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in _list(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        if all(_condition_holds(op, key, value, context) for op, pairs in conditions.items()
               for key, value in pairs.items()):
            return True
    return False


class Recorder:
    """Every request the app's boto3 clients send: (service, operation, params)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def client(self, service: str) -> Any:
        client = boto3.client(service, region_name=REGION)
        client.meta.events.register("provide-client-params", self._record)
        return client

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.service_model.signing_name, model.name, json.loads(json.dumps(params, default=str))))


def _give_public_ips(world: World, environment: str) -> None:
    """What Fargate does for assignPublicIp: an address on each starting task's network interface."""
    ec2 = boto3.client("ec2", region_name=REGION)
    launches = {server.launch for server in world.services.store.servers.live(environment)}
    for arn in (arn for launch in sorted(launches) for arn in tasks_of_launch(world, launch)):
        task = world.ecs.describe_tasks(cluster=world.settings.cluster, tasks=[arn])["tasks"][0]
        eni = next(d["value"] for a in task["attachments"] for d in a["details"] if d["name"] == "networkInterfaceId")
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.associate_address(AllocationId=allocation, NetworkInterfaceId=eni)


@pytest.fixture
def recorded_flow() -> Iterator[tuple[Recorder, dict[str, Any], str]]:
    from chalice.test import Client

    from app import app

    with mock_aws():
        state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 1_000_000})
        try:
            stack = deploy_stack()
            config = json.loads((CHALICE / "config.json").read_text())
            updated, policy = configure_stage(config, "prod", stack.outputs)
            settings = Settings.from_env(stage_environment(updated, "prod")
                                         | {"AWS_REGION": REGION, "BINDERLESS_ADMIN_TOKEN": ADMIN})
            recorder, clock, git = Recorder(), Clock(), GitRefs()
            store = Store(settings.table_name, REGION, recorder.client("dynamodb"))
            ecs = recorder.client("ecs")
            services = build_services(
                settings, store=store, resolver=git, clock=clock,
                builder=AwsBuilder(settings, codebuild=CodeBuildWithLogs(recorder.client("codebuild"), BUILD_LOGS),
                                   ecr=recorder.client("ecr"), logs_client=recorder.client("logs")),
                stager=AwsStager(settings, ecs=ecs), spawner=AwsSpawner(settings, ecs=ecs, ec2=recorder.client("ec2")))
            set_services(services)
            # The test's own look-ups go through clients that are not recorded.
            world = World(services, settings, clock, git, *(boto3.client(s, region_name=REGION)
                                                             for s in ("ecs", "codebuild", "ecr", "dynamodb")))
            with Client(app) as client:
                _run_the_whole_flow(client, world)
            yield recorder, policy, stack.outputs["TableArn"].split(":")[4]
        finally:
            state_manager.unset_transition("ecs::task")
            set_services(None)


def _lose_a_launch(world: World, environment: str) -> None:
    """A server whose task's events never came: the schedule finds the task by its launch."""
    staging = world.services.stagings.launchable(environment)
    lost = world.services.servers._new(staging, world.clock(), True, "lostlaunch0001", "k" * 48, solo=True)
    world.services.store.servers.create([lost], due_at=world.clock())
    world.services.servers.spawner.start(staging.handle, [lost.id], lost.launch, "k" * 48)


def _run_the_whole_flow(client: Any, world: World) -> None:
    services, clock = world.services, world.clock
    plain, _ = services.auth.create_token("ops", ["admin"])
    world.git.push(REPO + "-polled")
    polled = body(client.http.post("/builds/repos", body=json.dumps({"repository": REPO + "-polled"}),
                                   headers=auth(plain)))["image-name"]
    clock.advance(world.settings.build_poll_after + 1)
    tick(client)  # the build's event is overdue: BatchGetBuilds
    assert polled
    build_id = services.store.builds.get(polled).handle["id"]  # type: ignore[union-attr]
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_stream(logGroupName=BUILD_LOGS, logStreamName=build_id.partition(":")[2])
    logs.put_log_events(logGroupName=BUILD_LOGS, logStreamName=build_id.partition(":")[2],
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "Picked Git content provider."}])
    read = client.http.get(f"/builds/repos/{polled}/logs")  # BatchGetBuilds, then GetLogEvents on its stream
    assert body(read)["lines"] == ["Picked Git content provider."], read.body

    environment = staged(client, world)  # build, its event, then the task definition
    reply = client.http.post(f"/pools/{environment}", body=json.dumps({"size": 2}), headers=auth())
    assert reply.status_code in (200, 201), reply.body
    _give_public_ips(world, environment)
    run_all_starting(client, world, environment)  # task events: the public address of each server

    launched = client.http.post(f"/deployments/{environment}", body="", headers=auth())
    assert launched.status_code == 201, launched.body
    server = body(launched)
    assert server["location"].startswith("http://") and "?token=" in server["location"]
    stopped = client.http.delete(f"/deployments/{environment}/{server['id']}", headers=auth())
    assert stopped.status_code == 202
    _lose_a_launch(world, environment)
    clock.advance(world.settings.check_interval + world.settings.starting_timeout + 1)
    tick(client)  # due servers: DescribeTasks; the lost launch: ListTasks, DescribeTasks, StopTask
    assert [t.name for t in services.auth.tokens.all()] == ["ops"]
    services.auth.revoke(plain)
    build_event(client, world, polled, "FAILED")


def test_every_request_of_the_flow_is_allowed_by_the_configured_policy(
        recorded_flow: tuple[Recorder, dict[str, Any], str]) -> None:
    recorder, policy, account = recorded_flow
    denied = []
    exercised = set()
    for service, operation, params in recorder.calls:
        for action, resource, context in iam_requests(service, operation, params, account):
            exercised.add(action)
            if not is_allowed(policy, action, resource, context):
                denied.append((action, resource, context))

    assert not denied, f"the configured policy denies {denied}"
    assert exercised - {"iam:PassRole", "ecs:TagResource"} <= required_actions(), "the scan missed calls the flow made"
    assert "ecs:TagResource" in exercised  # the servers' tags, allowed by TagServersAtLaunch
    assert required_actions() - PROXY_ACTIONS <= exercised, (  # PROXY_ACTIONS: tests/test_aws_proxy.py
        f"the flow never makes {sorted(required_actions() - PROXY_ACTIONS - exercised)}: extend _run_the_whole_flow")


def test_the_simulator_denies_what_the_policy_does_not_name(
        recorded_flow: tuple[Recorder, dict[str, Any], str]) -> None:
    _, policy, account = recorded_flow
    other = f"arn:aws:dynamodb:{REGION}:{account}:table/someone-else"
    assert not is_allowed(policy, "dynamodb:GetItem", other, {})
    assert not is_allowed(policy, "ecs:RunTask", f"arn:aws:ecs:{REGION}:{account}:task-definition/binderless-x:1",
                          {"ecs:cluster": f"arn:aws:ecs:{REGION}:{account}:cluster/other"})
    assert not is_allowed(policy, "ecs:StopTask", f"arn:aws:ecs:{REGION}:{account}:task/other/abc", {})
    assert not is_allowed(policy, "iam:PassRole", f"arn:aws:iam::{account}:role/admin",
                          {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    assert not is_allowed(policy, "dynamodb:Scan", f"arn:aws:dynamodb:{REGION}:{account}:table/binderless", {})
