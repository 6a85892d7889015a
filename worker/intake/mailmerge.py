"""Mail merge as in OVHcloud's cookbook: ``#firstname#`` placeholders filled per receiver.

OVH's jobs API takes one text per call, so each distinct rendered text becomes its own batch.
"""

from __future__ import annotations

from contracts.models import PLACEHOLDER


def render(message: str, values: dict[str, str] | None) -> str:
    """``message`` with each ``#name#`` replaced by ``values[name]`` (the contract checked all exist)."""
    if not values:
        return message
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), message)
