"""Text from a server, made safe for a terminal: control characters escaped, never raw."""

from __future__ import annotations

import re

__all__ = ["escape"]

# C0 and C1 controls (ESC starts terminal sequences), DEL, line/paragraph separators and
# the bidirectional overrides that can make a terminal show text other than it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _code(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape(text: object, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control character written as an escape (``\\x1b``)."""
    value = str(text)
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_code, part) for part in value.split("\n"))
    return _UNSAFE.sub(_code, value)
