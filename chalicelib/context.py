"""The process-wide services, built on first use (never at import: that is the cold start)."""

from __future__ import annotations

from chalicelib.config import get_settings
from chalicelib.services import Services, build_services

_services: Services | None = None


def get_services() -> Services:
    global _services
    if _services is None:
        _services = build_services(get_settings())
    return _services


def set_services(services: Services | None) -> None:
    """Replace the wiring (tests, local mode); None rebuilds from the settings on next use."""
    global _services
    _services = services
