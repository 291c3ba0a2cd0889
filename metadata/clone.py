"""Instant clones: a copy of a file or a tree in time proportional to its number of inodes, not bytes.

A small file's inline data is copied; a large file's chunk records are copied pointing at the same
chunks, whose references are counted (metadata/filedata.py: ``share``): no chunk file is read or
written.  A write to either copy writes a private copy of the chunk it touches (copy-on-write,
fusefs/openfile.py), and deleting one copy releases its references, leaving the chunk files to the
other.

One file is copied in one transaction (atomic).  A file being written (a chunk marked dirty: open for
writing in a mount, between a write and its close) is not copied until the writer's next flush, close
or fsync: a clone holds each file as it was at some commit of its data, before or after a given close,
never half of a write.  A tree is copied one inode per transaction under a hidden name
(``.<name>.clone-<hex>`` beside the destination), then renamed into place: the destination appears
whole at the end; each file is as of its own moment of copy (no snapshot of the tree as a whole).  A
copy interrupted half-way leaves the hidden directory behind.  Hard links inside a tree become
separate files.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import time
from collections.abc import Callable
from typing import TypeVar

from metadata import filedata, index
from metadata.idempotency import idempotent
from metadata.model import ROOT_INODE, Caller, ChunkRecord, FSError, InodeAttr, InodeId, now_ns
from metadata.namespace import Namespace
from metadata.store import Store, Transaction

#: How long a clone waits for a file being written to be flushed before giving up.
BUSY_WAIT_S = 60.0
_BUSY_POLL_S = 0.1
_PAGE_ENTRIES = 100

T = TypeVar("T")


@idempotent
def copy_inode(
    tr: Transaction, ns: Namespace, src: int, ino: int, parent: int, name: bytes, caller: Caller
) -> int:
    """Copy inode ``src`` (not a directory's entries) as new inode ``ino`` named ``name`` in ``parent``.

    EBUSY while ``src`` has a chunk being written."""
    keys = ns.keys
    attr = ns.attr_for_update(tr, src)
    if tr.get_range(*keys.dirty_chunks_of(src), limit=1):
        raise FSError(errno.EBUSY, f"inode {src} is being written")
    now = now_ns()
    # The copy starts with no quota charges of its own (see Known limits: clones are not charged).
    copy = dataclasses.replace(
        attr, ino=InodeId(ino), nlink=2 if attr.is_dir else 1, ctime_ns=now, quota_charged=False
    )
    ns.attach(tr, parent, name, copy, caller, "clone")
    for key, value in tr.iter_range(*keys.xattrs(src)):
        xattr = keys.xattr_name(key)
        tr.set(keys.xattr(ino, xattr), value)
        if ns.config.search_index:
            index.add_xattr(tr, keys, ino, xattr, value)
    for key, value in tr.iter_range(*keys.inline_pieces(src)):
        tr.set(keys.inline_piece(ino, keys.data_key_of(key)[1]), value)
    for key, value in tr.iter_range(*keys.chunks(src)):
        record = ChunkRecord.decode(value)
        if record.dirty:
            raise FSError(errno.EBUSY, f"inode {src} is being written")
        filedata.share(tr, keys, ino, keys.chunk_index(key), record)
    return ino


def resolve(store: Store, ns: Namespace, path: str) -> InodeAttr:
    """The inode at ``path`` (from the filesystem's root; symbolic links are not followed)."""
    return store.transact(lambda tr: _walk(tr, ns, path))


def _walk(tr: Transaction, ns: Namespace, path: str) -> InodeAttr:
    attr = ns.getattr(tr, ROOT_INODE)
    for part in os.fsencode(path).split(b"/"):
        if part and part != b".":
            attr = ns.lookup(tr, attr.ino, part)
    return attr


def _is_within(store: Store, ns: Namespace, ino: int, ancestor: int) -> bool:
    def walk(tr: Transaction) -> bool:
        current = ino
        while current != ROOT_INODE:
            if current == ancestor:
                return True
            current = ns.getattr(tr, current).parent
        return current == ancestor

    return store.transact(walk)


def clone(store: Store, ns: Namespace, src: int, parent: int, name: bytes, caller: Caller) -> int:
    """Copy inode ``src`` (a whole tree if a directory) to ``name`` in directory ``parent``; returns the
    number of inodes copied."""
    attr = store.transact(lambda tr: ns.getattr(tr, src))
    if not attr.is_dir:
        _copy(store, ns, src, _ids(store, ns, 1), parent, name, caller)
        return 1
    if _is_within(store, ns, parent, src):
        raise FSError(errno.EINVAL, "cannot clone a directory into itself")
    if store.transact(lambda tr: ns.entry(tr, parent, name)) is not None:
        raise FSError(errno.EEXIST)
    hidden = b"." + name[:200] + b".clone-" + os.urandom(6).hex().encode()
    top = _copy(store, ns, src, _ids(store, ns, 1), parent, hidden, caller)
    copied = 1
    pending = [(src, top)]
    while pending:
        source_dir, copy_dir = pending.pop()
        after: bytes | None = None
        while True:
            page = store.transact(
                functools.partial(ns.readdir_page, ino=source_dir, after=after, limit=_PAGE_ENTRIES)
            )
            first = _ids(store, ns, len(page.entries))
            for offset, (child_name, child) in enumerate(page.entries):
                new = _copy(store, ns, child.ino, first + offset, copy_dir, child_name, caller)
                if child.is_dir:
                    pending.append((child.ino, new))
            copied += len(page.entries)
            if page.complete:
                break
            after = page.last_name
    store.transact(lambda tr: ns.rename(tr, parent, hidden, parent, name, caller, noreplace=True))
    return copied


def _ids(store: Store, ns: Namespace, count: int) -> int:
    return store.transact(lambda tr: ns.reserve_ids(tr, "inode", max(count, 1)))


def _copy(store: Store, ns: Namespace, src: int, ino: int, parent: int, name: bytes, caller: Caller) -> int:
    def attempt(tr: Transaction) -> int:
        return copy_inode(tr, ns, src, ino, parent, name, caller)

    return _waiting_while_busy(lambda: store.transact(attempt))


def _waiting_while_busy(run: Callable[[], T]) -> T:
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            return run()
        except FSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
        time.sleep(_BUSY_POLL_S)
