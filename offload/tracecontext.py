"""W3C trace context: the one parser of ``traceparent`` (web, worker and the emulator)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TraceContext", "parse_traceparent"]

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True)
class TraceContext:
    """A W3C trace: 32 hex trace id, 16 hex span id, sampled flag."""

    trace_id: str
    span_id: str
    sampled: bool

    def traceparent(self) -> str:
        """The W3C ``traceparent`` header value for a child of this span."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The trace a ``traceparent`` value names, or None if it is absent or invalid."""
    match = _TRACEPARENT.fullmatch((value or "").strip())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return TraceContext(match.group(1), match.group(2), int(match.group(3), 16) & 1 == 1)
