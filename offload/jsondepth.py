"""How deeply a JSON value nests, bounded before anything recursive (pydantic, json) sees it.

Deep nesting is cheap to send (256 levels are 1.5 KB) and costly to refuse late:
pydantic's serializer and the ``json`` module stop with errors of their own far below
the interpreter's recursion limit, which became 500s. Every JSON value the services
accept is measured here first, without recursion.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_JSON_DEPTH", "too_deep"]

# Levels of objects and arrays in one request body (the payload sits one level below).
MAX_JSON_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> list[str | int] | None:
    """The location of the first container nested past ``limit`` levels, or ``None``."""
    stack: list[tuple[Any, int, list[str | int]]] = [(value, 1, [])]
    while stack:
        item, depth, loc = stack.pop()
        if isinstance(item, dict):
            children: list[tuple[str | int, Any]] = list(item.items())
        elif isinstance(item, list | tuple):
            children = list(enumerate(item))
        else:
            continue
        if depth > limit:
            return loc
        stack.extend((child, depth + 1, [*loc, key]) for key, child in children)
    return None
