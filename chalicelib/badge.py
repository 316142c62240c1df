"""``GET /badge_logo.svg``: the "launch | binder" badge that README files link to a launch with.

Drawn here in the flat style of shields.io badges (a grey label, a coloured value, 20 px high, rounded
corners, Verdana 11 px with a faint shadow), with a small mark of three orbiting dots before the label.
Text widths are fixed for these two words, so the image is the same everywhere.
"""

from __future__ import annotations

HEADERS = {"Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=86400",
           "X-Content-Type-Options": "nosniff"}
LABEL, VALUE = "launch", "binder"
MARK_WIDTH, LABEL_WIDTH, VALUE_WIDTH = 14, 50, 46  # px; the label's part holds the mark and the word
WIDTH = MARK_WIDTH + LABEL_WIDTH + VALUE_WIDTH


def _text(x: float, word: str) -> str:
    return (f'<text x="{x}" y="15" fill="#010101" fill-opacity=".3">{word}</text>'
            f'<text x="{x}" y="14">{word}</text>')


SVG = f"""<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="20" role="img" aria-label="{LABEL}: {VALUE}">
<title>{LABEL}: {VALUE}</title>
<linearGradient id="shine" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="round"><rect width="{WIDTH}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#round)">
<rect width="{MARK_WIDTH + LABEL_WIDTH}" height="20" fill="#555"/>
<rect x="{MARK_WIDTH + LABEL_WIDTH}" width="{VALUE_WIDTH}" height="20" fill="#e66581"/>
<rect width="{WIDTH}" height="20" fill="url(#shine)"/>
</g>
<g fill="none" stroke-width="1.6">
<ellipse cx="10" cy="10" rx="5.5" ry="3" stroke="#f5a252" transform="rotate(-30 10 10)"/>
<ellipse cx="10" cy="10" rx="5.5" ry="3" stroke="#579aca" transform="rotate(30 10 10)"/>
</g>
<circle cx="10" cy="10" r="1.8" fill="#e66581"/>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
{_text(MARK_WIDTH + 4 + LABEL_WIDTH / 2 - 2, LABEL)}
{_text(MARK_WIDTH + LABEL_WIDTH + VALUE_WIDTH / 2, VALUE)}
</g>
</svg>
"""
