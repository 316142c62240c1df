"""The stack with the proxy (ProxyDomainName and ProxyCertificateArn given), deployed into moto.

What an operator and a reader would notice: HTTPS only, on the operator's certificate; the proxy's REST API
reachable through the load balancer for the API's functions (its token from Secrets Manager, never in a task
definition's plain environment); servers reachable from the proxy only; the functions configured for the
proxy and allowed to read that one secret. moto does not apply inline SecurityGroupEgress rules, so egress is
checked on the template; it does not run the proxy either (tests/test_contract_router.py runs a real one).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.backends.routers import ChpRouter, SecretToken, router_for
from chalicelib.config import Settings
from chalicelib.errors import Unavailable
from chalicelib.logs import WIRE_LEVEL, WIRE_LOGGERS
from scripts.cfn import ROOT, SINGLE_STACK, load_template
from scripts.configure import configure_stage, stage_environment
from scripts.policy import PROXY_OUTPUT_SETTINGS
from scripts.single_stack import FUNCTIONS
from tests.test_iam_policy import Recorder, iam_requests, is_allowed
from tests.test_infra import REGION, DeployedStack, deploy_stack

DOMAIN = "binder.example.org"
API = "https://abc123defg.execute-api.us-east-1.amazonaws.com/api"
# Elastic Load Balancing (Application Load Balancers, "Connection idle timeout"): "The range for the idle
# timeout is from 1 to 4,000 seconds. The default is 60 seconds."
ALB_MAX_IDLE_TIMEOUT = 4000
# Amazon ECS ("Pass Secrets Manager secrets through Amazon ECS environment variables"): "To inject a secret
# into a container as an environment variable, specify the secrets property in the container definition";
# a plain "environment" value would sit in the task definition for anyone who may describe it.
TOKEN_VARIABLE = "CONFIGPROXY_AUTH_TOKEN"  # noqa: S105 (configurable-http-proxy reads its token there)


@pytest.fixture
def proxy_stack() -> Iterator[DeployedStack]:
    with mock_aws():
        certificate = boto3.client("acm", region_name=REGION).request_certificate(
            DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
        yield deploy_stack({"ProxyDomainName": DOMAIN, "ProxyCertificateArn": certificate,
                            "ProxyDefaultTarget": API})


def _group(group_id: str) -> dict[str, Any]:
    return dict(boto3.client("ec2", region_name=REGION).describe_security_groups(GroupIds=[group_id])[
        "SecurityGroups"][0])


def _ingress(group_id: str) -> list[tuple[int, int, tuple[str, ...], tuple[str, ...]]]:
    """(from port, to port, source groups, source CIDRs) of each ingress rule."""
    return sorted((rule["FromPort"], rule["ToPort"], tuple(g["GroupId"] for g in rule.get("UserIdGroupPairs", [])),
                   tuple(r["CidrIp"] for r in rule.get("IpRanges", [])))
                  for rule in _group(group_id)["IpPermissions"])


def test_readers_reach_the_proxy_over_https_only_on_the_operators_certificate(proxy_stack: DeployedStack) -> None:
    elbv2 = boto3.client("elbv2", region_name=REGION)
    balancer = elbv2.describe_load_balancers(LoadBalancerArns=[proxy_stack.resources["ProxyLoadBalancer"]])[
        "LoadBalancers"][0]
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    # moto's CloudFormation drops LoadBalancerAttributes: the template's, with ELB's rule beside the check.
    attributes = {a["Key"]: a["Value"] for a in load_template()["Resources"]["ProxyLoadBalancer"]["Properties"][
        "LoadBalancerAttributes"]}

    assert balancer["Scheme"] == "internet-facing" and balancer["Type"] == "application"
    assert proxy_stack.outputs["ProxyLoadBalancerDnsName"] == balancer["DNSName"]  # where the CNAME points
    assert [(listener["Port"], listener["Protocol"]) for listener in listeners] == [(443, "HTTPS")]  # no port 80
    (listener,) = listeners
    certificate = load_template()["Resources"]["ProxyListener"]["Properties"]["SslPolicy"]
    assert [c["CertificateArn"] for c in listener["Certificates"]] == [
        boto3.client("acm", region_name=REGION).list_certificates()["CertificateSummaryList"][0]["CertificateArn"]]
    assert listener.get("SslPolicy", certificate) == certificate and "TLS13" in certificate
    # Kernels' websockets stay open through quiet hours, within what ELB allows.
    assert 3600 <= int(attributes["idle_timeout.timeout_seconds"]) <= ALB_MAX_IDLE_TIMEOUT
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_the_rest_api_is_the_only_path_to_port_8001_and_everything_else_goes_to_the_proxy(
        proxy_stack: DeployedStack) -> None:
    elbv2 = boto3.client("elbv2", region_name=REGION)
    listener = proxy_stack.resources["ProxyListener"]
    groups = {g["TargetGroupArn"]: g for g in elbv2.describe_target_groups(
        LoadBalancerArn=proxy_stack.resources["ProxyLoadBalancer"])["TargetGroups"]}
    rules = elbv2.describe_rules(ListenerArn=listener)["Rules"]

    (default,) = [r for r in rules if r["IsDefault"]]
    (api,) = [r for r in rules if not r["IsDefault"]]
    assert groups[default["Actions"][0]["TargetGroupArn"]]["Port"] == 8000
    assert groups[api["Actions"][0]["TargetGroupArn"]]["Port"] == 8001
    paths = [v for c in api["Conditions"] for v in c.get("PathPatternConfig", {}).get("Values", c.get("Values", []))]
    assert sorted(paths) == ["/api/routes", "/api/routes/*"]  # ChpRouter's GET/POST/DELETE /api/routes[/<prefix>]
    for group in groups.values():
        assert group["TargetType"] == "ip" and group["HealthCheckPath"] == "/_chp_healthz"
        assert group["HealthCheckPort"] in ("traffic-port", "8000")  # the token-free check is on 8000


def test_servers_are_reachable_from_the_proxy_only_and_the_proxy_from_its_load_balancer_only(
        proxy_stack: DeployedStack) -> None:
    servers, proxy = proxy_stack.outputs["SecurityGroups"], proxy_stack.resources["ProxySecurityGroup"]
    balancer = proxy_stack.resources["ProxyLoadBalancerSecurityGroup"]
    groups = {_group(g)["GroupName"]: g for g in (servers, proxy, balancer)}
    proxy, balancer = groups[[n for n in groups if "ProxySecurityGroup" in n][0]], groups[
        [n for n in groups if "LoadBalancer" in n][0]]

    assert _ingress(servers) == [(8888, 8888, (proxy,), ())]  # no CIDR: nobody else, not even the VPC
    assert _ingress(proxy) == [(8000, 8001, (balancer,), ())]
    assert _ingress(balancer) == [(443, 443, (), ("0.0.0.0/0",))]
    # moto ignores inline egress: the template's own rules, load balancer -> proxy -> servers.
    resources = load_template()["Resources"]
    (to_proxy,) = resources["ProxyLoadBalancerSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert (to_proxy["FromPort"], to_proxy["ToPort"]) == (8000, 8001)
    assert to_proxy["DestinationSecurityGroupId"] == {"Fn::GetAtt": ["ProxySecurityGroup", "GroupId"]}
    to_servers, https = resources["ProxySecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert to_servers["DestinationSecurityGroupId"] == {"Fn::GetAtt": ["ServerSecurityGroup", "GroupId"]}
    assert (https["FromPort"], https["ToPort"]) == (443, 443)


def test_the_proxy_runs_once_with_its_token_from_secrets_manager(proxy_stack: DeployedStack) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    cluster = proxy_stack.outputs["ClusterName"]
    (service,) = ecs.describe_services(cluster=cluster, services=[proxy_stack.resources["ProxyService"]])["services"]
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    secret = proxy_stack.outputs["ProxyAuthTokenSecretArn"]
    token = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=secret)["SecretString"]

    assert service["desiredCount"] == 1  # its routes live in its memory: one proxy
    # moto's CloudFormation drops the service's launch type: the template's.
    assert load_template()["Resources"]["ProxyService"]["Properties"]["LaunchType"] == "FARGATE"
    balanced = load_template()["Resources"]["ProxyService"]["Properties"]["LoadBalancers"]  # moto drops them too
    assert sorted((b["ContainerPort"], b["TargetGroupArn"]["Ref"]) for b in balanced) == [
        (8000, "ProxyTargets"), (8001, "ProxyApiTargets")]
    assert [m["containerPort"] for m in container["portMappings"]] == [8000, 8001]
    assert re.fullmatch(r"quay\.io/jupyterhub/configurable-http-proxy:5\.\d+\.\d+", container["image"])
    assert container["secrets"] == [{"name": TOKEN_VARIABLE, "valueFrom": secret}]
    assert token not in json.dumps(definition) and TOKEN_VARIABLE not in json.dumps(container.get("environment", []))
    assert re.fullmatch(r"[A-Za-z0-9]{64}", token)  # what "Authorization: token <t>" carries intact
    command = container["command"]
    for option in ("--ip=0.0.0.0", "--port=8000", "--api-ip=0.0.0.0", "--api-port=8001", f"--default-target={API}",
                   "--change-origin", "--no-x-forward", "--log-level=info"):
        assert option in command
    keep_alive = int(next(o for o in command if o.startswith("--keep-alive-timeout=")).split("=")[1])
    assert keep_alive > 1000 * int(load_template()["Resources"]["ProxyLoadBalancer"]["Properties"][
        "LoadBalancerAttributes"][0]["Value"])  # outlives the load balancer's idle connections
    assert not definition["family"].startswith("binderless-")  # not an environment's: the API may run those
    # moto's CloudFormation drops the task definition's executionRoleArn: the template's, and the role it names.
    assert load_template()["Resources"]["ProxyTaskDefinition"]["Properties"]["ExecutionRoleArn"] == {
        "Fn::GetAtt": ["ProxyExecutionRole", "Arn"]}
    role = boto3.client("iam", region_name=REGION).get_role_policy(
        RoleName=proxy_stack.resources["ProxyExecutionRole"].rsplit("/", 1)[-1], PolicyName="read-token-write-logs")
    document = role["PolicyDocument"]
    document = ast.literal_eval(document) if isinstance(document, str) else document  # moto keeps its repr
    (token_statement,) = [s for s in document["Statement"] if s["Sid"] == "Token"]
    assert (token_statement["Action"], token_statement["Resource"]) == ("secretsmanager:GetSecretValue", secret)


def test_the_functions_are_configured_for_the_proxy_and_read_its_token_from_that_secret_only(
        proxy_stack: DeployedStack, caplog: pytest.LogCaptureFixture) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    updated, policy = configure_stage(config, "prod", proxy_stack.outputs)
    settings = Settings.from_env(stage_environment(updated, "prod") | {"AWS_REGION": REGION})
    secret = proxy_stack.outputs["ProxyAuthTokenSecretArn"]
    recorder = Recorder()
    source = SecretToken(settings, settings.proxy_auth_token_secret)
    source._secretsmanager = recorder.client("secretsmanager")  # type: ignore[attr-defined]

    router = router_for(settings)
    caplog.set_level(logging.DEBUG)  # everything, but the AWS SDK's wire logs as the app keeps them (logs.py)
    for name in WIRE_LOGGERS:
        caplog.set_level(WIRE_LEVEL, logger=name)
    token = source()

    assert (settings.router, settings.address) == ("chp", "private")
    assert settings.proxy_api_url == settings.proxy_public_url == f"https://{DOMAIN}"
    assert settings.proxy_auth_token_secret == secret and not settings.proxy_auth_token
    assert isinstance(router, ChpRouter) and token not in repr(router)
    assert token == boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=secret)[
        "SecretString"]
    assert token not in caplog.text
    account = secret.split(":")[4]
    for service, operation, params in recorder.calls:
        for action, resource, context in iam_requests(service, operation, params, account):
            assert is_allowed(policy, action, resource, context), (action, resource)
    other = secret.replace("proxy-auth-token", "someone-else")
    assert not is_allowed(policy, "secretsmanager:GetSecretValue", other, {})


def test_an_unreadable_token_is_unavailable_and_names_no_secret(proxy_stack: DeployedStack,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    secret = proxy_stack.outputs["ProxyAuthTokenSecretArn"]
    missing = SecretToken(Settings(region=REGION), secret.replace("proxy-auth-token", "gone"))

    with pytest.raises(Unavailable) as raised:
        missing()

    assert "gone" not in str(raised.value) and "ResourceNotFound" in caplog.text


def test_without_the_proxy_the_functions_stay_direct(stack_without_proxy: DeployedStack) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    updated, policy = configure_stage(config, "prod", stack_without_proxy.outputs)
    environment = stage_environment(updated, "prod")

    assert stack_without_proxy.outputs["Router"] == "direct" and stack_without_proxy.outputs["Address"] == "public"
    assert not set(PROXY_OUTPUT_SETTINGS.values()) & set(environment)
    assert "secretsmanager" not in json.dumps(policy)
    (rule,) = _ingress(stack_without_proxy.outputs["SecurityGroups"])
    assert rule[:2] == (8888, 8888) and rule[3] == ("0.0.0.0/0",)  # readers reach servers directly, as before
    # A stage configured with the proxy, then with a stack without it, loses the proxy's settings.
    proxied = {**config, "stages": {**config["stages"], "prod": {**config["stages"]["prod"], "environment_variables": {
        "BINDERLESS_PROXY_API_URL": f"https://{DOMAIN}"}}}}
    again, _ = configure_stage(proxied, "prod", stack_without_proxy.outputs)
    assert "BINDERLESS_PROXY_API_URL" not in stage_environment(again, "prod")


@pytest.fixture
def stack_without_proxy() -> Iterator[DeployedStack]:
    with mock_aws():
        yield deploy_stack()


def test_the_single_stack_wires_the_proxy_to_its_own_api_and_its_functions_only_when_asked() -> None:
    resources = load_template(SINGLE_STACK)["Resources"]
    (container,) = resources["ProxyTaskDefinition"]["Properties"]["ContainerDefinitions"]
    (target,) = [o for o in container["Command"] if "--default-target=" in json.dumps(o)]

    pattern, values = target["Fn::Sub"]
    condition, given, own = values["Target"]["Fn::If"]
    assert pattern == "--default-target=${Target}" and given == {"Ref": "ProxyDefaultTarget"}
    # Chalice's EndpointURL without its "/": the gone page is the API's /user/{proxy+} route.
    assert own == {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api"}
    for function in FUNCTIONS:
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["BINDERLESS_ROUTER"] == {"Fn::If": ["Proxy", "chp", "direct"]}
        assert variables["BINDERLESS_PROXY_AUTH_TOKEN_SECRET"] == {
            "Fn::If": ["Proxy", {"Ref": "ProxyAuthToken"}, {"Ref": "AWS::NoValue"}]}
        assert variables["BINDERLESS_PROXY_API_URL"]["Fn::If"][1] == {"Fn::Sub": "https://${ProxyDomainName}"}
        assert variables["BINDERLESS_ADDRESS"] == {"Fn::If": ["Proxy", "private", {"Ref": "ServerAddress"}]}
