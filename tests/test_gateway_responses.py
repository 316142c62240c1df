"""API Gateway's own replies (unknown paths, throttling, timeouts): our JSON, CORS headers, no echo.

tests/test_infra.py checks that `chalice package` carries them; here the definition itself, and
scripts/gateway_responses.py putting them on a deployed API (moto) after `chalice deploy`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.origins import ALLOW_HEADERS
from scripts.gateway_responses import EXTENSION, GATEWAY_RESPONSES, main, swagger_extension

REGION = "us-east-1"
CORS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods",
        "Access-Control-Expose-Headers")


def assert_static_json_with_cors(kind: str, response: dict[str, Any]) -> None:
    """Our error shape in literal text (no VTL: no ``$`` or ``#``), and the CORS headers as literals."""
    template = response["responseTemplates"]["application/json"]
    assert "$" not in template and "#" not in template, kind  # no $input, $context.error.message, #set ...
    assert set(json.loads(template)) == {"error", "message"}, kind
    parameters = response["responseParameters"]
    for header in CORS:
        assert f"gatewayresponse.header.{header}" in parameters, (kind, header)
    assert parameters["gatewayresponse.header.Access-Control-Allow-Origin"] == "'*'"
    # every header a quoted literal, never a mapping from the request (method.request.header.Authorization)
    assert all(value.startswith("'") and value.endswith("'") for value in parameters.values()), kind


def test_every_gateway_response_is_our_json_with_cors_headers_and_quotes_nothing() -> None:
    assert {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(GATEWAY_RESPONSES)
    for kind, response in GATEWAY_RESPONSES.items():
        assert_static_json_with_cors(kind, dict(response))
    unknown_path = GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"]
    assert unknown_path["statusCode"] == "404"
    assert json.loads(unknown_path["responseTemplates"]["application/json"])["error"] == "NotFound"
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX", "THROTTLED"):  # the status of the specific error stays
        assert "statusCode" not in GATEWAY_RESPONSES[kind]
    headers = GATEWAY_RESPONSES["DEFAULT_4XX"]["responseParameters"]
    assert headers["gatewayresponse.header.Access-Control-Allow-Headers"] == f"'{','.join(ALLOW_HEADERS)}'"
    assert swagger_extension() == {EXTENSION: {kind: dict(r) for kind, r in GATEWAY_RESPONSES.items()}}


def deployed_api(chalice_dir: Path, stage: str = "prod") -> str:
    """A REST API with a method and a stage, recorded as `chalice deploy` records it."""
    apigateway = boto3.client("apigateway", region_name=REGION)
    api = apigateway.create_rest_api(name="binderless")["id"]
    root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    apigateway.put_method(restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigateway.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
    apigateway.create_deployment(restApiId=api, stageName="api")
    (chalice_dir / "deployed").mkdir(parents=True)
    (chalice_dir / "deployed" / f"{stage}.json").write_text(json.dumps({"schema_version": "2.0", "resources": [
        {"name": "api_handler", "resource_type": "lambda_function",
         "lambda_arn": f"arn:aws:lambda:{REGION}:123456789012:function:binderless-{stage}"},
        {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api,
         "rest_api_url": f"https://{api}.execute-api.{REGION}.amazonaws.com/api/"}]}))
    (chalice_dir / "config.json").write_text(json.dumps({"version": "2.0", "app_name": "binderless",
                                                         "stages": {stage: {"api_gateway_stage": "api"}}}))
    return str(api)


def test_the_script_puts_them_on_the_api_chalice_deployed_and_redeploys_the_stage(tmp_path: Path) -> None:
    with mock_aws():
        api = deployed_api(tmp_path)
        apigateway = boto3.client("apigateway", region_name=REGION)
        before = len(apigateway.get_deployments(restApiId=api)["items"])
        chalices = apigateway.get_stage(restApiId=api, stageName="api")["deploymentId"]

        assert main(["--stage", "prod"], chalice_dir=tmp_path) == 0
        assert main(["--stage", "prod"], chalice_dir=tmp_path) == 0  # again after the next deploy: the same

        put = {r["responseType"]: r for r in apigateway.get_gateway_responses(restApiId=api)["items"]}
        assert set(GATEWAY_RESPONSES) <= set(put)
        for kind, wanted in GATEWAY_RESPONSES.items():
            got = put[kind]
            assert got["responseParameters"] == wanted["responseParameters"], kind
            assert got["responseTemplates"] == wanted["responseTemplates"], kind
            assert got.get("statusCode") == wanted.get("statusCode"), kind
            assert_static_json_with_cors(kind, got)
        assert put["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
        deployments = {d["id"] for d in apigateway.get_deployments(restApiId=api)["items"]}
        assert len(deployments) == before + 2
        serving = apigateway.get_stage(restApiId=api, stageName="api")["deploymentId"]
        assert serving in deployments and serving != chalices  # the stage serves a snapshot with them


def test_without_a_chalice_deploy_the_script_says_what_to_run(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text("{}")

    assert main(["--stage", "prod"], chalice_dir=tmp_path) == 1

    assert "chalice deploy --stage prod" in capsys.readouterr().err
