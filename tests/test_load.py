"""80 concurrent launches (32 at a time) against a pool of 20, over real HTTP with moto's server behind."""

from __future__ import annotations

from typing import Any

from chalicelib.context import set_services
from chalicelib.models import ImageRegister, StagingCreate
from tests.load import api_over_http, burst, counted_vs_items, fill_pool, moto_over_http, new_world

POOL, LAUNCHES, CAP = 20, 80, 48


def test_a_burst_never_hands_out_a_server_twice_and_counts_stay_exact(dns: Any) -> None:
    with moto_over_http():
        world = new_world(max_servers_per_environment=CAP, max_pool_size=POOL)
        try:
            world.services.builds.register_image(ImageRegister.model_validate(
                {"image-name": "scipy", "image": "jupyter/scipy-notebook:2024-10-07"}))
            world.services.stagings.create(StagingCreate.model_validate(
                {"image-name": "scipy", "environment-name": "burst", "limits": {"cpu": "0.25", "memory": "0.5G"}}))
            fill_pool(world, "burst", POOL)
            with api_over_http() as api:
                result = burst(api, "burst", LAUNCHES, workers=32)

            assert result.statuses[201] == POOL  # every pooled server handed out, each exactly once
            assert result.statuses[202] == CAP - POOL  # then cold launches up to the environment's cap
            assert result.statuses[429] == LAUNCHES - CAP  # and a clear "limit" for the rest
            assert len(set(result.ids)) == len(result.ids) == CAP
            assert len(set(result.locations)) == len(result.locations) == POOL
            counters, from_items = counted_vs_items(world, "burst")
            assert counters == from_items == {"available": 0, "starting": 0, "running": CAP, "live": CAP}
        finally:
            set_services(None)
