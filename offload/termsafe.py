"""Text made safe for a terminal: control characters shown as escapes, never obeyed.

Request paths, headers and messages in log lines are chosen by clients; printed raw, an
ESC starts a colour or cursor sequence and a newline starts a fake log line
(``GET /jobs/%1b%5b31mX%0aFAKE%20LINE``). Everything the command-line tools write to a
terminal passes through :func:`escape` (the JSON log files keep their own escaping).
"""

from __future__ import annotations

import re

__all__ = ["escape", "escape_message"]

# C0 controls, DEL and C1 controls (0x9b is a one-byte CSI on some terminals), plus the
# Unicode line and paragraph separators and bidirectional overrides that reorder text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TRACEBACK = "\nTraceback (most recent call last):\n"


def _one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: object, *, keep_newlines: bool = False) -> str:
    """``str(text)`` on one line, every control character an escape (``\\x1b``, ``\\n``).

    ``keep_newlines`` keeps line breaks (a multi-line block printed on purpose, such as
    pretty JSON), escaping everything else in each line.
    """
    value = str(text)
    if keep_newlines:
        return "\n".join(_CONTROL.sub(_one, part) for part in value.split("\n"))
    return _CONTROL.sub(_one, value)


def escape_message(text: str, indent: str = "    ") -> str:
    """A log message: escaped, except that a traceback after it keeps its lines, indented.

    The indent keeps every continuation line from passing for a line of its own.
    """
    head, sep, trace = text.partition(_TRACEBACK)
    if not sep:
        return escape(text)
    lines = (sep + trace).split("\n")
    return escape(head) + "".join(f"\n{indent}{escape(line)}" for line in lines[1:])
