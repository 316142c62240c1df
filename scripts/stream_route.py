"""The single stack's streaming function: BinderHub's ``/build/`` event stream through API Gateway.

A REST API streams a reply only from a proxy integration in STREAM transfer mode; for Lambda that
integration calls ``InvokeWithResponseStream`` (its own URI), and a Python function streams through
the AWS Lambda Web Adapter layer, which runs chalicelib/stream_server.sh and forwards each request
to the server it starts (chalicelib/stream_server.py). The function ships in Chalice's own
deployment package and has the API function's role: a launch does what the API does.

API Gateway (docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html):
"You can stream your response for up to 15 minutes." "Your streams are subject to idle timeouts. For
Regional or private endpoints, the timeout is 5 minutes. For edge-optimized endpoints, the timeout is
30 seconds." Chalice's API is edge-optimized: the stream's keepalive comment (every 25 s) keeps it open.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.origins import ALLOW_HEADERS, EXPOSE_HEADERS, MAX_AGE
from chalicelib.stream_server import DEFAULT_PORT, READY_PATH
from scripts.cfn import ROOT

FUNCTION = "BuildStream"
PERMISSION = "BuildStreamInvokePermission"
ROLE = "ApiHandlerRole"  # the API function's: the same DynamoDB, CodeBuild and ECS calls, nothing more
HANDLER = "chalicelib/stream_server.sh"  # the adapter's /opt/bootstrap runs $LAMBDA_TASK_ROOT/$_HANDLER
CODE_URI = "./deployment.zip"  # what `chalice package` writes beside sam.json, the API function's code
PATHS = ("/build/{proxy+}", "/api/build/{proxy+}")  # at the stage's root and under /api/, as every route
LAYER_PARAMETER = "WebAdapterLayerArn"
LAYER_GIVEN = "WebAdapterLayerGiven"
# aws-lambda-web-adapter 1.0.0 (README, "Zip Packages"): x86_64
# `arn:aws:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerX86:26` in commercial regions.
DEFAULT_LAYER = "arn:aws:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerX86:26"
# Lambda's longest timeout, and API Gateway's: "When you use response streaming, you can configure the
# integration timeout up to 15 minutes."
TIMEOUT_SECONDS = 900
INTEGRATION_TIMEOUT_MILLIS = TIMEOUT_SECONDS * 1000
# A stream ends itself this long before the function's timeout, so the reader sees a clean end (EventSource
# reconnects with Last-Event-ID) rather than a reply Lambda cuts.
STREAM_SECONDS = TIMEOUT_SECONDS - 15
ADAPTER_VARIABLES = {
    "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
    "AWS_LWA_INVOKE_MODE": "response_stream",
    "AWS_LWA_PORT": str(DEFAULT_PORT),
    "AWS_LWA_READINESS_CHECK_PATH": READY_PATH,
    "BINDERLESS_STREAM_SECONDS": str(STREAM_SECONDS),
}
PACKAGED_STAGE = "prod"  # `make package-single` packages STAGE=prod unless told otherwise
CORS_HEADERS = (*ALLOW_HEADERS, "Last-Event-ID")  # an EventSource's reconnect sends Last-Event-ID


def stage_variables(stage: str = PACKAGED_STAGE) -> dict[str, str]:
    """The environment Chalice gives the stage's functions from .chalice/config.json (the API function's)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {**config.get("environment_variables", {}),
            **config.get("stages", {}).get(stage, {}).get("environment_variables", {})}


def stream_function(variables: dict[str, Any], log_group: str, skips: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Metadata": {"checkov": {"skip": skips}},
        "Properties": {
            "Runtime": "python3.11", "Handler": HANDLER, "CodeUri": CODE_URI, "Architectures": ["x86_64"],
            "MemorySize": 512, "Timeout": TIMEOUT_SECONDS, "Tracing": "PassThrough",
            "Layers": [{"Fn::If": [LAYER_GIVEN, {"Ref": LAYER_PARAMETER}, {"Fn::Sub": DEFAULT_LAYER}]}],
            "Role": {"Fn::GetAtt": [ROLE, "Arn"]},
            "Environment": {"Variables": {**stage_variables(), **variables, **ADAPTER_VARIABLES}},
            "LoggingConfig": {"LogGroup": {"Ref": log_group}, "LogFormat": "Text"},
            "Tags": {"binderless": "build-stream"},
        },
    }


def invoke_permission() -> dict[str, Any]:
    """API Gateway may invoke it ("InvokeWithResponseStream ... requires permission for the
    lambda:InvokeFunction action", the Lambda API reference), for GET requests of this API only."""
    return {"Type": "AWS::Lambda::Permission", "Properties": {
        "FunctionName": {"Ref": FUNCTION}, "Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com",
        "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                 "${RestAPI}/*/GET/*"},
    }}


def integration_uri() -> dict[str, str]:
    # "API Gateway uses the InvokeWithResponseStream API to invoke the Lambda proxy integration for response
    # streaming. This results in a different URI" (response-transfer-mode-lambda.html).
    return {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
                       f"${{{FUNCTION}.Arn}}/response-streaming-invocations"}


def _preflight() -> dict[str, Any]:
    """OPTIONS answered by API Gateway itself, as Chalice answers its routes' preflights."""
    headers = {"Access-Control-Allow-Methods": "GET,OPTIONS", "Access-Control-Allow-Origin": "*",
               "Access-Control-Allow-Headers": ",".join(CORS_HEADERS),
               "Access-Control-Expose-Headers": ",".join(EXPOSE_HEADERS), "Access-Control-Max-Age": str(MAX_AGE)}
    return {
        "consumes": ["application/json"], "produces": ["application/json"],
        "responses": {"200": {"description": "200 response",
                              "headers": {name: {"type": "string"} for name in headers}}},
        "x-amazon-apigateway-integration": {
            "type": "mock", "passthroughBehavior": "when_no_match",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "responses": {"default": {"statusCode": "200", "responseParameters": {
                f"method.response.header.{name}": f"'{value}'" for name, value in headers.items()}}},
        },
    }


def swagger_paths() -> dict[str, Any]:
    """The routes, merged into Chalice's definition body: GET streams from the function."""
    get = {
        "produces": ["text/event-stream"],
        "parameters": [{"name": "proxy", "in": "path", "required": True, "type": "string"}],
        "responses": {"200": {"description": "BinderHub's event stream: phases until ready or failed"}},
        "x-amazon-apigateway-integration": {
            "type": "aws_proxy", "httpMethod": "POST", "uri": integration_uri(), "passthroughBehavior": "when_no_match",
            "responseTransferMode": "STREAM", "timeoutInMillis": INTEGRATION_TIMEOUT_MILLIS,
        },
    }
    return {path: {"get": get, "options": _preflight()} for path in PATHS}


def stream_resources(variables: dict[str, Any], log_group: str, skips: list[dict[str, str]]) -> dict[str, Any]:
    return {FUNCTION: stream_function(variables, log_group, skips), PERMISSION: invoke_permission()}


def stream_parameters() -> tuple[dict[str, Any], dict[str, Any]]:
    """(Parameters, Conditions) the function's layer adds to the template."""
    parameter = {"Type": "String", "Default": "", "Description": (
        "the AWS Lambda Web Adapter layer (x86_64) of the streaming /build/ function; empty: AWS's published "
        "version 26 in this region (other regions and partitions: see the adapter's README)")}
    return {LAYER_PARAMETER: parameter}, {LAYER_GIVEN: {"Fn::Not": [{"Fn::Equals": [{"Ref": LAYER_PARAMETER}, ""]}]}}
