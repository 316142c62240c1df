"""The operator's allowed origins as ``jupyter server`` options (both spawners add them)."""

from __future__ import annotations

import re

from chalicelib.backends.server_origins import allow_origin_arguments
from chalicelib.config import Settings


def test_any_origin_on_aws_stages_as_on_mybinder() -> None:
    assert allow_origin_arguments(Settings()) == ["--ServerApp.allow_origin=*"]
    assert allow_origin_arguments(Settings(cors_origins=("https://a.example", "*"))) == ["--ServerApp.allow_origin=*"]


def test_listed_origins_become_one_anchored_escaped_pattern() -> None:
    settings = Settings.from_env({"BINDERLESS_CORS_ORIGINS": "https://a.example, http://localhost:5173"})
    (argument,) = allow_origin_arguments(settings)
    assert argument == r"--ServerApp.allow_origin_pat=^(https://a\.example|http://localhost:5173)$"
    pattern = argument.split("=", 1)[1]
    for origin in ("https://a.example", "http://localhost:5173"):
        assert re.match(pattern, origin)  # jupyter re.match()es the browser's Origin
    for origin in ("https://a.example.evil.net", "https://aXexample", "http://a.example", "http://localhost:51730",
                   "https://evil.net/https://a.example", "null"):
        assert not re.match(pattern, origin), origin


def test_no_origins_no_options_so_jupyter_refuses_other_origins() -> None:
    assert allow_origin_arguments(Settings.from_env({"BINDERLESS_CORS_ORIGINS": ""})) == []
