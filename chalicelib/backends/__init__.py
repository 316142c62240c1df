"""Adapters behind the ports in ``base``, chosen once from the settings."""

from __future__ import annotations

from chalicelib.backends.base import Builder, Spawner, Stager
from chalicelib.config import Settings


def adapters_for(settings: Settings) -> tuple[Builder, Stager, Spawner]:
    if settings.backend == "aws":
        from chalicelib.backends.aws import AwsBuilder, AwsSpawner, AwsStager

        return AwsBuilder(settings), AwsStager(settings), AwsSpawner(settings)
    if settings.backend == "local":
        from chalicelib.backends.local import LocalBuilder, LocalSpawner, LocalStager

        return LocalBuilder(settings), LocalStager(), LocalSpawner(settings)
    raise ValueError(f"backend '{settings.backend}' is not available yet")
