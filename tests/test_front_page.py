"""Pages for people: ``GET /`` (the launch form for browsers, the API's index for programs), the badge,
and the ``/v2/`` launch page served by the app itself (as API Gateway calls it, slashes in the spec).
The last test fills the form in Chromium in local mode and lands on a server."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib.page_headers import source_hash
from tests.conftest import World, body
from tests.local_mode import LocalMode, local_mode
from tests.local_repo import make_repository
from tests.test_browser import ADMIN, browser  # noqa: F401 (a fixture)

CHROME_NAVIGATION = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
HOSTILE = '"><script>alert(1)</script><!--'


def gateway_event(path: str, resource: str, accept: str = CHROME_NAVIGATION, parameters: dict[str, str] | None = None,
                  query: dict[str, list[str]] | None = None, host: str = "abc.execute-api.eu-west-1.amazonaws.com",
                  ) -> dict[str, Any]:
    """A GET as API Gateway hands it to the function: ``path`` with the stage in front, ``resource`` the route."""
    return {"requestContext": {"httpMethod": "GET", "resourcePath": resource, "path": path, "stage": "api",
                               "identity": {"sourceIp": "192.0.2.1"}},
            "headers": {"accept": accept, "host": host}, "pathParameters": parameters or {},
            "multiValueQueryStringParameters": query, "body": None, "stageVariables": {}}


def config_of(page: str) -> dict[str, Any]:
    """The JSON data block the front page's script reads."""
    block = re.search(r'<script type="application/json" id="config">(.*?)</script>', page, re.S)
    assert block is not None
    return dict(json.loads(block.group(1)))


def inline(page: str, element: str) -> list[str]:
    """The contents of the page's executable inline ``<script>`` (or ``<style>``) elements."""
    return re.findall(rf"<{element}>(.*?)</{element}>", page, re.S)


@pytest.mark.parametrize(("accept", "html"), [
    (CHROME_NAVIGATION, True),
    ("application/xhtml+xml", True),
    ("application/json;q=0.5, text/html", True),
    ("*/*", False),  # curl
    ("application/json", False),
    (None, False),
    ("application/json, text/html", False),
    ("text/html;q=0.4, application/json", False),
    ("text/html;q=0", False),
])
def test_a_browser_gets_the_launch_form_and_a_program_gets_the_index(client: Any, accept: str | None,
                                                                     html: bool) -> None:
    reply = client.http.get("/", headers={"Accept": accept} if accept else {})
    assert reply.status_code == 200
    assert reply.headers["Vary"] == "Accept"  # a cache must not hand a browser's page to curl
    if html:
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<select id="provider"' in reply.body.decode()
    else:
        assert reply.headers["Content-Type"] == "application/json"
        assert body(reply)["name"] == "binderless"


def test_the_index_links_work_and_names_the_launch_links(client: Any) -> None:
    index = body(client.http.get("/", headers={"Accept": "*/*"}))
    assert index["launch"] == {"page": "/v2/{provider}/{spec}", "stream": "/build/{provider}/{spec}"}
    assert index["providers"] == [provider["id"] for provider in body(client.http.get("/api/repoproviders"))]
    assert set(index["links"]) == {"openapi", "health", "versions", "repoproviders", "badge"}
    for name, path in index["links"].items():
        assert client.http.get(path).status_code == 200, name
    assert index["version"] == body(client.http.get("/versions"))["binderless"]


def test_the_form_offers_the_providers_of_repoproviders_and_needs_no_other_site(client: Any) -> None:
    page = client.http.get("/", headers={"Accept": CHROME_NAVIGATION}).body.decode()
    assert config_of(page) == {"base": "", "providers": body(client.http.get("/api/repoproviders"))}
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no CDN: scripts, styles, fonts, images
    assert "<link" not in page and "@import" not in page
    for label in ('for="provider"', 'for="repository"', 'for="ref"', 'for="path"', 'for="link"', 'for="markdown"'):
        assert label in page, label  # every field has its label


def test_pages_allow_only_their_own_inline_script_and_style(client: Any) -> None:
    front = client.http.get("/", headers={"Accept": CHROME_NAVIGATION})
    launch = client.http.get(f"/v2/gh/{quote('org/repo/main', safe='')}")
    for reply in (front, launch):
        page, headers = reply.body.decode(), reply.headers
        assert (headers["Cache-Control"], headers["X-Content-Type-Options"], headers["Referrer-Policy"]) == (
            "no-store", "nosniff", "no-referrer")
        policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'none'" and "unsafe" not in headers["Content-Security-Policy"]
        assert policy["script-src"].split() == [source_hash(script) for script in inline(page, "script")]
        assert policy["style-src"].split() == [source_hash(style) for style in inline(page, "style")]
        assert " style=" not in page  # style attributes would need 'unsafe-hashes'


def test_behind_api_gateways_stage_the_links_carry_its_path(world: World) -> None:
    from app import app

    index = app(gateway_event("/api/", "/", accept="*/*"), None)
    assert json.loads(index["body"])["links"]["openapi"] == "/api/openapi.json"
    page = app(gateway_event("/api/", "/"), None)
    assert config_of(page["body"])["base"] == "/api"
    assert 'href="/api/openapi.json"' in page["body"]


def test_a_hostile_stage_path_host_or_query_never_becomes_markup(world: World) -> None:
    from app import app

    for path in (f"/{HOSTILE}/", "/api/javascript:alert(1)//"):
        page = app(gateway_event(path, "/", host=HOSTILE, query={"x": [HOSTILE]}), None)["body"]
        assert page.count("<script") == 2 and "alert(1)" not in page and HOSTILE not in page
        assert config_of(page)["base"] == ""  # not a path a stage or base path mapping can have: not used
        index = json.loads(app(gateway_event(path, "/", accept="*/*", host=HOSTILE), None)["body"])
        assert index["links"]["openapi"] == "/openapi.json"

    launch = app(gateway_event(f"/api/v2/gh/org/{HOSTILE}/main", "/v2/{provider}/{proxy+}",
                               parameters={"provider": "gh", "proxy": f"org/{HOSTILE}/main"},
                               query={"urlpath": [HOSTILE]}, host=HOSTILE), None)["body"]
    assert launch.count("<script") == 1 and "<script>alert" not in launch and "<!--" not in launch
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in launch  # the title shows the link as text


def test_a_v2_link_with_slashes_is_served_as_api_gateway_routes_it(world: World) -> None:
    from app import app

    reply = app(gateway_event("/api/v2/gh/org/repo/ref/with/slashes", "/v2/{provider}/{proxy+}",
                              parameters={"provider": "gh", "proxy": "org/repo/ref/with/slashes"},
                              query={"labpath": ["notebooks/a.ipynb"]}), None)
    assert reply["statusCode"] == 200 and reply["headers"]["Content-Type"] == "text/html; charset=utf-8"
    script, = inline(reply["body"], "script")
    config = json.loads(re.search(r"const config = (.*);", script).group(1))  # type: ignore[union-attr]
    # The stream on the same stage, where the streaming route serves it; BinderHub's labpath on the server.
    assert config["stream"] == "/api/build/gh/org/repo/ref/with/slashes"
    assert config["path"] == "lab/tree/notebooks/a.ipynb"

    escaped = "https%3A%2F%2Fexample.org%2Fr"  # the spec keeps its escapes, whatever the parameter says
    reply = app(gateway_event(f"/api/v2/git/{escaped}/main", "/v2/{provider}/{proxy+}",
                              parameters={"provider": "git", "proxy": "https://example.org/r/main"}), None)
    assert f'"/api/build/git/{escaped}/main"' in reply["body"]


def test_an_unknown_provider_is_a_404_in_json_that_repeats_nothing(client: Any, world: World) -> None:
    from app import app

    reply = client.http.get("/v2/svn/some%2Fthing")
    assert (reply.status_code, body(reply)["error"]) == (404, "NotFound")
    assert "gh, gl, gist, git" in body(reply)["message"]
    hostile = app(gateway_event(f"/api/v2/{HOSTILE}/x", "/v2/{provider}/{proxy+}",
                                parameters={"provider": HOSTILE, "proxy": "x"}), None)
    assert hostile["statusCode"] == 404 and "script" not in hostile["body"]


def test_the_v2_route_is_in_the_api_gateway_definition_chalice_deploys() -> None:
    from chalice.deploy.swagger import SwaggerGenerator

    from app import app

    arn = "arn:aws:lambda:eu-west-1:123456789012:function:binderless-api"
    paths = SwaggerGenerator("eu-west-1", {"api_handler_arn": arn}).generate_swagger(app)["paths"]
    for path in ("/", "/badge_logo.svg", "/v2/{provider}/{proxy+}"):
        assert paths[path]["get"]["x-amazon-apigateway-integration"]["type"] == "aws_proxy", path


def test_the_badge_is_an_svg_image_cacheable_for_a_day(client: Any) -> None:
    reply = client.http.get("/badge_logo.svg", headers={"Accept": "image/avif,image/webp,image/svg+xml,*/*;q=0.8"})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "image/svg+xml"
    assert "max-age=86400" in reply.headers["Cache-Control"] and "public" in reply.headers["Cache-Control"]
    svg = ElementTree.fromstring(reply.body)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("aria-label") == "launch: binder"
    words = [text.text for text in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "launch" in words and "binder" in words
    assert svg.get("height") == "20" and int(svg.get("width") or 0) > 100


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with local_mode(tmp_path_factory.mktemp("front-local"), ADMIN, BINDERLESS_LAUNCH_RATE_LIMIT="0") as mode:
        yield mode


def test_the_form_builds_the_link_and_badge_and_launch_lands_on_the_server(
        browser: Any, local: LocalMode, tmp_path_factory: pytest.TempPathFactory) -> None:  # noqa: F811
    repository = tmp_path_factory.mktemp("front-repositories") / "answer"
    make_repository(repository)
    url = repository.as_uri()
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=local.base)
    page = context.new_page()
    try:
        page.goto(local.base + "/")
        page.select_option("#provider", "git")
        page.fill("#repository", url)
        page.fill("#path", "api/contents/hello.py")
        page.check("input[name=pathkind][value=urlpath]")
        link = f"{local.base}/v2/git/{quote(url, safe='')}/HEAD?urlpath={quote('api/contents/hello.py', safe='')}"
        assert page.input_value("#link") == link
        assert page.input_value("#markdown") == f"[![Binder]({local.base}/badge_logo.svg)]({link})"
        assert page.input_value("#rst") == f".. image:: {local.base}/badge_logo.svg\n   :target: {link}"
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0")  # the badge drew
        page.click("button[data-copy=markdown]")
        page.wait_for_selector("#copied:has-text('Copied the Markdown')")
        assert page.evaluate("navigator.clipboard.readText()") == page.input_value("#markdown")

        page.fill("#repository", "not a url")
        assert page.get_attribute("#launch", "aria-disabled") == "true" and page.input_value("#link") == ""
        assert "not a Git repository URL" in (page.text_content("#problem") or "")
        page.fill("#repository", url)

        page.click("#launch")
        page.wait_for_url("**/api/contents/hello.py?token=*", timeout=60_000)
        assert "/user/" in page.url
        assert json.loads(page.text_content("body") or "{}")["name"] == "hello.py"  # the server, past its token
    finally:
        context.close()
