"""Reading and writing the CloudFormation templates in infra/.

``load_template`` turns the YAML short forms (``!Ref``, ``!GetAtt``, ``!Sub`` ...) into the JSON
forms, so a template can be inspected, merged and deployed (moto) as plain data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "binderless.yml"
SINGLE_STACK = ROOT / "infra" / "single-stack.json"
BUILDSPEC = ROOT / "buildspec.yml"

# The literal block of the CodeBuild project's BuildSpec in infra/binderless.yml.
_BUILDSPEC_BLOCK = re.compile(r"^(?P<key>(?P<indent> *)BuildSpec: \|\n)(?P<body>(?:(?P=indent)  .*\n|\n)+)", re.M)


class _TemplateLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A SafeLoader that knows CloudFormation's short-form tags."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".json":
        return dict(json.loads(text))
    return dict(yaml.load(text, Loader=_TemplateLoader))  # noqa: S506 (a SafeLoader subclass)


def dump_json(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2) + "\n"


def buildspec_in(template_text: str) -> str:
    """The BuildSpec literal block of the template, dedented: what CodeBuild runs."""
    match = _BUILDSPEC_BLOCK.search(template_text)
    if match is None:
        raise ValueError("no 'BuildSpec: |' block in the template")
    indent = len(match["indent"]) + 2
    return "".join(line[indent:] if line.strip() else "\n" for line in match["body"].splitlines(keepends=True))


def with_buildspec(template_text: str, buildspec: str) -> str:
    """The template with its BuildSpec block replaced by ``buildspec``."""
    match = _BUILDSPEC_BLOCK.search(template_text)
    if match is None:
        raise ValueError("no 'BuildSpec: |' block in the template")
    pad = match["indent"] + "  "
    body = "".join(pad + line if line.strip() else "\n" for line in buildspec.rstrip("\n").splitlines(keepends=True))
    return template_text[: match.start("body")] + body.rstrip("\n") + "\n" + template_text[match.end("body"):]
