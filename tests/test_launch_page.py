"""The /v2/ launch page's own logic: BinderHub's path parameters, and nothing of the link reaching the
page's markup or script as code."""

from __future__ import annotations

import json
import re

from chalicelib.launch_page import launch_request, page, server_path


def test_binderhubs_path_parameters() -> None:
    assert server_path({"urlpath": "/lab/tree/a.ipynb"}) == "lab/tree/a.ipynb"
    assert server_path({"labpath": "notebooks/a.ipynb"}) == "lab/tree/notebooks/a.ipynb"
    assert server_path({"filepath": "a.py"}) == "tree/a.py"
    assert server_path({"urlpath": "x", "labpath": "y"}) == "x"  # urlpath wins, as in BinderHub
    assert server_path({}) == ""


def test_a_v2_link_is_read_at_the_root_and_under_api() -> None:
    assert launch_request("/v2/gh/org/repo/main?labpath=a.ipynb&other=1") == (
        "gh", "org/repo/main", {"labpath": "a.ipynb"})
    assert launch_request("/api/v2/git/https%3A%2F%2Fexample.org%2Fr/HEAD") == (
        "git", "https%3A%2F%2Fexample.org%2Fr/HEAD", {})
    assert launch_request("/v2/gh") is None and launch_request("/deployments/x") is None


def test_nothing_of_the_link_becomes_markup_or_script() -> None:
    hostile = '</script><script>alert(1)</script>"'
    rendered = page("gh", f"org/{hostile}/main", {"urlpath": hostile})
    assert "<script>alert(1)" not in rendered
    script = re.search(r"const config = (.*);", rendered)
    assert script is not None and "<" not in script.group(1)
    config = json.loads(script.group(1))
    assert config["path"] == hostile and config["stream"] == f"/build/gh/org/{hostile}/main"
