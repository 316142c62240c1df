"""Claims of one pool take turns within a process, and hand what their query found to the next.

A Lambda serves one request at a time, so on AWS nobody ever waits here. Local mode serves every
request in one process, where claimers of one pool that query at once only collide (measured: 24
transactions for a burst of 10, each as dear as one that succeeds). Taking turns, each claim sees
what the one before took.

And a claim whose turn ends while another claimer waits hands it the candidates its query found and
it did not take: the next claim tries those first instead of asking again, so a burst of N claims
costs one query, not N. Handed only to a claimer already waiting, they are at most one claim old; a
candidate taken meanwhile (by the schedule, another process) fails its transaction's condition like
any server another claimer got, and its claimer then queries as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

HANDED_ON_FOR = 1.0  # seconds: candidates older than this are not worth a transaction that may fail


@dataclass
class Turn:
    """One environment's turn: its lock, how many claimers wait for it, what was handed on."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    _left: list[dict[str, Any]] = field(default_factory=list)
    _left_at: float = 0.0

    def handed_on(self) -> list[dict[str, Any]]:
        """The items the claim before left for this one (once), or [] when there are none or they are old."""
        items, self._left = self._left, []
        return items if time.monotonic() - self._left_at < HANDED_ON_FOR else []

    def hand_on(self, items: list[dict[str, Any]]) -> None:
        """Leave ``items`` (query results not taken) for the next claimer, if one is waiting already."""
        self._left, self._left_at = (items, time.monotonic()) if self.waiting else ([], 0.0)


class Turns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, Turn] = {}

    @contextmanager
    def of(self, environment_name: str) -> Iterator[Turn]:
        """Wait for ``environment_name``'s turn, then hold it."""
        with self._lock:
            turn = self._turns.setdefault(environment_name, Turn())
            turn.waiting += 1
        with turn.lock:
            with self._lock:
                turn.waiting -= 1
            yield turn


TURNS = Turns()
