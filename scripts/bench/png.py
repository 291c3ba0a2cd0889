"""A horizontal bar chart on a log scale, written as a PNG in pure Python (zlib + struct, a 5x7 bitmap font).

Chosen over matplotlib so the benchmark needs nothing beyond the standard library to draw its chart, on any
machine, offline.  Text is drawn in capitals.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

RGB = tuple[int, int, int]

_FONT_SRC = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#",
    "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.",
    "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",
    "E": "#####|#....|#....|####.|#....|#....|#####",
    "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####",
    "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.",
    "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
    "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####",
    "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
    "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....",
    "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
    "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.",
    "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.",
    "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
    "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    "Z": "#####|....#|...#.|..#..|.#...|#....|#####",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "3": "####.|....#|....#|.###.|....#|....#|####.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
    "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.",
    "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    ".": ".....|.....|.....|.....|.....|.##..|.##..",
    ",": ".....|.....|.....|.....|.##..|..#..|.#...",
    ":": ".....|.##..|.##..|.....|.##..|.##..|.....",
    "-": ".....|.....|.....|#####|.....|.....|.....",
    "_": ".....|.....|.....|.....|.....|.....|#####",
    "/": "....#|....#|...#.|..#..|.#...|#....|#....",
    "(": "...#.|..#..|.#...|.#...|.#...|..#..|...#.",
    ")": ".#...|..#..|...#.|...#.|...#.|..#..|.#...",
    "%": "##...|##..#|...#.|..#..|.#...|#..##|...##",
    "=": ".....|.....|#####|.....|#####|.....|.....",
    "<": "...#.|..#..|.#...|#....|.#...|..#..|...#.",
    ">": ".#...|..#..|...#.|....#|...#.|..#..|.#...",
    "+": ".....|..#..|..#..|#####|..#..|..#..|.....",
    " ": ".....|.....|.....|.....|.....|.....|.....",
    ";": ".....|.##..|.##..|.....|.##..|..#..|.#...",
    "|": "..#..|..#..|..#..|..#..|..#..|..#..|..#..",
    "'": "..#..|..#..|.#...|.....|.....|.....|.....",
    "*": ".....|#.#.#|.###.|#####|.###.|#.#.#|.....",
    "[": ".###.|.#...|.#...|.#...|.#...|.#...|.###.",
    "]": ".###.|...#.|...#.|...#.|...#.|...#.|.###.",
    "!": "..#..|..#..|..#..|..#..|..#..|.....|..#..",
    "?": ".###.|#...#|....#|...#.|..#..|.....|..#..",
    "#": ".#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#.",
}
FONT = {ch: [row for row in src.split("|")] for ch, src in _FONT_SRC.items()}
GLYPH_W, GLYPH_H = 6, 8  # 5x7 plus spacing
_SUBST = {"\u00d7": "X", "\u00f7": "/", "\u2265": ">=", "\u2264": "<=", "\u2014": "-", "\u2013": "-"}


def _normalise(text: str) -> str:
    for a, b in _SUBST.items():
        text = text.replace(a, b)
    return text.upper()


def text_width(text: str, scale: int = 1) -> int:
    return len(_normalise(text)) * GLYPH_W * scale


class Canvas:
    def __init__(self, width: int, height: int, bg: RGB = (255, 255, 255)) -> None:
        self.w, self.h = width, height
        self.px = [bytearray(bytes(bg) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        if x0 >= x1:
            return
        run = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            self.px[y][x0 * 3 : x1 * 3] = run

    def text(self, x: int, y: int, text: str, color: RGB = (0, 0, 0), scale: int = 1) -> None:
        for ch in _normalise(text):
            glyph = FONT.get(ch)
            if glyph is None:
                glyph = FONT["-"] if not ch.isspace() else FONT[" "]
            for gy, row in enumerate(glyph):
                for gx, bit in enumerate(row):
                    if bit == "#":
                        self.rect(
                            x + gx * scale, y + gy * scale, x + (gx + 1) * scale, y + (gy + 1) * scale, color
                        )
            x += GLYPH_W * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self.px)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (
                struct.pack(">I", len(data))
                + kind
                + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
            )

        header = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


@dataclass
class Bar:
    value: float | None  # None: not measured
    color: RGB
    target: float | None = None  # drawn as a black tick
    met: bool | None = None


def _entry_width(color: RGB | None, name: str, gh: int, scale: int) -> int:
    return (3 * gh // 2 + 6 if color is not None else 0) + text_width(name, scale) + 24


def _legend_rows(
    entries: list[tuple[RGB | None, str]], width: int, gh: int, scale: int
) -> list[list[tuple[RGB | None, str]]]:
    """The legend's entries wrapped into rows no wider than `width` (one entry per row at least)."""
    rows: list[list[tuple[RGB | None, str]]] = [[]]
    used = 0
    for color, name in entries:
        w = _entry_width(color, name, gh, scale)
        if rows[-1] and used + w > width:
            rows.append([])
            used = 0
        rows[-1].append((color, name))
        used += w
    return rows


def bar_chart(
    title: str,
    notes: list[str],
    groups: list[tuple[str, list[Bar]]],
    legend: list[tuple[RGB, str]],
    lo: float = 0.01,
    hi: float = 100.0,
    scale: int = 2,
) -> bytes:
    """One group of bars per label; x is log10 from `lo` to `hi`; bars grow from 1 to their value."""
    gh = GLYPH_H * scale
    label_w = max([text_width(g[0], scale) for g in groups] + [0]) + 16
    plot_w = 900
    width = label_w + plot_w + 40
    bar_h, bar_gap, group_gap = 9, 2, 10
    entries: list[tuple[RGB | None, str]] = [*legend, (None, "TICK = TARGET: GREEN MET, RED MISSED")]
    rows = _legend_rows(entries, width - 16, gh, scale)
    top = 12 + gh * (2 + len(notes)) + gh * len(rows) + 20 + gh  # title, notes, legend, axis labels
    heights = [max(len(bars), 1) * (bar_h + bar_gap) + group_gap for _, bars in groups]
    height = top + sum(heights) + gh + 20
    c = Canvas(width, height)
    y = 8
    c.text(8, y, title, scale=scale)
    y += gh + 6
    for n in notes:
        c.text(8, y, n, (70, 70, 70), scale=scale)
        y += gh
    y += 6
    for row in rows:
        x = 8
        for color, name in row:
            if color is not None:
                c.rect(x, y, x + 3 * gh // 2, y + gh - 2, color)
                x += 3 * gh // 2 + 6
            c.text(x, y, name, scale=scale)
            x += text_width(name, scale) + 24
        y += gh
    x0 = label_w
    span = math.log10(hi) - math.log10(lo)

    def xpos(v: float) -> int:
        v = min(max(v, lo), hi)
        return x0 + int((math.log10(v) - math.log10(lo)) / span * plot_w)

    ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    axis_y = top - gh - 4
    for t in ticks:
        if lo <= t <= hi:
            tx = xpos(t)
            c.rect(tx, top - 4, tx + 1, height - gh - 16, (150, 150, 150) if t == 1 else (225, 225, 225))
            lab = f"{t:g}"
            c.text(tx - text_width(lab, scale) // 2, axis_y, lab, (90, 90, 90), scale=scale)
    c.rect(xpos(1) - 1, top - 4, xpos(1) + 1, height - gh - 16, (60, 60, 60))
    y = top
    for (label, bars), gheight in zip(groups, heights, strict=True):
        block = max(len(bars), 1) * (bar_h + bar_gap)
        c.text(label_w - 8 - text_width(label, scale), y + (block - gh) // 2, label, scale=scale)
        by = y
        for b in bars:
            if b.value is not None and b.value > 0:
                c.rect(xpos(1.0), by, xpos(b.value), by + bar_h, b.color)  # from 1 to the value
                if not lo < b.value < hi:  # clipped: a black end
                    end = xpos(b.value)
                    c.rect(end - 3, by - 1, end + 3, by + bar_h + 1, (0, 0, 0))
            if b.target is not None:
                tx = xpos(b.target)
                mark = (0, 140, 0) if b.met else (200, 0, 0) if b.met is False else (0, 0, 0)
                c.rect(tx - 1, by - 1, tx + 2, by + bar_h + 1, mark)
            by += bar_h + bar_gap
        y += gheight
    c.text(x0, height - gh - 8, "RATIO (LOG SCALE)", (90, 90, 90), scale=scale)
    return c.png()
