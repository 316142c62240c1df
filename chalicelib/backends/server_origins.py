"""Which pages may use a notebook server: the operator's allowed origins, as ``jupyter server`` options.

A Thebe page launches a server through the API, then talks to the server itself from its own origin.
Its client (``@jupyterlab/services``) sends ``Authorization: token …``, so the browser first sends a
preflight, and jupyter_server answers it without ``Access-Control-Allow-Origin`` unless told which
origins to allow; its websockets check ``Origin`` against the same options. So both spawners start
servers with the origins the API itself allows (``Settings.cors_origins``): ``*`` on AWS stages, as on
mybinder.org; the listed ones locally, where by default there are none and jupyter refuses every other
origin, as it does out of the box.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chalicelib.config import Settings

ANY_ORIGIN = "*"


def allow_origin_arguments(settings: Settings) -> list[str]:
    """``jupyter server`` options allowing the pages of ``settings.cors_origins`` (none: no options)."""
    origins = settings.cors_origins
    if not origins:
        return []
    if ANY_ORIGIN in origins:
        return [f"--ServerApp.allow_origin={ANY_ORIGIN}"]
    # Anchored and escaped: jupyter re.match()es the pattern, so "https://a.example" must not also
    # allow "https://a.example.evil.net" or "https://aXexample".
    alternatives = "|".join(re.escape(origin) for origin in origins)
    return [f"--ServerApp.allow_origin_pat=^({alternatives})$"]
