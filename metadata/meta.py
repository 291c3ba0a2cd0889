"""One typed entry point per metadata operation of a mounted filesystem (the JuiceFS ``Meta`` pattern).

A FUSE handler calls ``meta.create(...)``, ``meta.rename(...)`` and so on; each opens its own
transaction through ``run`` (fusefs/store_runner.py supplies it: retries through outages, a worker
thread when the store blocks) around one transaction function of metadata/.  So a reader follows a
request from handler to store by go-to-definition: fusefs/operations.py → here → namespace.py (or
sessions.py, recovery.py, changelog.py) → the store.

The methods are plain functions returning the awaitable of ``run``: no coroutine of their own, so the
hot paths (getattr, lookup) cost one call more and no extra await.  metadata/ imports no trio: ``run``
is injected.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from metadata import changelog, consumers, content, filedata, provenance, quota, recovery, sessions, trash
from metadata.changelog import LogRecord
from metadata.idempotency import trim_operations
from metadata.model import Caller, ChunkRecord, FsConfig, InodeAttr, Removal, SetAttrRequest
from metadata.namespace import DirPage, Namespace
from metadata.recovery import Leftovers
from metadata.store import Watch

T = TypeVar("T")


class Run(Protocol):
    """Runs ``fn(tr, *args)`` in a transaction of its own (``StoreRunner.run``)."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


class Meta:
    """The metadata operations of filesystem ``ns.config`` for session ``ns.session``."""

    def __init__(self, ns: Namespace, run: Run) -> None:
        self.ns = ns
        self._run = run
        self._keys = ns.keys

    @property
    def config(self) -> FsConfig:
        return self.ns.config

    @property
    def session(self) -> bytes:
        return self.ns.session

    @session.setter
    def session(self, session_id: bytes) -> None:
        self.ns.session = session_id

    # -- lookups and attributes ---------------------------------------------------------------------
    def getattr(self, ino: int) -> Awaitable[InodeAttr]:
        return self._run(self.ns.getattr, ino)

    def lookup(self, parent: int, name: bytes, hint: int | None = None) -> Awaitable[InodeAttr]:
        return self._run(self.ns.lookup, parent, name, hint)

    def setattr(self, ino: int, request: SetAttrRequest, caller: Caller) -> Awaitable[InodeAttr]:
        return self._run(self.ns.setattr, ino, request, caller)

    def readlink(self, ino: int) -> Awaitable[bytes]:
        return self._run(self.ns.readlink, ino)

    def readdir_page(self, ino: int, after: bytes | None, limit: int) -> Awaitable[DirPage]:
        return self._run(self.ns.readdir_page, ino, after, limit)

    def statfs(self) -> Awaitable[tuple[int, int]]:
        return self._run(self.ns.statfs)

    # -- creating and removing ----------------------------------------------------------------------
    def reserve_ids(self, kind: str, count: int) -> Awaitable[int]:
        return self._run(self.ns.reserve_ids, kind, count)

    def create(
        self,
        parent: int,
        name: bytes,
        ino: int,
        mode: int,
        caller: Caller,
        rdev: int = 0,
        target: bytes = b"",
    ) -> Awaitable[InodeAttr]:
        return self._run(self.ns.create, parent, name, ino, mode, caller, rdev, target)

    def link(self, ino: int, new_parent: int, new_name: bytes, caller: Caller) -> Awaitable[InodeAttr]:
        return self._run(self.ns.link, ino, new_parent, new_name, caller)

    def unlink(
        self,
        parent: int,
        name: bytes,
        caller: Caller,
        still_open: Callable[[int], bool],
        hint: int | None = None,
    ) -> Awaitable[Removal | None]:
        return self._run(self.ns.unlink, parent, name, caller, still_open, hint)

    def rmdir(self, parent: int, name: bytes, caller: Caller) -> Awaitable[Removal]:
        return self._run(self.ns.rmdir, parent, name, caller)

    def rename(
        self,
        old_parent: int,
        old_name: bytes,
        new_parent: int,
        new_name: bytes,
        caller: Caller,
        *,
        noreplace: bool,
        exchange: bool,
        still_open: Callable[[int], bool],
        hints: tuple[int | None, int | None] = (None, None),
    ) -> Awaitable[Removal | None]:
        rename = functools.partial(
            self.ns.rename, noreplace=noreplace, exchange=exchange, still_open=still_open, hints=hints
        )
        return self._run(rename, old_parent, old_name, new_parent, new_name, caller)

    def orphans(self) -> Awaitable[list[int]]:
        """This session's orphans."""
        return self._run(self.ns.orphans, self.ns.session)

    def reclaim(self, inos: list[int], session: bytes | None = None) -> Awaitable[list[ChunkRecord]]:
        return self._run(functools.partial(self.ns.reclaim, session=session), *inos)

    # -- extended attributes ------------------------------------------------------------------------
    def getxattr(self, ino: int, name: bytes) -> Awaitable[bytes]:
        return self._run(self.ns.getxattr, ino, name)

    def listxattr(self, ino: int) -> Awaitable[list[bytes]]:
        return self._run(self.ns.listxattr, ino)

    def setxattr(self, ino: int, name: bytes, value: bytes, caller: Caller) -> Awaitable[None]:
        return self._run(self.ns.setxattr, ino, name, value, caller)

    def removexattr(self, ino: int, name: bytes, caller: Caller) -> Awaitable[None]:
        return self._run(self.ns.removexattr, ino, name, caller)

    # -- directory quotas (metadata/quota.py) ------------------------------------------------------
    def quota_set(self, ino: int, max_bytes: int, max_inodes: int) -> Awaitable[None]:
        return self._run(quota.set_quota, self.ns, ino, max_bytes, max_inodes)

    def quota_unset(self, ino: int) -> Awaitable[None]:
        return self._run(quota.unset_quota, self.ns, ino)

    def quota_get(self, ino: int) -> Awaitable[list[quota.Quota]]:
        """The quota of directory ``ino``: a list of one, or empty."""
        return self._run(quota.read_quotas, self._keys, [ino])

    def quota_room(self, ino: int) -> Awaitable[int | None]:
        """Bytes file ``ino`` may grow by before a byte quota above it is exceeded (None: no limit)."""
        return self._run(quota.room, self._keys, ino)

    def quota_list(self) -> Awaitable[list[quota.Quota]]:
        return self._run(quota.list_quotas, self._keys)

    def quota_check(self) -> Awaitable[int]:
        return self._run(quota.check_quotas, self.ns)

    # -- file data (metadata/content.py, filedata.py): the open files' loads and flushes ------------
    def read_chunks(self, ino: int) -> Awaitable[dict[int, ChunkRecord]]:
        return self._run(filedata.read_chunks, self._keys, ino)

    def read_inline(self, ino: int, size: int) -> Awaitable[bytes]:
        return self._run(filedata.read_inline, self._keys, ino, size)

    def mark_dirty(self, ino: int, index: int, record: ChunkRecord, existing: bool) -> Awaitable[bool]:
        """Mark a chunk as being written by this session, before its file is written (recovery); False
        if the chunk is shared with a clone, to be copied instead (``unshare``)."""
        mark = functools.partial(filedata.mark_dirty, existing=existing)
        return self._run(mark, self._keys, ino, index, record, self.ns.session)

    def unshare(self, ino: int, index: int, shared_id: int, record: ChunkRecord) -> Awaitable[bool]:
        """Put ``record`` (a private copy, marked dirty) in place of the chunk ``shared_id``: shared with
        a clone, or another host's on the data tier (filedata.unshare)."""
        return self._run(filedata.unshare, self._keys, ino, index, shared_id, record, self.ns.session)

    def has_stale_chunks(self, ino: int) -> Awaitable[bool]:
        return self._run(content.has_stale_chunks, self.ns, ino)

    def drop_stale_chunks(self, ino: int) -> Awaitable[list[ChunkRecord]]:
        return self._run(content.drop_stale_chunks, self.ns, ino)

    def flush(self, change: content.Flush) -> Awaitable[list[ChunkRecord]]:
        return self._run(content.flush, self.ns, change)

    # -- the trash (metadata/trash.py) ---------------------------------------------------------------
    def trash_dir(self) -> Awaitable[int | None]:
        return self._run(trash.trash_dir, self.ns)

    def trash_entries(
        self, after: bytes | None, limit: int
    ) -> Awaitable[tuple[list[trash.TrashEntry], bool]]:
        return self._run(trash.entries, self.ns, after, limit)

    # -- sessions (metadata/sessions.py) ------------------------------------------------------------
    def register(self, session: sessions.Session) -> Awaitable[None]:
        return self._run(sessions.register, self._keys, session)

    def heartbeat(self, now_ns: int) -> Awaitable[bool]:
        return self._run(sessions.heartbeat, self._keys, self.ns.session, now_ns)

    def unregister(self) -> Awaitable[None]:
        return self._run(sessions.unregister, self._keys, self.ns.session)

    def list_sessions(self) -> Awaitable[dict[bytes, sessions.Session]]:
        return self._run(sessions.list_sessions, self._keys)

    def claim(self, victim: bytes, now_ns: int, take_over_from: bytes) -> Awaitable[bool]:
        return self._run(sessions.claim, self._keys, victim, self.ns.session, now_ns, take_over_from)

    def release(self, victim: bytes) -> Awaitable[None]:
        return self._run(sessions.release, self._keys, victim, self.ns.session)

    # -- recovery of dead sessions (metadata/recovery.py) -------------------------------------------
    def leftovers(self) -> Awaitable[dict[bytes, Leftovers]]:
        return self._run(recovery.leftovers, self._keys)

    def dirty_chunk(self, ino: int, index: int, victim: bytes) -> Awaitable[ChunkRecord | None]:
        return self._run(recovery.dirty_chunk, self._keys, ino, index, victim)

    def rebuild_chunk(
        self, ino: int, index: int, victim: bytes, chunk_id: int, checksums: bytes, version: int | None = None
    ) -> Awaitable[bool]:
        return self._run(
            recovery.rebuild_chunk,
            self._keys,
            ino,
            index,
            victim,
            chunk_id,
            checksums,
            self.ns.session,
            version,
        )

    def drop_chunks_beyond_size(self, ino: int, chunk_size: int) -> Awaitable[list[ChunkRecord]]:
        return self._run(recovery.drop_chunks_beyond_size, self._keys, ino, chunk_size, self.ns.session)

    # -- the change log and idempotency records (metadata/changelog.py, idempotency.py) ------------
    def last_versionstamp(self) -> Awaitable[bytes | None]:
        return self._run(changelog.last_versionstamp, self._keys)

    def read_log(self, after: bytes | None, limit: int) -> Awaitable[list[LogRecord]]:
        return self._run(changelog.read_log, self._keys.name, after, limit)

    def watch_log(self) -> Awaitable[Watch]:
        return self._run(changelog.watch_log, self._keys)

    def trim_log(self, now_ns: int) -> Awaitable[int]:
        """Trim a batch of change-log records past the retention that no consumer holds back."""
        config = self.config
        return self._run(consumers.trim, self._keys, now_ns, config.log_retention_s, config.log_hold_s)

    def record_access(self, access: provenance.Access) -> Awaitable[None]:
        return self._run(provenance.record, self._keys, access)

    def trim_provenance(self, older_than_ns: int) -> Awaitable[int]:
        return self._run(provenance.trim, self._keys, older_than_ns)

    def trim_operations(self) -> Awaitable[None]:
        return self._run(trim_operations, self._keys)
