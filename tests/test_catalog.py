"""The service catalog: what a staging's ``services`` become, and what the operator may configure."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib import errors
from chalicelib.backends.base import Sidecar
from chalicelib.catalog import ServiceRequest, resolve_services, validate_catalog
from chalicelib.config import DEFAULT_SERVICE_CATALOG

CATALOG: dict[str, Any] = {
    **copy.deepcopy(DEFAULT_SERVICE_CATALOG),
    "spark": {
        "1.4.1": {
            "image": "example/spark:1.4.1",
            "cpu": 512,
            "memory": 1024,
            "environment": {"SPARK_HEAP": "1g"},
            "params": {"heap_mem": "SPARK_HEAP", "stack_mem": "SPARK_STACK"},
        },
        "3.5": {"image": "example/spark:3.5", "cpu": 512, "memory": 1024},
    },
}


def services(*requests: dict[str, Any]) -> list[ServiceRequest]:
    return [ServiceRequest.model_validate(request) for request in requests]


def test_a_param_becomes_the_environment_variable_the_catalog_names() -> None:
    [postgres] = resolve_services(
        services({"name": "postgres", "version": "16", "params": {"database": "lab"}}), CATALOG
    )
    assert postgres == Sidecar(
        name="postgres",
        image="public.ecr.aws/docker/library/postgres:16",
        cpu=256,
        memory=512,
        port=5432,
        environment={"POSTGRES_PASSWORD": "binder", "POSTGRES_USER": "binder", "POSTGRES_DB": "lab"},
    )


def test_the_seed_example_resolves_and_params_override_catalog_defaults() -> None:
    requested = services(
        {"name": "spark", "version": "1.4.1", "params": {"heap_mem": "4g", "stack_mem": "512m"}},
        {"name": "redis", "version": 7},
    )
    spark, redis = resolve_services(requested, CATALOG)
    assert spark.environment == {"SPARK_HEAP": "4g", "SPARK_STACK": "512m"}
    assert spark.port == 0  # no port in the entry: nothing to expose
    assert (redis.name, redis.image, redis.port, dict(redis.environment)) == (
        "redis",
        "public.ecr.aws/docker/library/redis:7",
        6379,
        {},
    )


def test_no_services_is_no_sidecars() -> None:
    assert resolve_services([], CATALOG) == ()


def test_resolving_does_not_change_the_catalog() -> None:
    before = copy.deepcopy(CATALOG)
    resolve_services(services({"name": "postgres", "version": "16", "params": {"database": "x"}}), CATALOG)
    assert before == CATALOG


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"name": "mysql", "version": "8"}, "unknown service 'mysql'; available services: postgres, redis, spark"),
        ({"name": "postgres", "version": "15"}, "service 'postgres' has no version '15'; available versions: 16"),
        ({"name": "spark", "version": "2"}, "available versions: 1.4.1, 3.5"),
        (
            {"name": "postgres", "version": "16", "params": {"db": "x"}},
            "service 'postgres' does not accept param 'db'; accepted params: database",
        ),
        ({"name": "redis", "version": "7", "params": {"maxmemory": "1"}}, "accepted params: none"),
        (
            {"name": "postgres", "version": "16", "params": {"database": "x" * 257}},
            "param 'database' of service 'postgres' is longer than 256 characters",
        ),
    ],
)
def test_a_bad_service_request_says_what_the_catalog_offers(request_body: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        resolve_services(services(request_body), CATALOG)
    assert message in caught.value.message
    assert caught.value.status == 422  # a value not acceptable, as bad limits are


def test_a_256_character_param_is_accepted() -> None:
    [postgres] = resolve_services(
        services({"name": "postgres", "version": "16", "params": {"database": "x" * 256}}), CATALOG
    )
    assert postgres.environment["POSTGRES_DB"] == "x" * 256


def test_the_same_service_twice_is_refused_even_in_other_versions() -> None:
    with pytest.raises(errors.Invalid, match="requested twice"):
        resolve_services(services({"name": "spark", "version": "3.5"}, {"name": "spark", "version": "1.4.1"}), CATALOG)


def test_an_empty_catalog_says_so() -> None:
    with pytest.raises(errors.Invalid, match="available services: none"):
        resolve_services(services({"name": "postgres", "version": "16"}), {})


def test_request_like_objects_with_non_string_values_are_refused() -> None:
    # resolve_services also serves records replayed from the store, not only validated requests.
    request = ServiceRequest.model_construct(name="postgres", version="16", params={"database": 5})
    with pytest.raises(errors.Invalid, match="must be a string"):
        resolve_services([request], CATALOG)


@pytest.mark.parametrize(("version", "text"), [(16, "16"), (1.5, "1.5"), ("1.4.1", "1.4.1")])
def test_service_request_takes_numeric_versions_as_strings(version: object, text: str) -> None:
    assert ServiceRequest.model_validate({"name": "postgres", "version": version}).version == text


@pytest.mark.parametrize(
    "body",
    [
        {"name": "postgres", "version": "16", "param": {"database": "x"}},  # typo: param
        {"name": "postgres"},
        {"name": "postgres", "version": True},
        {"name": "postgres", "version": "16", "params": {"database": 5}},
        {"name": "postgres", "version": "16", "params": ["database"]},
    ],
)
def test_service_request_refuses_typos_and_wrong_types(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ServiceRequest.model_validate(body)


def test_the_default_catalog_is_valid() -> None:
    validate_catalog(DEFAULT_SERVICE_CATALOG)
    validate_catalog(CATALOG)
    validate_catalog({})


def entry(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"image": "example/db:1", "cpu": 256, "memory": 512, "port": 5432}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("catalog", "says"),
    [
        ([], "must be an object"),
        ({"db": {}}, "at least one version"),
        ({"db": "16"}, "at least one version"),
        ({"my db": {"1": entry()}}, "service name 'my db'"),
        ({"db": {"1": "image:1"}}, "must be an object with image, cpu, memory"),
        ({"db": {"1": entry(image=...)}}, "missing 'image'"),
        ({"db": {"1": entry(image="")}}, ".image must be a non-empty string"),
        ({"db": {"1": entry(memory="512")}}, ".memory must be a positive integer (MiB), got '512'"),
        ({"db": {"1": entry(memory=...)}}, "missing 'memory'"),
        ({"db": {"1": entry(cpu=0)}}, ".cpu must be a positive integer (CPU units)"),
        ({"db": {"1": entry(cpu=True)}}, ".cpu must be a positive integer"),
        ({"db": {"1": entry(port=70000)}}, ".port must be an integer 0-65535"),
        ({"db": {"1": entry(ports=[1])}}, "unknown key 'ports'"),
        ({"db": {"1": entry(environment=["A=1"])}}, ".environment must be an object"),
        ({"db": {"1": entry(environment={"A": 1})}}, ".environment['A'] must map a non-empty string to a string"),
        ({"db": {"1": entry(environment={"1A": "x"})}}, "'1A' is not a valid environment variable name"),
        ({"db": {"1": entry(params={"database": "POSTGRES-DB"})}}, "'POSTGRES-DB' is not a valid environment"),
        ({"db": {"": entry()}}, "version must be a non-empty string"),
    ],
)
def test_a_malformed_catalog_fails_loudly(catalog: object, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        validate_catalog(catalog)
    assert says in str(caught.value)


def test_every_problem_of_a_catalog_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        validate_catalog({"db": {"1": entry(image=..., memory="1G")}, "cache": {"7": entry(port=-1)}})
    message = str(caught.value)
    assert "service_catalog['db']['1']: missing 'image'" in message
    assert "service_catalog['db']['1'].memory" in message
    assert "service_catalog['cache']['7'].port" in message
