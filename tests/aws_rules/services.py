"""ECS, ECR and CodeBuild requests: startedBy, ListTasks's filters, RunTask's count and overrides,
tags, image tags and build variables."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from tests.aws_rules.documented import (
    CODEBUILD_VARIABLES,
    ECS_TAGS,
    IMAGE_TAG,
    LIST_TASKS_FILTERS,
    OVERRIDES_SIZE,
    RUN_TASK_COUNT,
    STARTED_BY,
    Found,
)

STARTED_BY_PATTERN = re.compile(r"[A-Za-z0-9/_-]{1,128}")
IMAGE_TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ECR_REGISTRY = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/")
LIST_TASKS_OTHER_FILTERS = ("containerInstance", "family", "serviceName", "desiredStatus", "launchType")
VARIABLE_TYPES = ("PLAINTEXT", "PARAMETER_STORE", "SECRETS_MANAGER")


def _tag_text_allowed(text: str) -> bool:
    """ECS's TagKey/TagValue pattern, ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``."""
    return all(c.isalnum() or c in "_.:/=+-@" or unicodedata.category(c).startswith("Z") for c in text)



# ---------------------------------------------------------------- ECS

def _started_by(value: Any) -> Found:
    if not isinstance(value, str) or not STARTED_BY_PATTERN.fullmatch(value):
        yield STARTED_BY, f"startedBy {value!r}"


def _tags(tags: Any) -> Found:
    tags = tags or []
    if len(tags) > 50:
        yield ECS_TAGS, f"{len(tags)} tags"
    keys = [tag.get("key", "") for tag in tags]
    if len(set(keys)) != len(keys):
        yield ECS_TAGS, f"tag keys repeat: {keys}"
    for tag in tags:
        key, value = str(tag.get("key", "")), str(tag.get("value", ""))
        if not 1 <= len(key) <= 128 or len(value) > 256:
            yield ECS_TAGS, f"tag {key[:40]!r}: key of {len(key)} characters, value of {len(value)}"
        for text in (key, value):
            if not _tag_text_allowed(text):
                yield ECS_TAGS, f"tag {key[:40]!r}: {text[:80]!r} has characters ECS does not allow"
            if text.lower().startswith("aws:"):
                yield ECS_TAGS, f"tag {key[:40]!r}: {text[:80]!r} starts with the reserved aws:"


def image_tag_of(image: str) -> str | None:
    """The tag of an image reference (``registry[:port]/name:tag``, ``name:tag@digest``), None for none.

    A first component with a "." or ":" (or "localhost") is a registry; a name has no ":"."""
    reference = image.split("@", 1)[0]
    first, _, rest = reference.partition("/")
    path = rest if rest and ("." in first or ":" in first or first == "localhost") else reference
    return path.split(":", 1)[1] if ":" in path else None


def _image_tags(image: Any, where: str) -> Found:
    tag = image_tag_of(str(image))
    if tag is not None:
        yield from _image_tag(tag, where)


def _image_tag(tag: Any, where: str) -> Found:
    if not isinstance(tag, str) or not IMAGE_TAG_PATTERN.fullmatch(tag):
        yield IMAGE_TAG, f"{where}: tag {str(tag)[:140]!r} ({len(str(tag))} characters)"


def run_task(params: Mapping[str, Any]) -> Found:
    count = params.get("count", 1)
    if not isinstance(count, int) or not 1 <= count <= 10:
        yield RUN_TASK_COUNT, f"count {count!r}"
    if "startedBy" in params:
        yield from _started_by(params["startedBy"])
    if "overrides" in params:
        size = len(json.dumps(params["overrides"], separators=(",", ":"), ensure_ascii=False))
        if size > 8192:
            yield OVERRIDES_SIZE, f"overrides of {size} characters"
    yield from _tags(params.get("tags"))


def list_tasks(params: Mapping[str, Any]) -> Found:
    if "startedBy" in params:
        others = [name for name in LIST_TASKS_OTHER_FILTERS if name in params]
        if others:
            yield LIST_TASKS_FILTERS, f"startedBy with {', '.join(others)}"
        yield from _started_by(params["startedBy"])


def tag_resource(params: Mapping[str, Any]) -> Found:
    yield from _tags(params.get("tags"))


def register_task_definition(params: Mapping[str, Any]) -> Found:
    yield from _tags(params.get("tags"))
    for container in params.get("containerDefinitions", []):
        yield from _image_tags(container.get("image", ""), f"container {container.get('name')}")


# ---------------------------------------------------------------- ECR and CodeBuild

def ecr_image_ids(params: Mapping[str, Any]) -> Found:
    for image in params.get("imageIds", []):
        if "imageTag" in image:
            yield from _image_tag(image["imageTag"], "imageIds")
    if "imageTag" in params:
        yield from _image_tag(params["imageTag"], "imageTag")


def start_build(params: Mapping[str, Any]) -> Found:
    for variable in params.get("environmentVariablesOverride", []):
        name, value = variable.get("name", ""), variable.get("value", "")
        if not isinstance(name, str) or not name:
            yield CODEBUILD_VARIABLES, f"variable name {name!r}"
        if variable.get("type", "PLAINTEXT") not in VARIABLE_TYPES:
            yield CODEBUILD_VARIABLES, f"variable {name}: type {variable.get('type')!r}"
        if ECR_REGISTRY.match(str(value)):  # an image the build pushes: a tag docker and ECR take
            yield from _image_tags(value, f"variable {name}")


