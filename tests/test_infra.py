"""infra/binderless.yml deployed into moto's CloudFormation, and the app run against what it created.

moto's CloudFormation creates every resource of the template except AWS::CodeBuild::Project and
AWS::SecretsManager::Secret (no moto support): ``deploy_stack`` leaves those out of the stack, creates
the same project through moto's CodeBuild API from the template's own properties (and the proxy's secret,
when its condition holds, through moto's Secrets Manager API, its references replaced by its ARN), and
computes ``Fn::Cidr`` (which
moto does not evaluate) from the parameters, and sets the created VPC's EnableDnsHostnames, which
moto's CloudFormation drops. Everything else, the DynamoDB table first, is
deployed exactly as written. moto ignores a table's TTL and point-in-time recovery settings in
CloudFormation, so those are checked on the template itself.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from chalicelib.config import Settings
from chalicelib.models import Build, BuildStatus, Server, ServerState, Staging, Token
from chalicelib.store import Store
from chalicelib.store.dynamo import INDEXES, Dynamo
from scripts.cfn import BUILDSPEC, ROOT, SINGLE_STACK, TEMPLATE, buildspec_in, load_template
from scripts.configure import configure_stage, stage_environment
from scripts.policy import OUTPUT_SETTINGS, POLICY_OUTPUTS
from scripts.single_stack import EVENT_FILTERS, FUNCTIONS, ROLES
from scripts.single_stack import main as single_stack_main
from scripts.stream_route import FUNCTION as STREAM_FUNCTION

REGION = "us-east-1"
STACK = "binderless"


# ---------------------------------------------------------------- deploying the template into moto

def _mentions(value: Any, names: set[str]) -> bool:
    """Whether a template fragment refers to one of ``names`` (Ref, GetAtt, or ${...} in a Sub)."""
    text = json.dumps(value)
    return any(f'"Ref": "{n}"' in text or f'"Fn::GetAtt": ["{n}"' in text or f"${{{n}" in text for n in names)


def _cidrs(value: Any, parameters: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if "Fn::Cidr" in value:
            block, count, bits = value["Fn::Cidr"]
            network = ipaddress.ip_network(parameters[block["Ref"]] if isinstance(block, dict) else block)
            return [str(n) for n in list(network.subnets(new_prefix=network.max_prefixlen - int(bits)))[:int(count)]]
        return {key: _cidrs(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [_cidrs(item, parameters) for item in value]
    return value


def moto_template(template: dict[str, Any], parameters: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """What moto's CloudFormation can create of ``template``, and the resources it had to leave out."""
    from moto.cloudformation.parsing import resource_class_from_type

    unsupported = sorted(name for name, resource in template["Resources"].items()
                         if resource_class_from_type(resource["Type"]) is None)
    resources = {name: r for name, r in template["Resources"].items() if name not in unsupported}
    outputs = {name: o for name, o in template["Outputs"].items() if not _mentions(o, set(unsupported))}
    defaults = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    variant = {**template, "Resources": resources, "Outputs": outputs}
    return _cidrs(variant, defaults | parameters), unsupported


def condition_holds(template: dict[str, Any], name: str, parameters: dict[str, str]) -> bool:
    """The template's condition ``name`` for these parameter values (the functions its conditions use)."""
    values = {n: str(p.get("Default", "")) for n, p in template["Parameters"].items()} | parameters

    def value(node: Any) -> Any:
        if isinstance(node, dict):
            (function, argument), = node.items()
            if function == "Ref":
                return values[argument]
            if function == "Fn::Join":
                return argument[0].join(values[argument[1]["Ref"]].split(","))
            if function == "Fn::Equals":
                return value(argument[0]) == value(argument[1])
            if function == "Fn::Not":
                return not value(argument[0])
            if function == "Fn::And":
                return all(value(a) for a in argument)
            if function == "Fn::Or":
                return any(value(a) for a in argument)
            if function == "Condition":
                return value(template["Conditions"][argument])
            raise AssertionError(f"teach condition_holds() {function}")
        return node

    return bool(value(template["Conditions"][name]))


def _replace_refs(value: Any, name: str, replacement: str) -> Any:
    if value == {"Ref": name}:
        return replacement
    if isinstance(value, dict):
        return {key: _replace_refs(item, name, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_refs(item, name, replacement) for item in value]
    return value


def _create_secrets(template: dict[str, Any], variant: dict[str, Any], parameters: dict[str, str],
                    name: str) -> dict[str, Any]:
    """The template's secrets whose condition holds, through moto's Secrets Manager API, as CloudFormation
    makes them (a generated value); ``variant`` with their ARN in place of each ``Ref``."""
    secretsmanager = boto3.client("secretsmanager", region_name=REGION)
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::SecretsManager::Secret":
            continue
        if "Condition" in resource and not condition_holds(template, resource["Condition"], parameters):
            continue
        properties, generate = resource["Properties"], resource["Properties"]["GenerateSecretString"]
        value = secretsmanager.get_random_password(
            PasswordLength=generate["PasswordLength"], ExcludePunctuation=generate["ExcludePunctuation"])
        arn = secretsmanager.create_secret(Name=properties["Name"]["Fn::Sub"].replace("${Name}", name),
                                           SecretString=value["RandomPassword"])["ARN"]
        variant["Outputs"] = {key: output for key, output in template["Outputs"].items()
                              if key in variant["Outputs"] or _mentions(output, {logical})}
        variant = _replace_refs(variant, logical, arn)
    return variant


def _create_build_project(template: dict[str, Any], stack_resources: dict[str, str], name: str) -> dict[str, str]:
    """The CodeBuild project from the template's properties, through moto's CodeBuild API."""
    properties = template["Resources"]["BuildProject"]["Properties"]
    role = boto3.client("iam", region_name=REGION).get_role(RoleName=stack_resources["BuildRole"])["Role"]["Arn"]
    environment = properties["Environment"]
    project = boto3.client("codebuild", region_name=REGION).create_project(
        name=properties["Name"]["Fn::Sub"].replace("${Name}", name),
        # moto insists on a location even for NO_SOURCE; CodeBuild itself takes none.
        source={"type": properties["Source"]["Type"], "buildspec": properties["Source"]["BuildSpec"],
                "location": "none"},
        artifacts={"type": properties["Artifacts"]["Type"]}, serviceRole=role,
        environment={"type": environment["Type"], "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_MEDIUM", "privilegedMode": environment["PrivilegedMode"]},
    )["project"]
    return {"BuildProjectName": project["name"], "BuildProjectArn": project["arn"]}


@dataclass
class DeployedStack:
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    left_out: list[str]


def deploy_stack(parameters: dict[str, str] | None = None, name: str = STACK) -> DeployedStack:
    """Create the stack in moto (inside ``mock_aws``) and return its outputs."""
    template = load_template()
    variant, left_out = moto_template(template, parameters or {})
    variant = _create_secrets(template, variant, parameters or {}, name)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(variant), Capabilities=["CAPABILITY_NAMED_IAM"],
                                Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                            for k, v in {"Name": name, **(parameters or {})}.items()])
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    outputs |= _create_build_project(template, resources, name)
    if "Vpc" in resources:  # moto's CloudFormation drops EnableDnsHostnames (and its ECS needs it)
        assert template["Resources"]["Vpc"]["Properties"]["EnableDnsHostnames"] is True
        boto3.client("ec2", region_name=REGION).modify_vpc_attribute(VpcId=resources["Vpc"],
                                                                      EnableDnsHostnames={"Value": True})
    return DeployedStack(outputs, resources, left_out)


@pytest.fixture
def stack() -> Any:
    with mock_aws():
        yield deploy_stack()


# ---------------------------------------------------------------- the table: template == store

def _table_shape(description: dict[str, Any]) -> dict[str, Any]:
    def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(k["AttributeName"], k["KeyType"]) for k in schema]

    return {
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in description["AttributeDefinitions"]),
        "keys": keys(description["KeySchema"]),
        "indexes": sorted((i["IndexName"], tuple(keys(i["KeySchema"])), i["Projection"]["ProjectionType"])
                          for i in description.get("GlobalSecondaryIndexes", [])),
        "billing": (description.get("BillingModeSummary") or {}).get("BillingMode", description.get("BillingMode")),
    }


def test_the_template_table_is_the_table_the_store_creates(stack: DeployedStack) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    Dynamo("store-made", REGION, dynamodb).create_table()

    from_template = dynamodb.describe_table(TableName=stack.outputs["TableName"])["Table"]
    from_store = dynamodb.describe_table(TableName="store-made")["Table"]

    assert _table_shape(from_template) == _table_shape(from_store)
    assert {i[0] for i in _table_shape(from_template)["indexes"]} == set(INDEXES)
    assert _table_shape(load_template()["Resources"]["Table"]["Properties"]) == _table_shape(from_store)
    ttl = dynamodb.describe_time_to_live(TableName="store-made")["TimeToLiveDescription"]
    assert load_template()["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": ttl["AttributeName"], "Enabled": True}


def test_a_table_of_an_older_version_gains_the_new_index_and_keeps_its_items(stack: DeployedStack) -> None:
    """Local mode on a DynamoDB Local table made before the by-route index (``create_table(if_missing=True)``)."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamo = Dynamo("older", REGION, dynamodb)
    dynamo.create_table()
    dynamodb.update_table(TableName="older", GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-route"}}])
    dynamo.put({"pk": "SERVER#e", "sk": "SERVER#s", "route": "/user/r/"})
    updates: list[Any] = []
    dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateTable",
                                  lambda params, **_: updates.append(params["GlobalSecondaryIndexUpdates"]))

    dynamo.create_table(if_missing=True)
    dynamo.create_table(if_missing=True)  # and again: nothing left to add

    indexes = dynamodb.describe_table(TableName="older")["Table"]["GlobalSecondaryIndexes"]
    assert {index["IndexName"] for index in indexes} == set(INDEXES)
    assert all(index["IndexStatus"] == "ACTIVE" for index in indexes)
    # "You can create or delete only one global secondary index per UpdateTable operation."
    assert [[update["Create"]["IndexName"] for update in call] for call in updates] == [["by-route"]]
    assert list(dynamo.query("route = :route", {":route": {"S": "/user/r/"}}, index="by-route")) == [
        {"pk": "SERVER#e", "sk": "SERVER#s", "route": "/user/r/"}]


def test_only_the_codebuild_project_is_left_to_the_api_and_the_table_is_deployed_as_written(
        stack: DeployedStack) -> None:
    template = load_template()
    variant, left_out = moto_template(template, {})

    assert stack.left_out == left_out == ["BuildProject", "ProxyAuthToken"]  # the secret: only with the proxy
    assert variant["Resources"]["Table"] == template["Resources"]["Table"]
    assert set(stack.outputs) == {name for name, output in template["Outputs"].items() if "Condition" not in output}
    assert set(OUTPUT_SETTINGS) | set(POLICY_OUTPUTS) <= set(stack.outputs)
    assert not [name for name, resource in stack.resources.items() if name.startswith("Proxy")]  # no proxy asked


def test_the_store_works_on_the_table_the_stack_created(stack: DeployedStack) -> None:
    store = Store(stack.outputs["TableName"], REGION, boto3.client("dynamodb", region_name=REGION))
    repository = "https://github.com/binder-examples/requirements"

    assert store.builds.create(Build(image_name="img", status=BuildStatus.pending, repository=repository,
                                     created_at=1), poll_at=100)
    assert [b.image_name for b in store.builds.due(now=200)] == ["img"]
    store.builds.transition(store.builds.get("img"), BuildStatus.completed, image="repo:img")  # type: ignore[arg-type]
    assert store.builds.latest_for(repository).status is BuildStatus.completed  # type: ignore[union-attr]

    staging = Staging(environment_name="env", image_name="img", image="repo:img", cpu=1024, memory=2048)
    assert store.environments.create_staging(staging)
    store.environments.set_pool_size("env", 2)
    servers = [Server(environment_name="env", id=f"s{i}", state=ServerState.starting, claimed=False, launch="l1",
                      handle={"id": f"arn:aws:ecs:{REGION}:123456789012:task/binderless/t{i}"}, created_at=i)
               for i in range(2)]
    store.servers.create(servers, due_at=50)
    for server in servers:
        store.servers.transition(server, ServerState.available, url="http://10.0.0.1:8888/")
    assert store.environments.get_pool("env", consistent=True).available == 2  # type: ignore[union-attr]

    claimed = store.servers.claim("env", now=10, stop_at=1000).server

    assert claimed is not None and claimed.state is ServerState.running
    pool = store.environments.get_pool("env", consistent=True)
    assert (pool.available, pool.running, pool.size) == (1, 1, 2)  # type: ignore[union-attr]
    assert {s.id for s in store.servers.of_launch("l1")} == {"s0", "s1"}
    assert [p.environment_name for p in store.environments.pools()] == ["env"]
    store.tokens.create(Token(digest="d" * 64, name="admin", scopes=["admin"], created_at=1))
    assert [t.name for t in store.tokens.all()] == ["admin"] and store.tokens.delete("d" * 64)


# ---------------------------------------------------------------- outputs -> the app's configuration

def test_the_outputs_configure_a_stage_the_app_reads(stack: DeployedStack) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())

    updated, policy = configure_stage(config, "prod", stack.outputs)
    settings = Settings.from_env(stage_environment(updated, "prod") | {"AWS_REGION": REGION})

    assert settings.table_name == stack.outputs["TableName"]
    assert settings.cluster == "binderless" and settings.codebuild_project == "binderless-repo2docker"
    assert settings.subnets == tuple(stack.outputs["Subnets"].split(",")) and len(settings.subnets) == 2
    assert settings.security_groups == (stack.outputs["SecurityGroups"],)
    assert settings.ecr_repository_uri == stack.outputs["RepositoryUri"]
    assert settings.ecr_repository_name == "binderless"
    assert settings.execution_role_arn.endswith(":role/binderless-server-execution")
    assert settings.task_role_arn.endswith(":role/binderless-server")
    assert settings.log_group == "/ecs/binderless-servers"
    assert (settings.assign_public_ip, settings.address, settings.server_port) == (True, "public", 8888)
    assert updated["stages"]["prod"]["autogen_policy"] is False
    assert updated["stages"]["prod"]["iam_policy_file"] == "policy-prod.json"
    assert policy["Statement"][0]["Resource"] == stack.outputs["TableArn"]
    ec2 = boto3.client("ec2", region_name=REGION)
    assert {s["VpcId"] for s in ec2.describe_subnets(SubnetIds=list(settings.subnets))["Subnets"]} == {
        ec2.describe_security_groups(GroupIds=list(settings.security_groups))["SecurityGroups"][0]["VpcId"]}


def test_every_setting_an_output_feeds_is_a_setting_of_the_app() -> None:
    fields = {f"BINDERLESS_{name.upper()}" for name in Settings.model_fields}
    assert set(OUTPUT_SETTINGS.values()) <= fields
    for output, variable in OUTPUT_SETTINGS.items():
        assert load_template()["Outputs"][output]["Description"] == variable


def test_an_existing_vpc_is_used_as_given() -> None:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24")["Subnet"]["SubnetId"] for i in range(2)]

        deployed = deploy_stack({"VpcId": vpc, "SubnetIds": ",".join(subnets)})

        assert deployed.outputs["Subnets"] == ",".join(subnets)
        assert "Vpc" not in deployed.resources
        group = ec2.describe_security_groups(GroupIds=[deployed.outputs["SecurityGroups"]])["SecurityGroups"][0]
        assert group["VpcId"] == vpc


# ---------------------------------------------------------------- what the issue asks of the template

def test_the_template_has_what_an_operator_needs() -> None:
    resources = load_template()["Resources"]
    table = resources["Table"]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    repository = resources["Repository"]["Properties"]
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert "expire" in json.dumps(repository["LifecyclePolicy"])
    project = resources["BuildProject"]["Properties"]
    assert project["Environment"]["PrivilegedMode"] is True
    assert project["LogsConfig"]["CloudWatchLogs"]["GroupName"] == {"Ref": "BuildLogGroup"}
    assert resources["BuildLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert resources["Cluster"]["Properties"]["CapacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert "Policies" not in resources["ServerTaskRole"]["Properties"]  # the notebook's code gets nothing


def test_the_codebuild_project_runs_the_buildspec_of_the_repository() -> None:
    inline = buildspec_in(TEMPLATE.read_text())
    assert inline == BUILDSPEC.read_text()
    assert load_template()["Resources"]["BuildProject"]["Properties"]["Source"]["BuildSpec"] == inline
    assert yaml.safe_load(inline)["version"] == 0.2


def test_the_build_role_may_log_in_to_ecr_public_where_builds_pull_their_base_image() -> None:
    import botocore.session

    # AWS's rule, from the ECR Public API reference (botocore ships it): "This API requires the
    # ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken permissions."
    documentation = botocore.session.get_session().get_service_model("ecr-public").operation_model(
        "GetAuthorizationToken").documentation
    required = re.findall(r"<code>([a-z-]+:\w+)</code>", documentation)
    statements = load_template()["Resources"]["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    granted = {action for s in statements if s["Effect"] == "Allow" and s["Resource"] == "*"
               for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}

    assert sorted(required) == ["ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken"]
    assert set(required) <= granted
    pre_build = yaml.safe_load(BUILDSPEC.read_text())["phases"]["pre_build"]["commands"]
    assert any(c.startswith("aws ecr-public get-login-password") and "public.ecr.aws" in c for c in pre_build)
    assert "public.ecr.aws/docker/library/" in yaml.safe_load(BUILDSPEC.read_text())["env"]["variables"]["BASE_IMAGE"]


def test_every_checkov_skip_says_why() -> None:
    for path in (TEMPLATE, SINGLE_STACK):
        for name, resource in load_template(path)["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert skip["id"].startswith("CKV") and len(skip.get("comment", "")) > 40, (path.name, name, skip)


# ---------------------------------------------------------------- the single-stack template

def test_the_single_stack_template_is_current() -> None:
    assert single_stack_main(["--check"]) == 0, "run `python -m scripts.single_stack` (make infra-sync)"


def _package(tmp: Path, *merge: str) -> dict[str, Any]:
    """`chalice package` (the console script beside this interpreter) into ``tmp``."""
    command = [str(Path(sys.executable).parent / "chalice"), "package", "--stage", "prod", *merge, str(tmp)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "AWS_DEFAULT_REGION": REGION})
    return dict(json.loads((tmp / "sam.json").read_text()))


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _package(tmp_path_factory.mktemp("single"), "--merge-template", str(SINGLE_STACK))


def test_chalice_package_merges_the_app_and_the_resources_into_one_template(packaged: dict[str, Any]) -> None:
    resources = packaged["Resources"]
    functions = sorted(n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function")

    assert functions == sorted((*FUNCTIONS, STREAM_FUNCTION))  # and /build/'s (tests/test_stream_route.py)
    assert set(load_template()["Resources"]) < set(resources)
    outputs = load_template()["Outputs"]
    for function in FUNCTIONS:
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        for output, variable in OUTPUT_SETTINGS.items():
            assert variables[variable] == outputs[output]["Value"], (function, variable)
        assert resources[function]["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": "AppLogGroup"}
    for function, (event, detail) in EVENT_FILTERS.items():
        pattern = resources[function]["Properties"]["Events"][event]["Properties"]["Pattern"]
        assert pattern["detail"] == detail and pattern["source"]  # chalice's source and detail-type stay
    roles = sorted(n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role" and n not in load_template()[
        "Resources"])
    assert roles == sorted(ROLES.values())
    for function, role in ROLES.items():
        assert resources[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        policies = resources[role]["Properties"]["Policies"]
        assert len(policies) == 1 and "Fn::GetAtt" in json.dumps(policies)  # references, not the file's names
        assert ":*:*:" not in json.dumps(policies)


def test_the_packaged_api_answers_unknown_paths_and_its_own_errors_as_json_with_cors(
        packaged: dict[str, Any], tmp_path: Path) -> None:
    from scripts.gateway_responses import EXTENSION, GATEWAY_RESPONSES

    body = packaged["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    responses = body[EXTENSION]

    assert body["paths"] and body["swagger"]  # merged into Chalice's definition, not replacing it
    assert responses == {kind: dict(response) for kind, response in GATEWAY_RESPONSES.items()}
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for kind, response in responses.items():
        template = response["responseTemplates"]["application/json"]
        assert "$" not in template and set(json.loads(template)) == {"error", "message"}, kind
        assert response["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"] == "'*'", kind
    assert "$context.error.message" not in json.dumps(packaged) and "$input" not in json.dumps(packaged)
    # Separate GatewayResponse resources would be reset by the next deploy of the definition body.
    assert not [r for r in packaged["Resources"].values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"]
    template = tmp_path / "sam.json"
    template.write_text(json.dumps(packaged))
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(template)], capture_output=True,
                          text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# API Gateway quotas: "Integration timeout: 50 milliseconds - 29 seconds for all integration types, including
# Lambda, Lambda proxy, HTTP, HTTP proxy, and AWS integrations."
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html
GATEWAY_TIMEOUT = 29


def test_the_api_function_stops_before_api_gateway_gives_up_on_it(packaged: dict[str, Any]) -> None:
    from chalicelib.services.pools import RUN_SECONDS

    timeouts = {name: packaged["Resources"][name]["Properties"]["Timeout"] for name in FUNCTIONS}

    # A slow request ends with the function's own answer (or its timeout), not a 504 while it runs on.
    assert timeouts["APIHandler"] < GATEWAY_TIMEOUT
    # The keeper may outlast the schedule's minute: its lease keeps the next run out meanwhile, and a
    # caller without a Lambda context assumes the keeper's timeout for the lease.
    assert timeouts["Keeper"] == RUN_SECONDS > 60
    assert timeouts["BuildEvents"] == timeouts["TaskEvents"] == 30  # EventBridge's targets: no gateway


def test_configure_writes_the_stage_and_its_policy(stack: DeployedStack, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.configure import main as configure

    (tmp_path / "config.json").write_text((ROOT / ".chalice" / "config.json").read_text())
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps([{"OutputKey": k, "OutputValue": v} for k, v in stack.outputs.items()]))

    assert configure(["--stage", "prod", "--outputs", str(outputs)], chalice_dir=tmp_path) == 0
    assert configure(["--stage", "prod", "--print-env"], chalice_dir=tmp_path) == 0

    config = json.loads((tmp_path / "config.json").read_text())
    policy = json.loads((tmp_path / config["stages"]["prod"]["iam_policy_file"]).read_text())
    assert config["stages"]["prod"]["environment_variables"]["BINDERLESS_SUBNETS"] == stack.outputs["Subnets"]
    assert config["stages"]["local"] == json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["local"]
    assert stack.outputs["TableArn"] in json.dumps(policy) and ":*:*:" not in json.dumps(policy)
    exports = capsys.readouterr().out
    assert f"export BINDERLESS_TABLE_NAME={stack.outputs['TableName']}" in exports
    (tmp_path / "partial.json").write_text(json.dumps({"TableName": "t"}))
    assert configure(["--stage", "prod", "--outputs", str(tmp_path / "partial.json")], chalice_dir=tmp_path) == 1
