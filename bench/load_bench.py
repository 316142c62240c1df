"""200 concurrent launches against a pool of 50 over real HTTP (moto's server behind): figures."""

from __future__ import annotations

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def main() -> None:
    from chalicelib.models import ImageRegister, StagingCreate
    from chalicelib.repository_urls import set_host_resolver
    from tests.load import api_over_http, burst, counted_vs_items, fill_pool, moto_over_http, new_world

    set_host_resolver(lambda host: ["140.82.112.3"])
    with moto_over_http():
        world = new_world(max_servers_per_environment=120, max_pool_size=50)
        world.services.builds.register_image(ImageRegister.model_validate({"image-name": "img", "image": "x/y:1"}))
        world.services.stagings.create(StagingCreate.model_validate(
            {"image-name": "img", "environment-name": "burst", "limits": {"cpu": "0.25", "memory": "0.5G"}}))
        fill_pool(world, "burst", 50)
        with api_over_http() as api:
            result = burst(api, "burst", 200, workers=32)
        latencies = sorted(result.latencies)
        counters, items = counted_vs_items(world, "burst")
        print(f"200 launches, 32 threads, pool 50, environment cap 120: {result.seconds:.1f} s")
        print(f"  replies: {dict(sorted(result.statuses.items()))}")
        print(f"  distinct ids {len(set(result.ids))} of {len(result.ids)}, "
              f"distinct locations {len(set(result.locations))} of {len(result.locations)}")
        print(f"  latency median {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {latencies[int(0.95 * len(latencies)) - 1] * 1000:.0f} ms")
        print(f"  pool counters {counters} == counted from items {items}: {counters == items}")


if __name__ == "__main__":
    main()
