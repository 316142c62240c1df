"""Write infra/single-stack.json: the stack's resources plus their wiring into the Chalice app.

    python -m scripts.single_stack           # regenerate infra/single-stack.json (and the BuildSpec block)
    python -m scripts.single_stack --check   # fail if either is stale (CI)

``chalice package --merge-template infra/single-stack.json out/`` then gives one template with the
app and its resources: every function reads its settings from the resources (not from
config.json), the role has the least-privilege policy of scripts/policy.py with references
instead of names, the event rules match only this cluster and this project, and the functions
log to one log group with the stack's retention, and API Gateway's own error replies are JSON
with CORS headers that echo nothing of the request (scripts/gateway_responses.py), and
``GET /build/{provider}/{spec}`` streams from a function of its own (scripts/stream_route.py).
With the proxy (ProxyDomainName given), the functions get its settings and may read its token, and
the proxy's default target is this stack's own API (its ``/user/`` pages for servers that are gone)
unless ProxyDefaultTarget names another.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from scripts.cfn import BUILDSPEC, ROOT, SINGLE_STACK, TEMPLATE, dump_json, load_template, with_buildspec
from scripts.gateway_responses import swagger_extension
from scripts.policy import OUTPUT_SETTINGS, POLICY_OUTPUTS, PROXY_CONDITION, PROXY_OUTPUT_SETTINGS, lambda_policy_cfn
from scripts.stream_route import PACKAGED_STAGE, stream_parameters, stream_resources, swagger_paths

# The logical ids `chalice package` gives app.py's functions and, with autogen_policy false, their
# roles (one per function, each with the stage's policy file); tests/test_infra.py checks them.
ROLES = {"APIHandler": "ApiHandlerRole", "BuildEvents": "BuildEventsRole", "TaskEvents": "TaskEventsRole",
         "Keeper": "KeeperRole"}
FUNCTIONS = tuple(ROLES)
# function -> (its event's logical id, the `detail` filter that keeps only our events)
EVENT_FILTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "BuildEvents": ("BuildEventsEvent", {"project-name": [{"Ref": "BuildProject"}]}),
    "TaskEvents": ("TaskEventsEvent", {"clusterArn": [{"Fn::GetAtt": ["Cluster", "Arn"]}]}),
}
APP_LOG_GROUP = "AppLogGroup"
PROXY_TASK = "ProxyTaskDefinition"
DEFAULT_TARGET_OPTION = "--default-target="

# Checks that do not fit the functions and API Chalice generates, and why (checkov reads these).
FUNCTION_SKIPS = [
    {"id": "CKV_AWS_116", "comment": "EventBridge retries a failed event for 24 hours, and the keeper function "
                                     "reconciles builds and servers whose event was lost: a DLQ adds nothing."},
    {"id": "CKV_AWS_117", "comment": "The functions call only AWS APIs (DynamoDB, ECS, CodeBuild, ECR, EC2); "
                                     "a VPC would need NAT or endpoints (cost) and slow cold starts."},
    {"id": "CKV_AWS_173", "comment": "The environment holds resource names and ARNs only; secrets (API tokens) "
                                     "live hashed in DynamoDB."},
    {"id": "CKV_AWS_115", "comment": "Reserved concurrency fails to deploy in new accounts (a limit of 10 leaves "
                                     "no room) and would cap the API; overlapping keeper runs are safe (every "
                                     "write is conditional)."},
]
API_SKIPS = [
    {"id": "CKV_AWS_76", "comment": "Access logging needs the region's API Gateway CloudWatch role, an account-wide "
                                    "setting this stack must not overwrite (docs/operating.md, API access logs)."},
    {"id": "CKV_AWS_120", "comment": "Every reply depends on the caller's token or changes state (a deployment "
                                     "starts a server): nothing may be cached."},
]


def _output_values(template: dict[str, Any]) -> dict[str, Any]:
    return {name: output["Value"] for name, output in template["Outputs"].items()}


def api_url(stage: str = PACKAGED_STAGE) -> dict[str, str]:
    """This stack's API, as Chalice's own EndpointURL output names it, without the trailing "/"."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    name = config.get("stages", {}).get(stage, {}).get("api_gateway_stage", config.get("api_gateway_stage", "api"))
    return {"Fn::Sub": f"https://${{RestAPI}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{name}"}


def with_default_target(task_definition: dict[str, Any]) -> dict[str, Any]:
    """The proxy's task definition whose default target is ProxyDefaultTarget, else this stack's API.

    Readers' requests for a server without a route (stopped, culled, never there) then land on the API's
    ``/user/{proxy+}`` page, which says the server is gone (410)."""
    task = json.loads(json.dumps(task_definition))
    (container,) = task["Properties"]["ContainerDefinitions"]
    options = [i for i, option in enumerate(container["Command"]) if DEFAULT_TARGET_OPTION in json.dumps(option)]
    if len(options) != 1:
        raise ValueError(f"{PROXY_TASK} has {len(options)} {DEFAULT_TARGET_OPTION} options, not one")
    container["Command"][options[0]] = {"Fn::Sub": [f"{DEFAULT_TARGET_OPTION}${{Target}}", {"Target": {"Fn::If": [
        "ProxyDefaultTargetGiven", {"Ref": "ProxyDefaultTarget"}, api_url()]}}]}
    return dict(task)


def single_stack(template: dict[str, Any]) -> dict[str, Any]:
    """The merge template for `chalice package`: ``template`` plus overrides of Chalice's resources."""
    outputs = _output_values(template)
    missing = sorted((set(OUTPUT_SETTINGS) | set(PROXY_OUTPUT_SETTINGS) | set(POLICY_OUTPUTS)) - set(outputs))
    if missing:
        raise KeyError(f"infra/binderless.yml has no output {', '.join(missing)}")
    resources = dict(template["Resources"])
    resources[APP_LOG_GROUP] = {
        "Type": "AWS::Logs::LogGroup",
        "Metadata": resources["ServerLogGroup"]["Metadata"],  # the same reasons as the other log groups
        "Properties": {"RetentionInDays": {"Ref": "LogRetentionDays"},
                       "Tags": [{"Key": "binderless", "Value": {"Ref": "Name"}}]},
    }
    variables = {"BINDERLESS_BACKEND": "aws",
                 **{variable: outputs[output] for output, variable in OUTPUT_SETTINGS.items()},
                 # Without the proxy these are not set at all: the app's defaults (router "direct").
                 **{variable: {"Fn::If": [PROXY_CONDITION, outputs[output], {"Ref": "AWS::NoValue"}]}
                    for output, variable in PROXY_OUTPUT_SETTINGS.items()}}
    resources[PROXY_TASK] = with_default_target(resources[PROXY_TASK])
    for function in FUNCTIONS:
        properties: dict[str, Any] = {
            "Environment": {"Variables": variables},
            "LoggingConfig": {"LogGroup": {"Ref": APP_LOG_GROUP}, "LogFormat": "Text"},
        }
        if function in EVENT_FILTERS:
            event, detail = EVENT_FILTERS[function]
            properties["Events"] = {event: {"Properties": {"Pattern": {"detail": detail}}}}
        resources[function] = {"Metadata": {"checkov": {"skip": FUNCTION_SKIPS}}, "Properties": properties}
    # X-Ray traces of API requests (sampled) show where a slow launch spends its time. API Gateway's own
    # replies (unknown paths, throttling, timeouts) in our JSON with CORS headers, merged into Chalice's
    # definition body so every deployment carries them (scripts/gateway_responses.py says why).
    resources.update(stream_resources(variables, APP_LOG_GROUP, FUNCTION_SKIPS))
    resources["RestAPI"] = {"Metadata": {"checkov": {"skip": API_SKIPS}},
                            "Properties": {"TracingEnabled": True,
                                           "DefinitionBody": {**swagger_extension(), "paths": swagger_paths()}}}
    policy = lambda_policy_cfn(outputs, {"Fn::GetAtt": [APP_LOG_GROUP, "Arn"]})
    for role in ROLES.values():  # replaces the policy of .chalice/policy-<stage>.json (names, not references)
        resources[role] = {"Properties": {"Policies": [{"PolicyName": "binderless", "PolicyDocument": policy}]}}
    header = {
        "Description": template["Description"].replace("does not create", "needs")
        + " Generated by scripts/single_stack.py from infra/binderless.yml: do not edit.",
    }
    parameters, conditions = stream_parameters()
    return {**template, **header, "Parameters": {**template["Parameters"], **parameters},
            "Conditions": {**template.get("Conditions", {}), **conditions}, "Resources": resources}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.single_stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the generated files are current")
    args = parser.parse_args(argv)
    template = with_buildspec(TEMPLATE.read_text(), BUILDSPEC.read_text())
    if args.check:
        stale = TEMPLATE if TEMPLATE.read_text() != template else None
        if stale is None and (not SINGLE_STACK.exists()
                              or SINGLE_STACK.read_text() != dump_json(single_stack(load_template(TEMPLATE)))):
            stale = SINGLE_STACK
        if stale is not None:
            print(f"{stale.relative_to(ROOT)} is stale: run `python -m scripts.single_stack`", file=sys.stderr)
        return 1 if stale else 0
    TEMPLATE.write_text(template)
    SINGLE_STACK.write_text(dump_json(single_stack(load_template(TEMPLATE))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
