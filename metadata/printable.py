"""Names and paths as one line of text, for every human-readable output (``fusefs log``, ``fusefs status``,
the daemon's log).

A file name may hold any byte but ``/`` and NUL: printed raw, a newline in it would start what looks like
a new record of the change log or the daemon's log, and terminal escape sequences could rewrite the
screen.  Here control characters, line and paragraph separators and the bidirectional-text controls are
escaped (``\\n``, ``\\x1b``, ``\\u2028``), bytes that are not UTF-8 are shown as ``\\xNN`` (never dropped),
and a backslash is doubled, so that an escape in the output always stands for what was escaped.

In ``metadata/`` because the change log's records describe themselves; ``fusefs/`` uses it too.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
#: Control, format (bidirectional overrides, zero-width marks), line/paragraph separator, surrogate.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: os.fsdecode and bytes.decode(errors="surrogateescape") turn an undecodable byte 0xNN into U+DCNN.
_ESCAPED_BYTE_FIRST, _ESCAPED_BYTE_LAST = 0xDC80, 0xDCFF


def printable(value: bytes | str | None) -> str:
    """``value`` (bytes of a name, or text such as a path from ``os.fsdecode``) as printable text."""
    if value is None:
        return ""
    text = value.decode(errors="surrogateescape") if isinstance(value, bytes) else value
    if text.isprintable() and "\\" not in text:
        return text  # the common case, at C speed
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if _ESCAPED_BYTE_FIRST <= code <= _ESCAPED_BYTE_LAST:
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
