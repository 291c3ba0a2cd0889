"""metadata.printable: names and paths as one line of text for every human-readable output."""

from __future__ import annotations

import os

import pytest

from metadata.printable import printable


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (b"plain name.txt", "plain name.txt"),
        ("caf\u00e9 \u6587\u4ef6", "caf\u00e9 \u6587\u4ef6"),  # printable non-ASCII stays as it is
        (b"a\nb", "a\\nb"),
        (b"a\rb\tc", "a\\rb\\tc"),
        (b"\x1b[2Jcleared", "\\x1b[2Jcleared"),  # a terminal escape sequence
        (b"nul\x00del\x7f", "nul\\x00del\\x7f"),
        (b"bad \xff\xfe utf-8", "bad \\xff\\xfe utf-8"),  # invalid UTF-8 shown, never dropped
        ("line\u2028sep\u0085nel", "line\\u2028sep\\x85nel"),  # what str.splitlines() splits on
        ("rtl\u202eoverride", "rtl\\u202eoverride"),  # bidirectional control
        (b"back\\slash\\n", "back\\\\slash\\\\n"),  # a literal backslash cannot pass for an escape
        (None, ""),
    ],
)
def test_printable(value: bytes | str | None, shown: str) -> None:
    assert printable(value) == shown


def test_a_path_decoded_with_surrogateescape_shows_its_bytes() -> None:
    assert printable(os.fsdecode(b"/mnt/\xffx\n")) == "/mnt/\\xffx\\n"


def test_every_byte_gives_one_line_and_distinct_names_stay_distinct() -> None:
    names = [bytes([byte]) + b"x" for byte in range(1, 256)]
    shown = [printable(name) for name in names]
    assert all(len(text.splitlines()) == 1 and text.isprintable() for text in shown)
    assert len(set(shown)) == len(names)
