"""Pages for people: ``GET /`` (the launch form, or the API's index for programs), the badge, and
BinderHub's ``/v2/{provider}/{spec}`` launch page, on AWS as locally.

The spec of a ``/v2/`` link has slashes (``gh/org/repo/ref/with/slashes``): the route's last parameter
is API Gateway's greedy ``{proxy+}``. Chalice 1.34 passes such a route to API Gateway as it is and
dispatches it by its resource path, but does not give the view its value (``_PARAMS`` reads only
``{name}``) and its local gateway matches it as one segment; ``launch_page.locate`` reads the spec
from the request either way.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.context import get_services
from chalicelib.errors import NotFound
from chalicelib.gone_page import METHODS
from chalicelib.routes.api import endpoint, error_reply, reply

pages = Blueprint(__name__)


@pages.route("/", methods=["GET"])
@endpoint(pages, "index")
def index() -> Response:
    from chalicelib import front_page

    request = pages.current_request
    base = front_page.base_path(request.context or {})
    if front_page.wants_html(request.headers.get("accept")):
        return Response(body=front_page.page(base), headers={**front_page.headers()}, status_code=200)
    response = reply(front_page.index(base))
    response.headers["Vary"] = "Accept"
    return response


@pages.route("/badge_logo.svg", methods=["GET"])
@endpoint(pages, "badge")
def badge() -> Response:
    from chalicelib.badge import HEADERS, SVG

    return Response(body=SVG, headers={**HEADERS}, status_code=200)


@pages.route("/v2/{provider}/{proxy+}", methods=["GET"])
@endpoint(pages, "launch")
def launch(provider: str) -> Response:
    from chalicelib import launch_page
    from chalicelib.providers import PROVIDERS

    if provider not in PROVIDERS:
        raise NotFound(f"Unknown provider: a launch link names one of {', '.join(PROVIDERS)}.")  # (no echo)
    request = pages.current_request
    base, spec = launch_page.locate(str((request.context or {}).get("path", "")), provider, request.uri_params or {})
    if not spec:
        raise NotFound("A launch link names a repository after the provider, e.g. /v2/gh/org/repo/HEAD.")
    query = {name: request.query_params[name] for name in launch_page.PATH_PARAMETERS
             if request.query_params and request.query_params.get(name)}
    body, headers = launch_page.rendered(provider, spec, query, stream_prefix=base)
    return Response(body=body, headers={**headers}, status_code=200)


@pages.route("/user/{proxy+}", methods=list(METHODS))
@endpoint(pages, "gone")
def gone() -> Response:
    """The proxy's default route: a path under /user/ that no live server's route matches."""
    from chalicelib import front_page, gone_page

    request = pages.current_request
    path = gone_page.server_path(str((request.context or {}).get("path", "")), request.uri_params or {})
    ended = get_services().deployments.ended(gone_page.route_of(path))
    if request.method == "GET" and front_page.wants_html(request.headers.get("accept")):
        body, headers = gone_page.page(path, ended)
        return Response(body=body, headers={**headers, "Vary": "Accept"}, status_code=410)
    response = error_reply(gone_page.error(ended), "gone")
    response.headers["Vary"] = "Accept"
    return response
