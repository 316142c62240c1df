"""What the stack's outputs mean to the app: its settings and its Lambda role's policy.

One description of the Lambda policy, rendered two ways:

* with the values of a deployed stack's outputs (``lambda_policy``), for ``chalice deploy``:
  ``.chalice/policy-<stage>.json`` (``python -m scripts.configure``);
* with CloudFormation references (``lambda_policy_cfn``), for the single-stack template
  (``python -m scripts.single_stack``).

``${Name}`` in a statement is a stack output (or ``Partition``, ``Region``, ``Account``).
tests/test_iam_policy.py checks that the policy grants every AWS call the code makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Stack output -> the app's environment variable (chalicelib/config.py reads BINDERLESS_<field>).
OUTPUT_SETTINGS: dict[str, str] = {
    "TableName": "BINDERLESS_TABLE_NAME",
    "ClusterName": "BINDERLESS_CLUSTER",
    "Subnets": "BINDERLESS_SUBNETS",
    "SecurityGroups": "BINDERLESS_SECURITY_GROUPS",
    "AssignPublicIp": "BINDERLESS_ASSIGN_PUBLIC_IP",
    "Address": "BINDERLESS_ADDRESS",
    "ServerPort": "BINDERLESS_SERVER_PORT",
    "BuildProjectName": "BINDERLESS_CODEBUILD_PROJECT",
    "RepositoryUri": "BINDERLESS_ECR_REPOSITORY_URI",
    "ExecutionRoleArn": "BINDERLESS_EXECUTION_ROLE_ARN",
    "TaskRoleArn": "BINDERLESS_TASK_ROLE_ARN",
    "ServerLogGroupName": "BINDERLESS_LOG_GROUP",
    "Router": "BINDERLESS_ROUTER",
}
# Outputs only a stack with the proxy has (ProxyDomainName given: the template's condition PROXY_CONDITION).
PROXY_OUTPUT_SETTINGS: dict[str, str] = {
    "ProxyApiUrl": "BINDERLESS_PROXY_API_URL",
    "ProxyPublicUrl": "BINDERLESS_PROXY_PUBLIC_URL",
    "ProxyAuthTokenSecretArn": "BINDERLESS_PROXY_AUTH_TOKEN_SECRET",
}
PROXY_CONDITION = "Proxy"

# Task definitions are registered as chalicelib.backends.aws_stagings.family_name(): "binderless-<env>".
TASK_FAMILY_PREFIX = "binderless-"

# Actions that have no resource-level permissions in IAM: "*" is the only resource they take.
UNRESTRICTABLE: dict[str, str] = {
    "ecs:RegisterTaskDefinition": "IAM cannot scope RegisterTaskDefinition to a resource",
    "ec2:DescribeNetworkInterfaces": "EC2 Describe* actions take no resource",
    "ecs:ListTasks": "ListTasks names only container instances; the ecs:cluster condition scopes it",
}

Statement = tuple[str, tuple[str, ...], tuple[str, ...], dict[str, Any] | None]

STATEMENTS: tuple[Statement, ...] = (
    ("Table", ("dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
               "dynamodb:UpdateItem"), ("${TableArn}",), None),
    ("TableIndexes", ("dynamodb:Query",), ("${TableArn}/index/*",), None),
    ("StartServers", ("ecs:RunTask",),
     (f"arn:${{Partition}}:ecs:${{Region}}:${{Account}}:task-definition/{TASK_FAMILY_PREFIX}*",),
     {"ArnEquals": {"ecs:cluster": "${ClusterArn}"}}),
    ("WatchAndStopServers", ("ecs:DescribeTasks", "ecs:StopTask"),
     ("arn:${Partition}:ecs:${Region}:${Account}:task/${ClusterName}/*",), None),
    # RunTask tags its tasks (cost allocation): "If tags are specified in the resource-creating action, AWS
    # performs additional authorization" of ecs:TagResource. Only at creation: no retagging of a task.
    ("TagServersAtLaunch", ("ecs:TagResource",), ("arn:${Partition}:ecs:${Region}:${Account}:task/${ClusterName}/*",),
     {"StringEquals": {"ecs:CreateAction": "RunTask"}}),
    ("StageEnvironments", ("ecs:RegisterTaskDefinition",), ("*",), None),
    # ... and so does RegisterTaskDefinition, whose tags (the repository) RunTask propagates to each task.
    ("TagEnvironmentsAtStaging", ("ecs:TagResource",),
     (f"arn:${{Partition}}:ecs:${{Region}}:${{Account}}:task-definition/{TASK_FAMILY_PREFIX}*",),
     {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}}),
    ("FindLostServers", ("ecs:ListTasks",), ("*",), {"ArnEquals": {"ecs:cluster": "${ClusterArn}"}}),
    ("PassServerRoles", ("iam:PassRole",), ("${ExecutionRoleArn}", "${TaskRoleArn}"),
     {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
    ("Builds", ("codebuild:BatchGetBuilds", "codebuild:StartBuild"), ("${BuildProjectArn}",), None),
    ("BuiltImages", ("ecr:DescribeImages",), ("${RepositoryArn}",), None),
    # GET /builds/repos/{image}/logs and the /build/ stream read the builds' log streams: GetLogEvents is
    # authorized on the log stream (log-group:<name>:log-stream:<stream>), not on the group.
    ("BuildLogs", ("logs:GetLogEvents",),
     ("arn:${Partition}:logs:${Region}:${Account}:log-group:${BuildLogGroupName}:log-stream:*",), None),
    ("ServerAddresses", ("ec2:DescribeNetworkInterfaces",), ("*",), None),
)
# With the proxy only: its REST API token (routers.SecretToken), that one secret and nothing else.
PROXY_STATEMENTS: tuple[Statement, ...] = (
    ("ProxyToken", ("secretsmanager:GetSecretValue",), ("${ProxyAuthTokenSecretArn}",), None),
)
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")
POLICY_OUTPUTS = ("TableArn", "ClusterArn", "ClusterName", "BuildProjectArn", "BuildLogGroupName", "RepositoryArn",
                  "ExecutionRoleArn", "TaskRoleArn")
_VARIABLE = re.compile(r"\$\{([A-Za-z]+)\}")
_PSEUDO = {"Partition": "AWS::Partition", "Region": "AWS::Region", "Account": "AWS::AccountId"}


def _statement(sid: str, actions: Sequence[str], resources: Sequence[str], condition: dict[str, Any] | None
               ) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": list(actions),
                                 "Resource": resources[0] if len(resources) == 1 else list(resources)}
    if condition:
        statement["Condition"] = condition
    return statement


def _document(log_actions: Sequence[str], log_resources: Any, proxy: Callable[[dict[str, Any]], Any] | None = None
              ) -> dict[str, Any]:
    """The policy; ``proxy`` wraps each statement of the proxy's (None: leave them out)."""
    statements: list[Any] = [_statement(*statement) for statement in STATEMENTS]
    if proxy is not None:
        statements.extend(proxy(_statement(*statement)) for statement in PROXY_STATEMENTS)
    statements.append({"Sid": "OwnLogs", "Effect": "Allow", "Action": list(log_actions), "Resource": log_resources})
    return {"Version": "2012-10-17", "Statement": statements}


def _walk(value: Any, render: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return render(value)
    if isinstance(value, list):
        return [_walk(item, render) for item in value]
    if isinstance(value, dict):
        return {key: _walk(item, render) for key, item in value.items()}
    return value


def arn_parts(arn: str) -> tuple[str, str, str]:
    """(partition, region, account) of an ARN."""
    _, partition, _, region, account = arn.split(":", 5)[:5]
    return partition, region, account


def lambda_log_resources(app_name: str, stage: str, partition: str, region: str, account: str) -> list[str]:
    """The log groups of the functions ``chalice deploy`` creates: <app>-<stage> and <app>-<stage>-<handler>."""
    prefix = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{app_name}-{stage}"
    return [prefix, f"{prefix}:*", f"{prefix}-*"]


def lambda_policy(outputs: Mapping[str, str], app_name: str, stage: str) -> dict[str, Any]:
    """The Lambda role's policy for a deployed stack, from its outputs (``chalice deploy``); the proxy's
    token only for a stack with the proxy."""
    partition, region, account = arn_parts(outputs["TableArn"])
    values = {**outputs, "Partition": partition, "Region": region, "Account": account}
    missing = sorted(set(POLICY_OUTPUTS) - set(outputs))
    if missing:
        raise KeyError(f"the stack has no output {', '.join(missing)}")
    with_proxy = "ProxyAuthTokenSecretArn" in outputs
    document = _document(LOG_ACTIONS, lambda_log_resources(app_name, stage, partition, region, account),
                         (lambda statement: statement) if with_proxy else None)
    return dict(_walk(document, lambda text: _VARIABLE.sub(lambda m: values[m[1]], text)))


def lambda_policy_cfn(output_values: Mapping[str, Any], log_group_arn: Any) -> dict[str, Any]:
    """The same policy with CloudFormation references, for a template that holds the stack's resources.

    ``output_values`` maps each output name to its ``Value`` in the template (``{"Fn::GetAtt": ...}``).
    The functions write to one log group, ``log_group_arn``: they need no CreateLogGroup."""

    def render(text: str) -> Any:
        names = _VARIABLE.findall(text)
        if not names:
            return text
        if text == f"${{{names[0]}}}" and names[0] in output_values:
            return output_values[names[0]]
        variables = {name: output_values[name] for name in names if name not in _PSEUDO}
        pattern = _VARIABLE.sub(lambda m: f"${{{_PSEUDO.get(m[1], m[1])}}}", text)
        return {"Fn::Sub": [pattern, variables]} if variables else {"Fn::Sub": pattern}

    document = _document(("logs:CreateLogStream", "logs:PutLogEvents"), "${AppLogGroupArn}",
                         lambda statement: {"Fn::If": [PROXY_CONDITION, statement, {"Ref": "AWS::NoValue"}]})
    return dict(_walk(document, lambda text: log_group_arn if text == "${AppLogGroupArn}" else render(text)))


def default_outputs(name: str, partition: str = "aws", region: str = "*", account: str = "*") -> dict[str, str]:
    """The outputs of a stack of this Name, as far as they follow from the name (for the committed files)."""
    arn = f"arn:{partition}:{{service}}:{region}:{account}:{{resource}}"
    return {
        "TableName": name,
        "TableArn": arn.format(service="dynamodb", resource=f"table/{name}"),
        "ClusterName": name,
        "ClusterArn": arn.format(service="ecs", resource=f"cluster/{name}"),
        "BuildProjectName": f"{name}-repo2docker",
        "BuildProjectArn": arn.format(service="codebuild", resource=f"project/{name}-repo2docker"),
        "BuildLogGroupName": f"/aws/codebuild/{name}-repo2docker",
        "RepositoryArn": arn.format(service="ecr", resource=f"repository/{name}"),
        "ExecutionRoleArn": f"arn:{partition}:iam::{account}:role/{name}-server-execution",
        "TaskRoleArn": f"arn:{partition}:iam::{account}:role/{name}-server",
    }
