"""The ``limits`` of a staging: what people write for cpu and memory, turned into a Fargate pair.

Parsing is lenient (the forms of k8s manifests, docker flags and the Fargate console all work)
and validation is strict: Fargate runs only certain (cpu, memory) combinations, so every
refusal names the sizes that would have been accepted.

Units: cpu in CPU units (1024 = 1 vCPU), memory in MiB. "G"/"GB"/"Gi" all mean GiB and
"M"/"MB"/"Mi" all mean MiB, because that is how the Fargate console and docker use them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

from chalicelib import errors
from chalicelib.config import Settings

RawLimit = str | int | float

UNITS_PER_VCPU = 1024
MIB_PER_GIB = 1024
# A bare cpu number up to MAX_BARE_VCPU is vCPU ("2"); from MIN_BARE_UNITS up it is CPU units
# ("256"). Nothing in between is a Fargate size either way, so guessing would only mislead.
MAX_BARE_VCPU = 16
MIN_BARE_UNITS = 128

CPU_FORMS = 'vCPU as 0.5, "1" or "2 vCPU", millicores as "500m", or CPU units (1024 = 1 vCPU) as 256 or "1024"'
MEMORY_FORMS = 'MiB as 2048 or "2048", or with a unit: "512M", "512Mi", "512MB", "1G", "1.5Gi", "4GB"'


def _sizes(first: int, last: int, step: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1, step))


# cpu units -> the memory sizes (MiB) Fargate accepts with it (Linux tasks).
FARGATE_PAIRS: Mapping[int, tuple[int, ...]] = MappingProxyType(
    {
        256: (512, 1024, 2048),
        512: _sizes(1024, 4096, 1024),
        1024: _sizes(2048, 8192, 1024),
        2048: _sizes(4096, 16384, 1024),
        4096: _sizes(8192, 30720, 1024),
        8192: _sizes(16384, 61440, 4096),
        16384: _sizes(32768, 122880, 8192),
    }
)

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_CPU_PATTERN = re.compile(rf"({_NUMBER})\s*(m|vcpus?|cpus?)?", re.IGNORECASE)
_MEMORY_PATTERN = re.compile(rf"({_NUMBER})\s*([mg]i?b?)?", re.IGNORECASE)
# The string forms, as the OpenAPI document states them (JSON Schema patterns have no flags, so
# cases are spelled out; a sign is left out, since only positive sizes are accepted).
_POSITIVE = r"(?:\d+(?:\.\d*)?|\.\d+)"
CPU_TEXT_PATTERN = rf"^\s*{_POSITIVE}\s*(?:[mM]|[vV]?[cC][pP][uU][sS]?)?\s*$"
MEMORY_TEXT_PATTERN = rf"^\s*{_POSITIVE}\s*(?:[mMgG][iI]?[bB]?)?\s*$"


@dataclass(frozen=True)
class Limits:
    """A valid Fargate pair: ``cpu`` in CPU units, ``memory`` in MiB."""

    cpu: int
    memory: int

    def describe(self) -> dict[str, str]:
        """The limits as a client would write them, e.g. ``{"cpu": "0.5", "memory": "1G"}``.

        Strings, like the seeds' ``limits``, and in forms ``parse_cpu``/``parse_memory`` read
        back to the same numbers, so a Thebe developer can copy them into the next request."""
        return {"cpu": format_vcpu(self.cpu), "memory": format_memory(self.memory)}


def format_vcpu(units: int) -> str:
    """CPU units as a vCPU number: 512 -> "0.5", 2048 -> "2"."""
    return format((Decimal(units) / UNITS_PER_VCPU).normalize(), "f")


def format_memory(mib: int) -> str:
    """MiB in the shortest exact form: 1024 -> "1G", 512 -> "512M"."""
    return f"{mib // MIB_PER_GIB}G" if mib % MIB_PER_GIB == 0 else f"{mib}M"


def _show(value: object) -> str:
    """A value as the client sent it (JSON spelling: "abc", true, 1.5)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _split(value: object, pattern: re.Pattern[str], *, field: str, forms: str) -> tuple[Fraction, str]:
    """(number, lower-cased unit or "") from a raw limit; Invalid if it is not one of ``forms``."""
    unparsable = errors.Invalid(f"{field} {_show(value)} is not understood; accepted forms: {forms}")
    # bool is an int to Python, but `"cpu": true` is a mistake, not 1 vCPU.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise unparsable
    if isinstance(value, float) and not math.isfinite(value):
        raise unparsable
    if isinstance(value, str):
        match = pattern.fullmatch(value.strip())
        if match is None:
            raise unparsable
        number, unit = Fraction(match.group(1)), (match.group(2) or "").lower()
    else:
        # repr() keeps 0.1 as "0.1" rather than the binary fraction float() holds.
        number, unit = Fraction(repr(value)), ""
    if number <= 0:
        raise errors.Invalid(f"{field} {_show(value)} must be greater than zero")
    return number, unit


def parse_cpu(value: RawLimit) -> int:
    """CPU units (1024 = 1 vCPU) from "0.5", 0.25, "2 vCPU", "500m", 1024, "256"..."""
    number, unit = _split(value, _CPU_PATTERN, field="cpu", forms=CPU_FORMS)
    if unit == "m":
        units = number * UNITS_PER_VCPU / 1000
    elif unit or number <= MAX_BARE_VCPU:
        units = number * UNITS_PER_VCPU
    elif number >= MIN_BARE_UNITS:
        units = number
    else:
        raise errors.Invalid(
            f"cpu {_show(value)} is ambiguous: a bare number up to {MAX_BARE_VCPU} means vCPU and from "
            f'{MIN_BARE_UNITS} up means CPU units (1024 = 1 vCPU); add a unit ("2 vCPU") or give units (2048)'
        )
    if units.denominator != 1:
        raise errors.Invalid(f"cpu {_show(value)} is not a whole number of CPU units (1 vCPU = 1024 units)")
    return int(units)


def parse_memory(value: RawLimit) -> int:
    """MiB from "1G", "1.5Gi", "512MB", "4g", 2048, "2048"..."""
    number, unit = _split(value, _MEMORY_PATTERN, field="memory", forms=MEMORY_FORMS)
    mib = number * MIB_PER_GIB if unit.startswith("g") else number
    if mib.denominator != 1:
        raise errors.Invalid(f"memory {_show(value)} is not a whole number of MiB")
    return int(mib)


def resolve_limits(cpu: RawLimit | None, memory: RawLimit | None, *, settings: Settings) -> Limits:
    """The Fargate pair for a staging's ``limits``; the side left out is filled in.

    Nothing given -> the operator's defaults. Only cpu -> its smallest memory. Only memory ->
    the smallest cpu that allows it. Raises errors.Invalid naming what would be accepted."""
    if cpu is None and memory is None:
        return Limits(cpu=settings.default_cpu, memory=settings.default_memory)
    cpu_units = None if cpu is None else parse_cpu(cpu)
    memory_mib = None if memory is None else parse_memory(memory)
    if cpu_units is not None:
        _check_cpu(cpu_units, settings)
    if memory_mib is not None:
        _check_memory_cap(memory_mib, settings)
    if cpu_units is None:
        assert memory_mib is not None
        return Limits(cpu=_smallest_cpu_for(memory_mib, settings), memory=memory_mib)
    if memory_mib is None:
        return Limits(cpu=cpu_units, memory=FARGATE_PAIRS[cpu_units][0])
    _check_pair(cpu_units, memory_mib, settings)
    return Limits(cpu=cpu_units, memory=memory_mib)


def allowed_cpus(settings: Settings) -> list[int]:
    """Fargate cpus within the caps (with at least one memory size within the memory cap)."""
    return [
        cpu for cpu, memories in FARGATE_PAIRS.items() if cpu <= settings.max_cpu and memories[0] <= settings.max_memory
    ]


def allowed_memories(cpu: int, settings: Settings) -> list[int]:
    return [memory for memory in FARGATE_PAIRS.get(cpu, ()) if memory <= settings.max_memory]


def _vcpu_list(cpus: list[int]) -> str:
    return ", ".join(format_vcpu(cpu) for cpu in cpus) + " vCPU"


def _memory_list(memories: list[int]) -> str:
    return ", ".join(format_memory(memory) for memory in memories)


def _check_cpu(cpu: int, settings: Settings) -> None:
    if cpu not in FARGATE_PAIRS:
        raise errors.Invalid(
            f"cpu {format_vcpu(cpu)} vCPU ({cpu} units) is not a Fargate size; "
            f"valid cpu values are {_vcpu_list(allowed_cpus(settings))}"
        )
    if cpu > settings.max_cpu:
        raise errors.Invalid(
            f"cpu {format_vcpu(cpu)} vCPU is over this deployment's cap of {format_vcpu(settings.max_cpu)} vCPU"
        )
    smallest = FARGATE_PAIRS[cpu][0]
    if smallest > settings.max_memory:
        raise errors.Invalid(
            f"cpu {format_vcpu(cpu)} vCPU needs at least {format_memory(smallest)} of memory, over this "
            f"deployment's memory cap of {format_memory(settings.max_memory)}"
        )


def _check_memory_cap(memory: int, settings: Settings) -> None:
    if memory > settings.max_memory:
        raise errors.Invalid(
            f"memory {format_memory(memory)} is over this deployment's cap of {format_memory(settings.max_memory)}"
        )


def _smallest_cpu_for(memory: int, settings: Settings) -> int:
    fitting = [cpu for cpu, memories in FARGATE_PAIRS.items() if memory in memories]
    if not fitting:
        sizes = sorted({size for cpu in allowed_cpus(settings) for size in allowed_memories(cpu, settings)})
        raise errors.Invalid(
            f"memory {format_memory(memory)} is not a Fargate size; valid memory sizes are {_memory_list(sizes)}"
        )
    cpu = min(fitting)
    if cpu > settings.max_cpu:
        raise errors.Invalid(
            f"memory {format_memory(memory)} needs at least {format_vcpu(cpu)} vCPU, over this "
            f"deployment's cpu cap of {format_vcpu(settings.max_cpu)} vCPU"
        )
    return cpu


def _check_pair(cpu: int, memory: int, settings: Settings) -> None:
    if memory not in FARGATE_PAIRS[cpu]:
        raise errors.Invalid(
            f"memory {format_memory(memory)} does not fit cpu {format_vcpu(cpu)} vCPU: "
            f"cpu {format_vcpu(cpu)} vCPU allows memory {_memory_list(allowed_memories(cpu, settings))}"
        )
