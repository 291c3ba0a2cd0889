"""The control xattrs through which ``fusefs quota`` manages a mounted filesystem's quotas: the daemon
owns the store, so the command asks it (trusted.*: only root may).

``trusted.fusefs.quota`` on a directory: set to ``"MAX_BYTES MAX_INODES"`` sets its quota, removed
unsets it, read gives ``"INO MAX_BYTES MAX_INODES USED_BYTES USED_INODES"``.  ``trusted.fusefs.quotas``
(any inode) lists every quota, one such line each; setting ``trusted.fusefs.quota_check`` recounts
usage.  None of them is stored or listed."""

from __future__ import annotations

import errno

from metadata.model import FSError
from metadata.quota import Quota

QUOTA = b"trusted.fusefs.quota"
QUOTAS = b"trusted.fusefs.quotas"
CHECK = b"trusted.fusefs.quota_check"
NAMES = (QUOTA, QUOTAS, CHECK)


def format_quotas(quotas: list[Quota]) -> bytes:
    return b"".join(
        b"%d %d %d %d %d\n" % (q.ino, q.max_bytes, q.max_inodes, q.used_bytes, q.used_inodes) for q in quotas
    )


def parse_quotas(raw: bytes) -> list[Quota]:
    return [Quota(*map(int, line.split())) for line in raw.decode().splitlines()]


def format_limits(max_bytes: int, max_inodes: int) -> bytes:
    return b"%d %d" % (max_bytes, max_inodes)


def parse_limits(value: bytes) -> tuple[int, int]:
    try:
        max_bytes, max_inodes = map(int, value.split())
    except ValueError:
        raise FSError(errno.EINVAL) from None
    return max_bytes, max_inodes
