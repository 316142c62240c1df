"""API Gateway's own replies, in our JSON shape with CORS headers, and never an echo of the request.

API Gateway answers some requests without calling the app: a path no route serves gets 403
"Missing Authentication Token" (and, when an Authorization header came along, a message quoting
it: the caller's token, in a reply any page may read), throttling gets 429, an integration timeout
504. Those replies have no CORS headers, so a page cannot even read them. These gateway responses
make them ``{"error", "message"}`` JSON like every other reply, with static text only: a template
without ``$`` has no VTL expression, so nothing from the request (``$input``, ``$context.error.message``,
headers) can appear in it.

One definition, two ways to install it:

    chalice package --merge-template infra/single-stack.json   # scripts/single_stack.py puts
        # ``swagger_extension()`` into RestAPI's DefinitionBody (x-amazon-apigateway-gateway-responses)
    python -m scripts.gateway_responses --stage prod            # after `chalice deploy` (make deploy)

In the definition body rather than as AWS::ApiGateway::GatewayResponse resources: each deploy
puts the body again (mode overwrite) and the stage serves a deployment's snapshot, so separate
resources are dropped by the next update and may miss the first deployment
(aws/serverless-application-model#390, #623, #3482). `chalice deploy` puts its own body the same
way, so this script runs after every deploy and then deploys the stage again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chalicelib.origins import ALLOW_HEADERS, EXPOSE_HEADERS
from scripts.cfn import ROOT

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient

CHALICE_DIR = ROOT / ".chalice"
DEFAULT_STAGE_NAME = "api"  # Chalice's api_gateway_stage when config.json names none
METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
RETRY_AFTER_THROTTLED = "1"
EXTENSION = "x-amazon-apigateway-gateway-responses"

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",  # as the app's CORS config on AWS: any page may launch
    "Access-Control-Allow-Headers": ",".join(ALLOW_HEADERS),
    "Access-Control-Allow-Methods": ",".join(METHODS),
    "Access-Control-Expose-Headers": ",".join(EXPOSE_HEADERS),
}


def _reply(status: str | None, error: str, message: str, **headers: str) -> dict[str, Any]:
    """One gateway response, as PutGatewayResponse takes it (status None: keep the specific one's)."""
    parameters = {f"gatewayresponse.header.{name}": f"'{value}'" for name, value in {**CORS_HEADERS, **headers}.items()}
    response: dict[str, Any] = {"responseParameters": parameters,
                                "responseTemplates": {"application/json": json.dumps({"error": error,
                                                                                       "message": message})}}
    if status is not None:
        response["statusCode"] = status
    return response


# A path no route serves, or a method its routes do not (API Gateway does not tell the two apart).
# With an Authorization header API Gateway reads it as a SigV4 signature and answers the unknown path
# as a bad one, quoting the header: this API signs nothing, so those types mean the same here.
NO_ROUTE = _reply("404", "NotFound", "No such path, or no such method on it, in this API; GET /openapi.json "
                                     "lists them.")

# response type -> PutGatewayResponse's statusCode, responseParameters, responseTemplates
GATEWAY_RESPONSES: Mapping[str, Mapping[str, Any]] = {
    "MISSING_AUTHENTICATION_TOKEN": NO_ROUTE,
    "INVALID_SIGNATURE": NO_ROUTE,
    "EXPIRED_TOKEN": NO_ROUTE,
    "THROTTLED": _reply(
        None, "QuotaExceeded", "Too many requests reach this API right now; retry after Retry-After seconds.",
        **{"Retry-After": RETRY_AFTER_THROTTLED}),
    "DEFAULT_4XX": _reply(
        None, "BadRequest", "API Gateway refused this request before it reached binderless (too large, or "
                            "malformed); check it against GET /openapi.json."),
    "DEFAULT_5XX": _reply(
        None, "Unavailable", "API Gateway got no answer from binderless in time; try again shortly."),
}


def swagger_extension() -> dict[str, Any]:
    """The responses as the OpenAPI extension API Gateway imports with a definition body."""
    return {EXTENSION: {kind: dict(response) for kind, response in GATEWAY_RESPONSES.items()}}


def put_gateway_responses(client: APIGatewayClient, rest_api_id: str, stage_name: str) -> str:
    """Set every response on the API, then deploy the stage (it serves a deployment's snapshot)."""
    for kind, response in GATEWAY_RESPONSES.items():
        client.put_gateway_response(restApiId=rest_api_id, responseType=kind, **response)  # type: ignore[arg-type]
    deployment = client.create_deployment(restApiId=rest_api_id, stageName=stage_name,
                                          description="binderless gateway responses")
    return str(deployment["id"])


def deployed_rest_api(chalice_dir: Path, stage: str) -> tuple[str, str]:
    """(rest API id, region) that `chalice deploy --stage <stage>` recorded."""
    path = chalice_dir / "deployed" / f"{stage}.json"
    if not path.exists():
        raise LookupError(f"{path} does not exist: run `chalice deploy --stage {stage}` first")
    for resource in json.loads(path.read_text()).get("resources", []):
        if resource.get("resource_type") == "rest_api":
            host = urlsplit(resource.get("rest_api_url", "")).hostname or ""
            region = host.split(".")[2] if host.count(".") >= 3 else ""  # <id>.execute-api.<region>.amazonaws.com
            return str(resource["rest_api_id"]), region
    raise LookupError(f"{path} records no rest API")


def stage_name(chalice_dir: Path, stage: str) -> str:
    config = json.loads((chalice_dir / "config.json").read_text())
    stage_config = config.get("stages", {}).get(stage, {})
    return str(stage_config.get("api_gateway_stage") or config.get("api_gateway_stage") or DEFAULT_STAGE_NAME)


def main(argv: Sequence[str] | None = None, chalice_dir: Path = CHALICE_DIR,
         client: APIGatewayClient | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gateway_responses", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="the Chalice stage `chalice deploy` deployed (e.g. prod)")
    args = parser.parse_args(argv)
    try:
        rest_api_id, region = deployed_rest_api(chalice_dir, args.stage)
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if client is None:
        import boto3

        client = boto3.client("apigateway", region_name=region or None)
    name = stage_name(chalice_dir, args.stage)
    deployment = put_gateway_responses(client, rest_api_id, name)
    print(f"gateway responses {', '.join(GATEWAY_RESPONSES)} set on {rest_api_id}; stage '{name}' redeployed "
          f"({deployment})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
