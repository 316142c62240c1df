"""A stand-in for a server's python: the spawner's command without jupyter, for fast process tests."""

from __future__ import annotations

import sys
from pathlib import Path

# Stands in for ``python -c SERVE ...`` (local_servers.py): answers ``<base_url>api/status`` with 200 for
# the server's token and 403 otherwise, as jupyter does, and starts in milliseconds instead of a second.
# It notes every path it is asked for in ``requests.log`` in its runtime directory.
TINY_JUPYTER = '''\
import http.server, os, sys
options = dict(arg[2:].split("=", 1) for arg in sys.argv if arg.startswith("--") and "=" in arg)
status, token = options["ServerApp.base_url"] + "api/status", os.environ["JUPYTER_TOKEN"]

os.makedirs(os.environ["JUPYTER_RUNTIME_DIR"], exist_ok=True)
seen = open(os.path.join(os.environ["JUPYTER_RUNTIME_DIR"], "requests.log"), "a", buffering=1)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen.write(self.path + "\\n")
        mine = self.path == status and self.headers.get("Authorization") == "token " + token
        self.send_response(200 if mine else 403)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer((options["ip"], int(options["port"])), Handler).serve_forever()
'''


def tiny_jupyter(directory: Path) -> str:
    """An executable "python" in ``directory`` that runs TINY_JUPYTER whatever it is asked to run."""
    python = directory / "tiny-jupyter"
    python.write_text(f"#!{sys.executable}\n{TINY_JUPYTER}")
    python.chmod(0o755)
    return str(python)
