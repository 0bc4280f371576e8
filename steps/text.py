"""How values are quoted back to the operator: never whole when long."""

from __future__ import annotations

LIMIT = 80


def shown(value: object, limit: int = LIMIT) -> str:
    """A value as an error message quotes it: repr'd, and cut with … past `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
