"""``python -m chalicelib.cli launch <repository>``: a Binder launch from a terminal.

It follows the API's ``/build/git/...`` event stream as Thebe does, shows each phase on one line of
stderr, and prints the server's URL (token included) on stdout once it is ready, or what failed
(exit status 1). ``--open`` opens the URL in the browser.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

PHASES = ["waiting", "fetching", "building", "built", "launching", "ready"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local mode's 127.0.0.1 too


def add_parser(resources: Any) -> None:
    launch = resources.add_parser("launch", help="launch a repository and print its server's URL")
    launch.add_argument("repository", help="a git URL, or a local path (local mode)")
    launch.add_argument("--ref", default="HEAD", help="branch, tag or commit (default: HEAD)")
    launch.add_argument("--api", default="http://127.0.0.1:8000", help="the binderless API (default: local mode's)")
    launch.add_argument("--open", action="store_true", help="open the server in the browser once it is ready")


def stream_url(api: str, repository: str, ref: str) -> str:
    if not api.startswith(("http://", "https://")):
        raise ValueError(f"--api must be an http(s):// URL, not {api!r}")
    path = Path(repository).expanduser()
    url = path.resolve().as_uri() if "://" not in repository and path.exists() else repository
    return f"{api.rstrip('/')}/build/git/{quote(url, safe='')}/{quote(ref, safe='/')}"


def events(url: str) -> Any:
    """The stream's events, each its ``data`` parsed, as they come."""
    request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})  # noqa: S310 (stream_url: http(s))
    with NO_PROXY.open(request, timeout=3700) as response:  # a build may take long; keepalives come every 25 s
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("data: "):
                yield json.loads(line[6:])


def progress(event: dict[str, Any], out: TextIO) -> None:
    phase = str(event.get("phase", ""))
    step = PHASES.index(phase) + 1 if phase in PHASES else 0
    bar = "#" * step + "." * (len(PHASES) - step)
    message = str(event.get("message", "")).strip().splitlines()[-1:] or [""]
    print(f"\r[{bar}] {phase:<9} {message[0][:60]:<60}", end="", file=out, flush=True)


def launch(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        for event in events(stream_url(args.api, args.repository, args.ref)):  # ValueError: a bad --api
            progress(event, err)
            if event.get("phase") == "ready":
                location = f"{event['url']}?token={event['token']}"
                print(file=err)
                print(location, file=out)
                if args.open:
                    webbrowser.open(location)
                return 0
            if event.get("phase") == "failed":
                print(f"\nerror: {str(event.get('message', '')).strip()}", file=err)
                return 1
    except (OSError, ValueError) as error:  # refused, reset, or not an event stream
        print(f"\nerror: could not follow the launch at {args.api}: {error}", file=err)
        return 1
    print("\nerror: the stream ended before the server was ready", file=err)
    return 1
