"""A staging's ``limits``: every form people write, every refusal and what it tells them."""

from __future__ import annotations

import pytest

from chalicelib import errors
from chalicelib.config import Settings
from chalicelib.limits import FARGATE_PAIRS, Limits, RawLimit, parse_cpu, parse_memory, resolve_limits


def caps(**values: int) -> Settings:
    return Settings.model_validate(values)


SETTINGS = caps(default_cpu=1024, default_memory=2048, max_cpu=4096, max_memory=16384)


@pytest.mark.parametrize(
    ("raw", "units"),
    [
        ("0.5", 512),
        (0.25, 256),
        (1, 1024),
        ("1", 1024),
        (16, 16384),
        ("2 vCPU", 2048),
        ("2vcpu", 2048),
        ("4 vCPUs", 4096),
        ("0.25 cpu", 256),
        ("500m", 512),
        ("250m", 256),
        ("2000m", 2048),
        ("1024", 1024),
        (512, 512),
        ("256", 256),
        (" 1 ", 1024),
        (2048.0, 2048),
    ],
)
def test_parse_cpu_accepts_vcpu_millicores_and_units(raw: RawLimit, units: int) -> None:
    assert parse_cpu(raw) == units


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("abc", "accepted forms"),
        ("1.5 GHz", "accepted forms"),
        ("", "accepted forms"),
        (True, "accepted forms"),
        (None, "accepted forms"),
        ([1], "accepted forms"),
        (float("nan"), "accepted forms"),
        (0, "greater than zero"),
        ("-1", "greater than zero"),
        (64, "ambiguous"),
        ("17", "ambiguous"),
        ("100m", "whole number of CPU units"),
        (0.1, "whole number of CPU units"),
    ],
)
def test_parse_cpu_refuses_with_a_reason(raw: object, says: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        parse_cpu(raw)  # type: ignore[arg-type]
    assert says in caught.value.message
    assert caught.value.message.startswith("cpu ")


@pytest.mark.parametrize(
    ("raw", "mib"),
    [
        ("1G", 1024),
        ("1Gi", 1024),
        ("1GB", 1024),
        ("1GiB", 1024),
        ("1.5G", 1536),
        ("512M", 512),
        ("512Mi", 512),
        ("512MB", 512),
        ("512 mb", 512),
        ("4g", 4096),
        (2048, 2048),
        ("2048", 2048),
        (3072.0, 3072),
    ],
)
def test_parse_memory_accepts_units_and_bare_mib(raw: RawLimit, mib: int) -> None:
    assert parse_memory(raw) == mib


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("lots", "accepted forms"),
        ("1T", "accepted forms"),
        ("1 G B", "accepted forms"),
        (False, "accepted forms"),
        ({"G": 1}, "accepted forms"),
        (0, "greater than zero"),
        ("0G", "greater than zero"),
        (-512, "greater than zero"),
        ("-1G", "greater than zero"),
        ("0.3G", "whole number of MiB"),
        (512.5, "whole number of MiB"),
    ],
)
def test_parse_memory_refuses_with_a_reason(raw: object, says: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        parse_memory(raw)  # type: ignore[arg-type]
    assert says in caught.value.message
    assert caught.value.message.startswith("memory ")


def test_the_accepted_forms_are_listed_when_a_value_is_not_understood() -> None:
    with pytest.raises(errors.Invalid) as caught:
        parse_memory("a lot")
    assert '"512M"' in caught.value.message and '"1G"' in caught.value.message


def test_fargate_pairs_are_the_documented_table() -> None:
    assert FARGATE_PAIRS[256] == (512, 1024, 2048)
    assert FARGATE_PAIRS[512] == (1024, 2048, 3072, 4096)
    assert FARGATE_PAIRS[1024][0] == 2048 and FARGATE_PAIRS[1024][-1] == 8192
    assert FARGATE_PAIRS[2048][0] == 4096 and FARGATE_PAIRS[2048][-1] == 16384
    assert FARGATE_PAIRS[4096][0] == 8192 and FARGATE_PAIRS[4096][-1] == 30720 and len(FARGATE_PAIRS[4096]) == 23
    assert FARGATE_PAIRS[8192] == tuple(range(16384, 61441, 4096))
    assert FARGATE_PAIRS[16384] == tuple(range(32768, 122881, 8192))


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (None, None, Limits(1024, 2048)),  # the operator's defaults
        ("0.5", None, Limits(512, 1024)),  # smallest memory for the cpu
        ("2 vCPU", None, Limits(2048, 4096)),
        (None, "3G", Limits(512, 3072)),  # smallest cpu that allows the memory
        (None, "512M", Limits(256, 512)),
        (None, 5120, Limits(1024, 5120)),
        (None, "16G", Limits(2048, 16384)),
        ("0.25", "2G", Limits(256, 2048)),
        ("4", "16Gi", Limits(4096, 16384)),
        (4096, "8GB", Limits(4096, 8192)),
    ],
)
def test_resolve_limits_fills_in_the_missing_side(cpu: object, memory: object, expected: Limits) -> None:
    assert resolve_limits(cpu, memory, settings=SETTINGS) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cpu", "memory", "message"),
    [
        ("0.5", "8G", "memory 8G does not fit cpu 0.5 vCPU: cpu 0.5 vCPU allows memory 1G, 2G, 3G, 4G"),
        ("0.25", "3G", "cpu 0.25 vCPU allows memory 512M, 1G, 2G"),
        ("2", "2G", "cpu 2 vCPU allows memory 4G, 5G, 6G, 7G, 8G, 9G, 10G, 11G, 12G, 13G, 14G, 15G, 16G"),
        ("3", None, "cpu 3 vCPU (3072 units) is not a Fargate size; valid cpu values are 0.25, 0.5, 1, 2, 4 vCPU"),
        (768, "2G", "valid cpu values are 0.25, 0.5, 1, 2, 4 vCPU"),
        ("8", None, "cpu 8 vCPU is over this deployment's cap of 4 vCPU"),
        ("16 vCPU", "32G", "over this deployment's cap of 4 vCPU"),
        (None, "20G", "memory 20G is over this deployment's cap of 16G"),
        ("1", "1000", "memory 1000M does not fit cpu 1 vCPU: cpu 1 vCPU allows memory 2G, 3G, 4G, 5G, 6G, 7G, 8G"),
        (None, "1000M", "memory 1000M is not a Fargate size; valid memory sizes are 512M, 1G, 2G, 3G"),
        ("abc", "1G", 'cpu "abc" is not understood; accepted forms'),
        ("1", "much", 'memory "much" is not understood; accepted forms'),
    ],
)
def test_resolve_limits_says_what_would_be_accepted(cpu: object, memory: object, message: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        resolve_limits(cpu, memory, settings=SETTINGS)  # type: ignore[arg-type]
    assert message in caught.value.message
    assert caught.value.status == 422


def test_caps_shrink_the_lists_a_refusal_shows() -> None:
    small = caps(max_cpu=1024, max_memory=4096)
    with pytest.raises(errors.Invalid) as caught:
        resolve_limits("3", None, settings=small)
    assert caught.value.message.endswith("valid cpu values are 0.25, 0.5, 1 vCPU")
    with pytest.raises(errors.Invalid) as caught:
        resolve_limits("1", "6G", settings=small)
    assert "cap of 4G" in caught.value.message
    with pytest.raises(errors.Invalid) as caught:
        resolve_limits("1", "1G", settings=small)
    assert caught.value.message.endswith("cpu 1 vCPU allows memory 2G, 3G, 4G")


def test_memory_that_needs_more_cpu_than_the_cap_names_both() -> None:
    with pytest.raises(errors.Invalid) as caught:
        resolve_limits(None, "8G", settings=caps(max_cpu=512, max_memory=16384))
    assert caught.value.message == "memory 8G needs at least 1 vCPU, over this deployment's cpu cap of 0.5 vCPU"


def test_cpu_whose_smallest_memory_is_over_the_memory_cap_is_refused() -> None:
    with pytest.raises(errors.Invalid) as caught:
        resolve_limits("4", None, settings=caps(max_cpu=4096, max_memory=4096))
    assert "needs at least 8G of memory" in caught.value.message


@pytest.mark.parametrize(
    "limits", [Limits(cpu, memory) for cpu, memories in FARGATE_PAIRS.items() for memory in memories]
)
def test_describe_reads_back_to_the_same_limits(limits: Limits) -> None:
    unlimited = caps(max_cpu=16384, max_memory=122880)
    described = limits.describe()
    assert resolve_limits(described["cpu"], described["memory"], settings=unlimited) == limits


def test_describe_is_what_a_client_would_write() -> None:
    assert Limits(512, 1024).describe() == {"cpu": "0.5", "memory": "1G"}
    assert Limits(256, 512).describe() == {"cpu": "0.25", "memory": "512M"}
    assert Limits(16384, 122880).describe() == {"cpu": "16", "memory": "120G"}
