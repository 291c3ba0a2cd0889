"""Directory quotas: limits on the bytes and inodes below a directory, enforced in the transaction that
would exceed them (EDQUOT, nothing changed).

Each inode below a quota directory records the quota directories above it (its *charges*, fixed when
it is created or when a quota is set above it); its size and itself count against each.  Usage is kept
in counters changed by atomic add and sharded by the changed inode, so writers in one directory do not
conflict on one key; a limit is checked against a snapshot read of the counters, so writers racing in
one quota directory may together overshoot it by what they write at once.  A filesystem-wide flag tells
whether any quota was ever set: until then a create reads nothing more (the flag is read with the
parent).  A charged inode's attributes say so (``InodeAttr.quota_charged``), so a flush, truncate or
delete of an inode no quota counts reads nothing more than its attributes.  A rename or link that would
move an inode between different quota directories fails with EXDEV (``mv`` then copies and deletes,
which charges the right quotas), as XFS does with project quotas.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from metadata.idempotency import HasKeys, idempotent
from metadata.keys import FsKeys
from metadata.model import FSError, InodeAttr, pack, unpack, unpack_list
from metadata.store import Transaction, decode_int64

_SHARDS = 16
BYTES, INODES = "bytes", "inodes"


@dataclass
class Quota:
    ino: int
    #: 0: no limit.
    max_bytes: int
    max_inodes: int
    used_bytes: int = 0
    used_inodes: int = 0


def create_keys(keys: FsKeys, parent: int) -> list[bytes]:
    """What a create reads with its parent (one round trip): the flag, the parent's charges and quota."""
    return [keys.quota_flag(), keys.quota_charges(parent), keys.quota(parent)]


def on_create(tr: Transaction, keys: FsKeys, parent: int, attr: InodeAttr, raws: list[bytes | None]) -> None:
    """Charge a new inode to the quotas above it (``raws``: the values of ``create_keys``)."""
    flag, parent_charges, parent_quota = raws
    if flag is None:
        return
    charges = _decode_charges(parent_charges) + ([parent] if parent_quota is not None else [])
    if not charges:
        return
    _add(tr, keys, charges, attr.ino, BYTES if attr.is_reg else None, attr.size, check=True)
    _add(tr, keys, charges, attr.ino, INODES, 1, check=True)
    tr.set(keys.quota_charges(attr.ino), pack(charges))
    attr.quota_charged = True


def add_bytes(tr: Transaction, keys: FsKeys, attr: InodeAttr, delta: int) -> None:
    """A regular file's size changed by ``delta``: EDQUOT if that exceeds a quota above it."""
    charges = charges_of(tr, keys, attr)
    if charges:
        _add(tr, keys, charges, attr.ino, BYTES, delta, check=delta > 0)


def room(tr: Transaction, keys: FsKeys, ino: int) -> int | None:
    """How many bytes file ``ino`` may grow by past its stored size before a byte quota above it is
    exceeded (None: no limit), from snapshot reads: for a writer to fail early (its flush checks exactly)."""
    raw = tr.get(keys.attr(ino), snapshot=True)
    if raw is None:
        return None
    attr = InodeAttr.decode(ino, raw)
    limits = [
        quota.max_bytes - quota.used_bytes
        for quota in read_quotas(tr, keys, charges_of(tr, keys, attr, snapshot=True))
        if quota.max_bytes
    ]
    return max(0, min(limits)) if limits else None


def on_delete(tr: Transaction, keys: FsKeys, attr: InodeAttr) -> None:
    """An inode is deleted: it leaves its quotas, and a quota directory takes its quota with it."""
    charges = charges_of(tr, keys, attr)
    if charges:
        _add(tr, keys, charges, attr.ino, INODES, -1, check=False)
        _add(tr, keys, charges, attr.ino, BYTES if attr.is_reg else None, -attr.size, check=False)
        tr.clear(keys.quota_charges(attr.ino))
    if attr.is_dir:
        tr.clear(keys.quota(attr.ino))
        tr.clear_range(*keys.quota_usages(attr.ino))


def move_keys(keys: FsKeys, *directories: int) -> list[bytes]:
    """What ``check_move`` reads of the directories an inode may move into, besides the inode's charges."""
    return [keys.quota_flag()] + [k for d in directories for k in (keys.quota_charges(d), keys.quota(d))]


def check_move(tr: Transaction, keys: FsKeys, ino: int, new_parent: int) -> None:
    """EXDEV if ``ino`` linked or moved into ``new_parent`` would count against other quotas."""
    flag, charges, parent_charges, parent_quota = tr.get_many(
        [keys.quota_flag(), keys.quota_charges(ino), keys.quota_charges(new_parent), keys.quota(new_parent)]
    )
    if flag is None:
        return
    there = _decode_charges(parent_charges) + ([new_parent] if parent_quota is not None else [])
    if set(_decode_charges(charges)) != set(there):
        raise FSError(errno.EXDEV)


def charges_of(tr: Transaction, keys: FsKeys, attr: InodeAttr, *, snapshot: bool = False) -> list[int]:
    """The quota directories counting ``attr`` (read only if its attributes say it has any)."""
    if not attr.quota_charged:
        return []
    return _decode_charges(tr.get(keys.quota_charges(attr.ino), snapshot=snapshot))


def _decode_charges(raw: bytes | None) -> list[int]:
    if raw is None:
        return []
    charges = unpack(raw, "quota charges")
    if not isinstance(charges, list) or not all(isinstance(ino, int) for ino in charges):
        raise FSError(errno.EIO, f"corrupt quota charges: {charges!r:.80}")
    return charges


def _add(
    tr: Transaction, keys: FsKeys, charges: list[int], ino: int, name: str | None, delta: int, *, check: bool
) -> None:
    if name is None or not delta:
        return
    if check:
        for quota in read_quotas(tr, keys, charges):
            limit, used = (
                (quota.max_bytes, quota.used_bytes)
                if name == BYTES
                else (quota.max_inodes, quota.used_inodes)
            )
            if limit and used + delta > limit:
                raise FSError(errno.EDQUOT)
    for directory in charges:
        tr.add(keys.quota_usage(directory, name, ino % _SHARDS), delta)


# -- managing quotas ----------------------------------------------------------------------------------
def read_quotas(tr: Transaction, keys: FsKeys, inos: list[int]) -> list[Quota]:
    """The quotas of directories ``inos`` with their usage (snapshot reads: the counters are hot)."""
    raws = tr.get_many([keys.quota(ino) for ino in inos], snapshot=True)
    quotas = []
    for ino, raw in zip(inos, raws, strict=True):
        if raw is None:
            continue
        max_bytes, max_inodes = unpack_list(raw, f"quota of {ino}", (int, int))
        quotas.append(
            Quota(ino, max_bytes, max_inodes, _usage(tr, keys, ino, BYTES), _usage(tr, keys, ino, INODES))
        )
    return quotas


def _usage(tr: Transaction, keys: FsKeys, ino: int, name: str) -> int:
    return sum(
        decode_int64(value) for _, value in tr.iter_range(*keys.quota_usages(ino, name), snapshot=True)
    )


def list_quotas(tr: Transaction, keys: FsKeys) -> list[Quota]:
    return read_quotas(
        tr, keys, [keys.quota_ino(key) for key, _ in tr.iter_range(*keys.quotas(), snapshot=True)]
    )


@idempotent
def set_quota(tr: Transaction, scope: HasKeys, ino: int, max_bytes: int, max_inodes: int) -> None:
    """Set or change the limits of directory ``ino``; a new quota counts what lies below it already."""
    keys = scope.keys
    raw = tr.get(keys.attr(ino))
    if raw is None:
        raise FSError(errno.ENOENT)
    directory = InodeAttr.decode(ino, raw)
    if not directory.is_dir:
        raise FSError(errno.ENOTDIR)
    if max_bytes < 0 or max_inodes < 0:
        raise FSError(errno.EINVAL)
    existed = tr.get(keys.quota(directory.ino)) is not None
    tr.set(keys.quota(directory.ino), pack([max_bytes, max_inodes]))
    tr.set(keys.quota_flag(), pack(1))
    if existed:
        return
    below = _subtree(tr, keys, directory.ino)
    for attr in below.values():
        tr.set(keys.quota_charges(attr.ino), pack([*charges_of(tr, keys, attr), directory.ino]))
        if not attr.quota_charged:
            attr.quota_charged = True
            tr.set(keys.attr(attr.ino), attr.encode())
    _reset_usage(tr, keys, directory.ino, below)


@idempotent
def unset_quota(tr: Transaction, scope: HasKeys, directory: int) -> None:
    keys = scope.keys
    if tr.get(keys.quota(directory)) is None:
        raise FSError(errno.ENODATA, f"no quota on directory {directory}")
    for attr in _subtree(tr, keys, directory).values():
        charges = [charge for charge in charges_of(tr, keys, attr) if charge != directory]
        if charges:
            tr.set(keys.quota_charges(attr.ino), pack(charges))
        else:
            tr.clear(keys.quota_charges(attr.ino))
            attr.quota_charged = False
            tr.set(keys.attr(attr.ino), attr.encode())
    tr.clear(keys.quota(directory))
    tr.clear_range(*keys.quota_usages(directory))


@idempotent
def check_quotas(tr: Transaction, scope: HasKeys) -> int:
    """Recount every quota's usage from its tree and correct it; returns how many were wrong.

    Files unlinked but still open are not in the tree, yet counted until they are deleted: check when
    none are."""
    fixed = 0
    for recorded in list_quotas(tr, scope.keys):
        actual = _reset_usage(tr, scope.keys, recorded.ino, _subtree(tr, scope.keys, recorded.ino))
        fixed += (actual.used_bytes, actual.used_inodes) != (recorded.used_bytes, recorded.used_inodes)
    return fixed


def _subtree(tr: Transaction, keys: FsKeys, top: int) -> dict[int, InodeAttr]:
    """Every inode below directory ``top`` (not ``top`` itself), each once however many its links."""
    found: dict[int, InodeAttr] = {}
    pending = [top]
    while pending:
        entries = tr.get_range(*keys.entries(pending.pop()))
        inos = [int(unpack_list(raw, "entry", (int, int))[0]) for _, raw in entries]
        for ino, raw in zip(inos, tr.get_many([keys.attr(ino) for ino in inos]), strict=True):
            if raw is None or ino in found:
                continue
            found[ino] = InodeAttr.decode(ino, raw)
            if found[ino].is_dir:
                pending.append(ino)
    return found


def _reset_usage(tr: Transaction, keys: FsKeys, directory: int, below: dict[int, InodeAttr]) -> Quota:
    used_bytes = sum(attr.size for attr in below.values() if attr.is_reg)
    tr.clear_range(*keys.quota_usages(directory))
    tr.add(keys.quota_usage(directory, BYTES, 0), used_bytes)
    tr.add(keys.quota_usage(directory, INODES, 0), len(below))
    return Quota(directory, 0, 0, used_bytes, len(below))
