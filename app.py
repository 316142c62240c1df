"""binderless: wiring only. Routes live in chalicelib/routes; the domain in chalicelib/services."""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice, CloudWatchEvent, CORSConfig, Rate

from chalicelib.config import get_settings
from chalicelib.context import get_services
from chalicelib.logs import configure_logging
from chalicelib.origins import ALLOW_HEADERS, EXPOSE_HEADERS, MAX_AGE
from chalicelib.routes.builds import builds
from chalicelib.routes.compat import compat
from chalicelib.routes.deployments import deployments
from chalicelib.routes.meta import meta
from chalicelib.routes.middleware import errors_as_json, guard_origins
from chalicelib.routes.pages import pages
from chalicelib.routes.pools import pools
from chalicelib.routes.stagings import stagings
from chalicelib.routes.v1 import v1

app = Chalice(app_name="binderless")
# Thebe-style pages call the API from other origins; set before the blueprints so every route gets it.
# API Gateway answers their preflights from this; `guard_origins` narrows it to the allowed origins.
app.api.cors = CORSConfig(allow_origin="*", allow_headers=list(ALLOW_HEADERS), expose_headers=list(EXPOSE_HEADERS),
                          max_age=MAX_AGE)
logger = configure_logging()
# Read at import: `chalice package`/`deploy` import this module with the stage's variables set,
# so the event rules match only this stage's CodeBuild project and ECS cluster.
settings = get_settings()

for blueprint in (builds, stagings, deployments, pools, meta, compat, v1, pages):
    app.register_blueprint(blueprint)


for middleware in (errors_as_json, guard_origins):
    app.register_middleware(middleware, "http")


@app.on_cw_event({"source": ["aws.codebuild"], "detail-type": ["CodeBuild Build State Change"],
                  "detail": {"project-name": [settings.codebuild_project]}}, name="build_events")
def on_build_event(event: CloudWatchEvent) -> dict[str, Any]:
    services = get_services()
    parsed = services.builds.builder.from_event(event.detail)
    build = services.builds.apply_event(parsed) if parsed else None
    return {"image-name": build.image_name, "status": build.status.value} if build else {"ignored": True}


@app.on_cw_event({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
                  "detail": {"clusterArn": [{"suffix": f":cluster/{settings.cluster}"}]}}, name="task_events")
def on_task_event(event: CloudWatchEvent) -> dict[str, Any]:
    services = get_services()
    task = services.servers.spawner.from_event(event.detail)
    server = services.servers.apply_event(task) if task else None
    return {"id": server.id, "status": server.state.value} if server else {"ignored": True}


@app.schedule(Rate(1, unit=Rate.MINUTES), name="keeper")
def keep_pools(event: CloudWatchEvent) -> dict[str, int]:
    """Every minute: reconcile what fell due, refill and trim pools, one run at a time (a lease that
    lasts this run's remaining time, so a run stopped at its timeout does not hold it for long)."""
    context: Any = event.context
    return get_services().pools.keep(context.get_remaining_time_in_millis() / 1000 if context else None)
