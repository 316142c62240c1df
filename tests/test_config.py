"""Settings: read once from the environment, and a misconfiguration fails loudly."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from chalicelib.config import DEFAULT_PUBLIC_ENDPOINTS, Settings


def test_settings_come_from_binderless_variables() -> None:
    settings = Settings.from_env({
        "BINDERLESS_TABLE_NAME": "t", "BINDERLESS_SUBNETS": "subnet-1, subnet-2", "BINDERLESS_MAX_CPU": "2048",
        "BINDERLESS_ASSIGN_PUBLIC_IP": "false", "AWS_REGION": "eu-west-1",
        "BINDERLESS_SERVICE_CATALOG": json.dumps({"redis": {"7": {"image": "redis:7", "cpu": 128, "memory": 256}}}),
    })
    assert settings.table_name == "t" and settings.subnets == ("subnet-1", "subnet-2")
    assert settings.max_cpu == 2048 and settings.assign_public_ip is False and settings.region == "eu-west-1"
    assert list(settings.service_catalog) == ["redis"]
    assert Settings.from_env({}).public_endpoints == DEFAULT_PUBLIC_ENDPOINTS


@pytest.mark.parametrize("env", [
    {"BINDERLESS_SERVICE_CATALOG": json.dumps({"db": {"1": {"image": "x", "cpu": 128, "memory": "lots"}}})},
    {"BINDERLESS_BACKEND": "kubernetes"},
    {"BINDERLESS_MAX_POOL_SIZE": "-1"},
])
def test_a_bad_setting_fails_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env(env)
