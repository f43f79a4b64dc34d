"""Template helpers for the live dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from devices import queries

register = template.Library()


@register.filter
def state_label(value: Any, kind: str) -> str:
    """``{{ slot.door|state_label:"door" }}`` → "Open"."""
    return queries.label(kind, value)


@register.filter
def iso_time(value: str | None) -> datetime | None:
    """Parse the ISO timestamps of the dashboard state for the ``date`` filter."""
    return datetime.fromisoformat(value) if value else None
