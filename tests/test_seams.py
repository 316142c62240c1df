"""The seams ``backends/base.py`` promises, checked in the source: what lies on the far side of a port
is read only by the adapter that made it."""

from __future__ import annotations

import re
from pathlib import Path

CHALICELIB = Path(__file__).resolve().parent.parent / "chalicelib"
ADAPTERS = CHALICELIB / "backends"
# A handle read the way only its adapter may: handle["task_arn"], handle.get("pid"), ...
LOOKS_INSIDE = re.compile(r"handle\s*(\[|\.get\s*\(|\.items\s*\(|\.keys\s*\()")


def test_only_adapters_look_inside_a_handle() -> None:
    outside = [path for path in CHALICELIB.rglob("*.py") if ADAPTERS not in path.parents]
    assert len(outside) > 20  # services, store, routes and the app's own modules
    readers = [f"{path.relative_to(CHALICELIB)}:{number}: {line.strip()}"
               for path in outside for number, line in enumerate(path.read_text().splitlines(), 1)
               if LOOKS_INSIDE.search(line)]
    assert readers == []  # everyone else compares and indexes handles by handle_id()


def test_the_pattern_catches_the_reads_it_forbids() -> None:
    for read in ('arn = task.handle["task_arn"]', 'server.handle.get("pid", "")', "for k in handle.keys():"):
        assert LOOKS_INSIDE.search(read), read
    assert not LOOKS_INSIDE.search("task_id = handle_id(task.handle)")
