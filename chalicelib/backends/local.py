"""Local adapters: builds as git clones (+ a virtualenv), servers as ``jupyter server`` processes.

No AWS and no Docker: ``python -m chalicelib.local`` (``make run``) serves the whole API with
these. The resolver and builder live in ``local_builds``, the stager and spawner in
``local_servers``, what they share in ``local_common``; callers import them from here.
"""

from __future__ import annotations

from chalicelib.backends.local_builds import LocalBuilder, LocalResolver
from chalicelib.backends.local_servers import LocalSpawner, LocalStager

__all__ = ["LocalBuilder", "LocalResolver", "LocalSpawner", "LocalStager"]
