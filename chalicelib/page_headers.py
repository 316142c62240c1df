"""The headers every HTML page of ours goes out with: no caching, no sniffing, no referrer, and a
Content-Security-Policy that allows the page's own inline script and style by their SHA-256 hashes and
nothing else (no other script, no eval, no plugin, no frame; images, fetches and EventSources to its
own origin only). A page holds nothing of the request as markup, and the policy would stop script
that got in anyway. ``fill`` writes a page's values into its template."""

from __future__ import annotations

import base64
import hashlib
import re

SLOT = re.compile(r"\{\{([A-Z]+)\}\}")


def fill(template: str, **values: str) -> str:
    """``template`` with each ``{{NAME}}`` replaced by ``values[NAME]``, in one pass: a value that itself
    contains "{{NAME}}" (a spec in a link, say) stays as it is."""
    return SLOT.sub(lambda slot: values[slot[1]], template)


def source_hash(text: str) -> str:
    """A CSP hash source for an inline ``<script>`` or ``<style>`` whose content is exactly ``text``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(scripts: tuple[str, ...], styles: tuple[str, ...]) -> str:
    return "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(source_hash(script) for script in scripts),
        "style-src " + " ".join(source_hash(style) for style in styles),
        "img-src 'self'", "connect-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    ])


def page_headers(scripts: tuple[str, ...], styles: tuple[str, ...]) -> dict[str, str]:
    """A fresh dict each time (Chalice's local server pops from the one it is given)."""
    return {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": content_security_policy(scripts, styles)}
