"""Where a chunk lives inside a block directory: ``<dir>/<fan-out>/<chunk id as 16 hex>.chunk``.

Chunk ids are allocated sequentially, so the fan-out subdirectory is taken from a multiplicative hash of
the id rather than from its low bits: ids allocated with a stride (sharded counters) still spread evenly
over the 256 subdirectories, and no directory ever holds millions of entries.
"""

from __future__ import annotations

import os

FANOUT_DIRS = 256
FANOUT_NAMES = tuple(f"{index:02x}" for index in range(FANOUT_DIRS))
CHUNK_SUFFIX = ".chunk"
MAX_CHUNK_ID = 2**64 - 1

_GOLDEN_RATIO_64 = 0x9E3779B97F4A7C15  # Knuth's multiplicative hashing constant for 64-bit keys
_MASK_64 = 2**64 - 1


def fanout_index(chunk_id: int) -> int:
    return ((chunk_id * _GOLDEN_RATIO_64) & _MASK_64) >> 56


def chunk_path(directory: str, chunk_id: int) -> str:
    if not 0 < chunk_id <= MAX_CHUNK_ID:
        raise ValueError(f"chunk id must be in 1..2**64-1, not {chunk_id}")
    return os.path.join(directory, FANOUT_NAMES[fanout_index(chunk_id)], f"{chunk_id:016x}{CHUNK_SUFFIX}")


def parse_chunk_name(name: str) -> int | None:
    """The chunk id a file name encodes, or None for anything else (temporary or foreign files)."""
    stem, suffix = name[: -len(CHUNK_SUFFIX)], name[-len(CHUNK_SUFFIX) :]
    if suffix != CHUNK_SUFFIX or len(stem) != 16:
        return None
    try:
        chunk_id = int(stem, 16)
    except ValueError:
        return None
    # Reject names that merely parse (upper case, signs) so a name maps to exactly one id and back.
    return chunk_id if chunk_id > 0 and f"{chunk_id:016x}" == stem else None
