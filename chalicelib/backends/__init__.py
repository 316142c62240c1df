"""Adapters behind the ports in ``base``, chosen here, once, from the settings: nothing else asks
which backend this is to decide what to build with, what to run on or how to read git."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.backends.base import Builder, RefResolver, Router, Spawner, Stager
from chalicelib.backends.routers import router_for
from chalicelib.config import Settings


@dataclass(frozen=True)
class Adapters:
    builder: Builder
    stager: Stager
    spawner: Spawner
    resolver: RefResolver
    router: Router


def adapters_for(settings: Settings) -> Adapters:
    if settings.backend == "aws":
        from chalicelib.backends.aws import AwsBuilder, AwsSpawner, AwsStager
        from chalicelib.resolver import GitHttpResolver

        return Adapters(AwsBuilder(settings), AwsStager(settings), AwsSpawner(settings), GitHttpResolver(),
                        router_for(settings))
    if settings.backend == "local":
        from chalicelib.backends.local import LocalBuilder, LocalResolver, LocalSpawner, LocalStager

        # LocalResolver: the git binary, so local paths and file:// URLs too.
        return Adapters(LocalBuilder(settings), LocalStager(), LocalSpawner(settings), LocalResolver(),
                        router_for(settings))
    raise ValueError(f"backend '{settings.backend}' is not available yet")
