"""Turn a deployed infra/ stack into a Chalice stage: its environment variables and its Lambda policy.

    python -m scripts.configure --stack binderless --stage prod [--region eu-west-1]
    python -m scripts.configure --outputs outputs.json --stage prod   # from describe-stacks output
    python -m scripts.configure --stage prod --print-env              # export lines for the token CLI

Writes the stage's ``environment_variables`` (and ``autogen_policy: false``, ``iam_policy_file``)
into .chalice/config.json and the least-privilege policy into .chalice/policy-<stage>.json.
Then ``chalice deploy --stage <stage>``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.cfn import ROOT
from scripts.policy import OUTPUT_SETTINGS, PROXY_OUTPUT_SETTINGS, lambda_policy

CHALICE_DIR = ROOT / ".chalice"


def policy_file(stage: str) -> str:
    return f"policy-{stage}.json"


def stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    """OutputKey -> OutputValue of a deployed stack."""
    import boto3

    reply = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack)
    return outputs_from(reply["Stacks"][0].get("Outputs", []))


def outputs_from(outputs: Sequence[Mapping[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """Accept describe-stacks' list of {OutputKey, OutputValue} or a plain mapping."""
    if isinstance(outputs, Mapping):
        return {str(key): str(value) for key, value in outputs.items()}
    return {item["OutputKey"]: item["OutputValue"] for item in outputs}


def configure_stage(config: dict[str, Any], stage: str,
                    outputs: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The new config.json content and the stage's policy document."""
    missing = sorted(set(OUTPUT_SETTINGS) - set(outputs))
    if missing:
        raise KeyError(f"the stack has no output {', '.join(missing)}: is it infra/binderless.yml?")
    updated = json.loads(json.dumps(config))
    stage_config = updated.setdefault("stages", {}).setdefault(stage, {})
    variables = stage_config.setdefault("environment_variables", {})
    variables["BINDERLESS_BACKEND"] = "aws"
    variables.update({variable: outputs[output] for output, variable in OUTPUT_SETTINGS.items()})
    for output, variable in PROXY_OUTPUT_SETTINGS.items():  # a stack without the proxy: none of them
        if output in outputs:
            variables[variable] = outputs[output]
        else:
            variables.pop(variable, None)
    stage_config["autogen_policy"] = False
    stage_config["iam_policy_file"] = policy_file(stage)
    return updated, lambda_policy(outputs, str(config.get("app_name", "binderless")), stage)


def stage_environment(config: Mapping[str, Any], stage: str) -> dict[str, str]:
    """What the stage's Lambda functions see: the top-level variables, then the stage's."""
    stage_config = config.get("stages", {}).get(stage)
    if stage_config is None:
        raise KeyError(f"no stage '{stage}' in .chalice/config.json")
    return {**config.get("environment_variables", {}), **stage_config.get("environment_variables", {})}


def write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def main(argv: Sequence[str] | None = None, chalice_dir: Path = CHALICE_DIR) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.configure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="the Chalice stage to configure (e.g. prod)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stack", help="the deployed infra/binderless.yml stack")
    source.add_argument("--outputs", type=Path, help="a JSON file: describe-stacks' Outputs, or {key: value}")
    source.add_argument("--print-env", action="store_true", help="print the stage's variables as export lines")
    parser.add_argument("--region", help="the stack's region (default: the AWS CLI's)")
    args = parser.parse_args(argv)

    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text())
    if args.print_env:
        for name, value in stage_environment(config, args.stage).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    if args.outputs:
        outputs = outputs_from(json.loads(args.outputs.read_text()))
    elif args.stack:
        outputs = stack_outputs(args.stack, args.region)
    else:
        parser.error("give --stack or --outputs (or --print-env)")
    try:
        updated, policy = configure_stage(config, args.stage, outputs)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 1
    write_json(config_path, updated)
    write_json(chalice_dir / policy_file(args.stage), policy)
    print(f"wrote stage '{args.stage}' into {config_path} and {chalice_dir / policy_file(args.stage)}; "
          f"next: chalice deploy --stage {args.stage}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
