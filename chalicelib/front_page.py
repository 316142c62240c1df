"""``GET /``: a launch form for people, an index of the API for programs.

Which one a request gets is content negotiation on ``Accept``: the HTML form when the media range the
client prefers (highest ``q``, then first listed) is ``text/html`` or ``application/xhtml+xml``, as a
browser's navigation asks; JSON for everything else, curl's ``*/*``, ``application/json`` and no
``Accept`` at all included. BinderHub answers browsers with HTML the same way.

Links in both are paths under the base path the request came in on (``/api`` behind API Gateway's
stage), never built from ``Host``: the page's script puts its own origin in front of them, so what a
reader copies names the address they are looking at.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from pydantic import BaseModel, Field

from chalicelib import __version__
from chalicelib.front_page_html import PAGE, SCRIPT, STYLE
from chalicelib.page_headers import fill, page_headers
from chalicelib.providers import repoproviders

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# A stage name or a custom domain's base path mapping: anything else is not used as a base at all.
BASE_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")
DESCRIPTION = "Temporary Jupyter environments from Git repositories"


class IndexLinks(BaseModel):
    openapi: str = Field(description="The OpenAPI document of every route.", examples=["/api/openapi.json"])
    health: str = Field(description="Liveness, in BinderHub's shape.")
    versions: str = Field(description="Versions of this deployment and its API.")
    repoproviders: str = Field(description="The providers a launch link may name (BinderHub's).")
    badge: str = Field(description="The badge image that README files link to a launch with.")


class LaunchLinks(BaseModel):
    page: str = Field(description="The launch page for people: BinderHub's /v2/ link (template).",
                      examples=["/api/v2/{provider}/{spec}"])
    stream: str = Field(description="BinderHub's launch event stream, for programs (template).",
                        examples=["/api/build/{provider}/{spec}"])


class ApiIndex(BaseModel):
    """What ``GET /`` answers a program: where the API's documents and launch links are."""

    name: str
    version: str
    description: str
    links: IndexLinks
    launch: LaunchLinks
    providers: list[str] = Field(description="The provider ids a launch link may name.")


def wants_html(accept: str | None) -> bool:
    """Whether the client prefers an HTML page to JSON (see the module's docstring)."""
    ranges: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept or "").split(",")):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranges.append((-quality, position, media.lower()))
    return bool(ranges) and min(ranges)[2] in HTML_TYPES


def base_path(context: dict[str, Any]) -> str:
    """The path the API is served under: ``/api`` for API Gateway's stage (the request's path minus the
    route's, as in GET /openapi.json), "" at a root; "" too for anything that is not a plain path."""
    path, resource = str(context.get("path", "")), str(context.get("resourcePath", ""))
    base = path.removesuffix(resource) if resource != "/" else path.rstrip("/")
    return base if BASE_PATH.fullmatch(base) else ""


def index(base: str) -> dict[str, Any]:
    links = {name: f"{base}{path}" for name, path in (
        ("openapi", "/openapi.json"), ("health", "/health"), ("versions", "/versions"),
        ("repoproviders", "/api/repoproviders"), ("badge", "/badge_logo.svg"))}
    return ApiIndex(name="binderless", version=__version__, description=DESCRIPTION, links=IndexLinks(**links),
                    launch=LaunchLinks(page=f"{base}/v2/{{provider}}/{{spec}}",
                                       stream=f"{base}/build/{{provider}}/{{spec}}"),
                    providers=[provider["id"] for provider in repoproviders()]).model_dump()


def page(base: str) -> str:
    """The launch form. Its script reads the providers and the base path from a JSON data block, which
    is never executed, so the script itself is constant and allowed by its hash."""
    config = json.dumps({"base": base, "providers": repoproviders()})
    # Nothing in the data block can end it or open a comment: no "<" (nor ">", "&") at all.
    config = config.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return fill(PAGE, SCRIPT=SCRIPT, STYLE=STYLE, BASE=html.escape(base), VERSION=html.escape(__version__),
                CONFIG=config)


def headers() -> dict[str, str]:
    return {**page_headers((SCRIPT,), (STYLE,)), "Vary": "Accept"}
