"""The single stack's /build/ event stream on AWS (scripts/stream_route.py), as `chalice package` merges it.

Neither API Gateway's STREAM transfer mode nor the Lambda Web Adapter can run here (moto's API Gateway
drops ``responseTransferMode``; the layer is AWS's binary), so the template is checked against AWS's
documented rules, quoted beside each check; tests/test_stream_server.py runs what the function runs.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from chalicelib.event_stream import KEEPALIVE_SECONDS
from chalicelib.stream_server import DEFAULT_PORT, READY_PATH, StreamConfig
from scripts.cfn import ROOT, SINGLE_STACK, load_template
from scripts.stream_route import (
    FUNCTION,
    HANDLER,
    LAYER_GIVEN,
    LAYER_PARAMETER,
    PATHS,
    PERMISSION,
    STREAM_SECONDS,
)
from tests.test_infra import _package

# API Gateway, "Stream the integration response for your proxy integrations" (response-transfer-mode.html):
# "You can stream your response for up to 15 minutes."
STREAM_LIMIT_SECONDS = 15 * 60
# "Your streams are subject to idle timeouts. For Regional or private endpoints, the timeout is 5 minutes. For
# edge-optimized endpoints, the timeout is 30 seconds."
IDLE_TIMEOUT = {"EDGE": 30, "REGIONAL": 300, "PRIVATE": 300}
# "API Gateway uses the InvokeWithResponseStream API to invoke the Lambda proxy integration for response
# streaming. This results in a different URI, which is the following:
# arn:aws:apigateway:us-west-1:lambda:path/2021-11-15/functions/arn:aws:lambda:...:function:my-function-name/
# response-streaming-invocations" (response-transfer-mode-lambda.html).
STREAMING_URI = re.compile(r"^arn:\$\{AWS::Partition\}:apigateway:\$\{AWS::Region\}:lambda:path/2021-11-15/functions/"
                           r"\$\{(?P<function>\w+)\.Arn\}/response-streaming-invocations$")
# aws-lambda-web-adapter 1.0.0, "Zip Packages": "arn:aws:lambda:${AWS::Region}:753240598075:layer:
# LambdaAdapterLayerX86:26"; "AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap"; "Set your function handler to your web
# application's startup script"; response streaming: "AWS_LWA_INVOKE_MODE=response_stream".
ADAPTER_LAYER = re.compile(r"^arn:aws:lambda:\$\{AWS::Region\}:753240598075:layer:LambdaAdapterLayerX86:\d+$")


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("stream-stack")
    return _package(out, "--merge-template", str(SINGLE_STACK)), out


def _input_member(service: str, operation: str, member: str) -> Any:
    """A request field as botocore's model of the AWS API describes it (AWS's own rules, shipped with boto3)."""
    shape: Any = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    return shape.members[member]


def _operation(template: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"][path][method]
    return operation


def test_the_build_routes_are_lambda_proxy_integrations_in_stream_mode(packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    for path in PATHS:
        integration = _operation(template, path, "get")["x-amazon-apigateway-integration"]

        assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST")
        # botocore's API Gateway model: responseTransferMode is BUFFERED (the default) or STREAM.
        transfer_modes = _input_member("apigateway", "PutIntegration", "responseTransferMode").enum
        assert integration["responseTransferMode"] == "STREAM" and "STREAM" in transfer_modes
        match = STREAMING_URI.match(integration["uri"]["Fn::Sub"])
        assert match and match["function"] == FUNCTION, integration["uri"]
        # "When you use response streaming, you can configure the integration timeout up to 15 minutes."
        assert integration["timeoutInMillis"] == STREAM_LIMIT_SECONDS * 1000
        preflight = _operation(template, path, "options")["x-amazon-apigateway-integration"]
        assert preflight["type"] == "mock"
        assert "Last-Event-ID" in preflight["responses"]["default"]["responseParameters"][
            "method.response.header.Access-Control-Allow-Headers"]
    # The rest of the API is Chalice's, buffered, unchanged.
    health = _operation(template, "/health", "get")["x-amazon-apigateway-integration"]
    assert "/2015-03-31/functions/${APIHandler.Arn}/invocations" in health["uri"]["Fn::Sub"]
    assert "responseTransferMode" not in health


def test_the_stream_function_runs_the_web_adapter_from_the_api_functions_package(
        packaged: tuple[dict[str, Any], Path]) -> None:
    template, out = packaged
    function = template["Resources"][FUNCTION]["Properties"]
    api = template["Resources"]["APIHandler"]["Properties"]
    variables = function["Environment"]["Variables"]

    assert (function["CodeUri"], function["Runtime"], function["Role"]) == (api["CodeUri"], api["Runtime"], api["Role"])
    assert function["Handler"] == HANDLER
    with zipfile.ZipFile(out / Path(function["CodeUri"]).name) as package:  # the handler is an executable script
        assert package.getinfo(HANDLER).external_attr >> 16 & 0o111 == 0o111
    (layer,) = function["Layers"]
    given, default = layer["Fn::If"][1:]
    assert layer["Fn::If"][0] == LAYER_GIVEN and given == {"Ref": LAYER_PARAMETER}
    assert ADAPTER_LAYER.match(default["Fn::Sub"]) and template["Parameters"][LAYER_PARAMETER]["Default"] == ""
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    config = StreamConfig.from_env(variables)
    assert (config.port, variables["AWS_LWA_READINESS_CHECK_PATH"]) == (DEFAULT_PORT, READY_PATH)
    # The function reads the settings the API function does (the stage's and the stack's).
    assert {name: value for name, value in api["Environment"]["Variables"].items()
            if variables.get(name) != value} == {}
    assert function["LoggingConfig"] == api["LoggingConfig"]


def test_a_stream_lasts_what_api_gateway_allows_and_ends_itself_before_lambda_stops_it(
        packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    timeout = template["Resources"][FUNCTION]["Properties"]["Timeout"]
    # "The default is 3 seconds, and the maximum allowed value is 1,800 seconds." (botocore 1.44's Lambda model)
    documentation = _input_member("lambda", "CreateFunction", "Timeout").documentation
    found = re.search(r"maximum allowed value is ([\d,]+) seconds", documentation)
    assert found, documentation
    lambda_max = int(found[1].replace(",", ""))

    assert timeout == STREAM_LIMIT_SECONDS <= lambda_max  # longer would outlive the stream API Gateway passes on
    assert timeout - 30 < STREAM_SECONDS < timeout
    assert StreamConfig.from_env(template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]).seconds \
        == STREAM_SECONDS


def test_the_keepalive_comment_comes_within_the_apis_idle_timeout(packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    endpoint = template["Resources"]["RestAPI"]["Properties"]["EndpointConfiguration"]

    # BinderHub's 25 s keepalive; a poll of the launch ends within a second of being due.
    assert IDLE_TIMEOUT[endpoint] > KEEPALIVE_SECONDS + 1


def test_api_gateway_may_invoke_the_stream_function_for_get_requests_of_this_api_only(
        packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    permission = template["Resources"][PERMISSION]["Properties"]
    # The Lambda API reference: "InvokeWithResponseStream ... This operation requires permission for the
    # lambda:InvokeFunction action."
    documentation = botocore.session.get_session().get_service_model("lambda").operation_model(
        "InvokeWithResponseStream").documentation

    assert "lambda:InvokeFunction</a> action" in documentation
    assert permission["Action"] == "lambda:InvokeFunction" and permission["FunctionName"] == {"Ref": FUNCTION}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${RestAPI}/*/GET/*")


def test_the_handler_script_is_committed_executable() -> None:
    assert (ROOT / HANDLER).stat().st_mode & 0o111 == 0o111
    assert LAYER_PARAMETER in load_template(SINGLE_STACK)["Parameters"]
