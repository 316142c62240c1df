"""The statuses of builds and stagings: one type each, shared by the store, the services and the
``Builder`` port (which imports nothing else of the domain)."""

from __future__ import annotations

from enum import StrEnum


class BuildStatus(StrEnum):
    """A build, as the store keeps it and as a ``Builder`` reports it."""

    pending = "pending"
    completed = "completed"
    failed = "failed"


class StagingStatus(StrEnum):
    """A staged environment: its task definition (or local directory) registered or not."""

    pending = "pending"
    completed = "completed"
    failed = "failed"
