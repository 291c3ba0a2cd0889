"""The pyfuse3 adapter: translates kernel requests into namespace transactions and open-file calls.

Thin by design: POSIX semantics live in metadata/, file data in fusefs/openfile.py and blocks/.  This
module tracks what only the FUSE layer can know: the kernel's lookup counts and the open handles, which
together decide when an unlinked inode can be reclaimed.

Kernel caching: with a single writer (the embedded store is owned by one daemon) every change passes
through this daemon, so the kernel's entry and attribute caches stay right and long timeouts are safe.
On a shared store, other mounts' changes arrive through the change log (fusefs/invalidation.py), which
invalidates the kernel's caches; ``strict`` turns kernel caching off entirely.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import functools
import importlib.metadata
import itertools
import logging
import os
import stat
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyfuse3
import trio

from blocks import BlockStore
from blocks.tier import ChunkTier
from fusefs.attrs import entry_attributes
from fusefs.boundary import fuse_handler
from fusefs.idpool import IdPool
from fusefs.openfile import OpenFile
from fusefs.recovery import Recovery
from fusefs.store_runner import StoreRunner
from metadata import sessions
from metadata.model import Caller, ChunkRecord, FsConfig, FSError, InodeAttr, SetAttrRequest, now_ns
from metadata.namespace import Namespace, Removal
from metadata.store import Store

log = logging.getLogger(__name__)

#: Kernel cache lifetimes when this daemon is the only writer (embedded store).
SOLE_WRITER_TIMEOUT_S = 60.0
#: Kernel cache lifetimes on a shared store, bounding staleness if an invalidation is missed.
SHARED_TIMEOUT_S = 1.0
READDIR_PAGE_ENTRIES = 256
#: Orphans are deleted this long after the first of a batch is queued, at most this many per transaction.
RECLAIM_GATHER_S = 0.005
RECLAIM_BATCH = 256
CAPABILITY_XATTR = b"security.capability"


@dataclass
class DirHandle:
    ino: int
    #: The inode of "..": the root's is the root.
    parent: int
    #: Names handed to the kernel, by cookie; listing resumes after the name a cookie points to.
    names: list[bytes] = field(default_factory=list)
    #: Entries read from the store after ``names[-1]`` but not yet handed to the kernel.
    ahead: deque[tuple[bytes, InodeAttr]] = field(default_factory=deque)
    #: The last name read from the store, and whether no entries follow it.
    read_up_to: bytes | None = None
    read_to_end: bool = False


@dataclass
class FileHandle:
    open_file: OpenFile
    flags: int


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("fusefs")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def caller_of(ctx: pyfuse3.RequestContext, *, with_groups: bool = False) -> Caller:
    groups: tuple[int, ...] = ()
    if with_groups and ctx.uid != 0:
        try:
            groups = tuple(pyfuse3.get_sup_groups(ctx.pid))
        except (OSError, ValueError):
            groups = ()  # the process already exited
    return Caller(uid=ctx.uid, gid=ctx.gid, groups=groups, pid=ctx.pid)


class FuseOperations(pyfuse3.Operations):
    # The kernel's writeback cache is off unless asked for: with it, the kernel batches small writes
    # into pages, but it owns mtime and ctime and sends them in an extra setattr after every rename and
    # unlink, and it forgets st_blocks at each close, so the first stat of a written file is a round
    # trip (measured: rename 4 048 vs 2 872/s, unlink 3 359 vs 2 442/s, tar -x 4.45 vs 3.60 s).
    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(
        self,
        store: Store,
        config: FsConfig,
        blocks: BlockStore,
        *,
        read_only: bool = False,
        strict: bool = False,
        writeback_cache: bool = False,
        tier: ChunkTier | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.blocks = blocks
        self.tier = tier
        self.read_only = read_only
        self.strict = strict
        self.ns = Namespace(config, session=os.urandom(8))
        self.runner = StoreRunner(store)
        self._run = self.runner.run
        self._inode_ids = IdPool(self.runner, self.ns, "inode")
        self._chunk_ids = IdPool(self.runner, self.ns, "chunk")
        if strict:
            self.timeout_s = 0.0
        else:
            self.timeout_s = SHARED_TIMEOUT_S if store.shared else SOLE_WRITER_TIMEOUT_S
        self.enable_writeback_cache = writeback_cache and not strict and not read_only
        self._lookups: Counter[int] = Counter()
        #: Inodes without a name that the kernel or a handle still holds; queued when both let go.
        self._orphans: set[int] = set()
        #: Orphans nobody holds any more, waiting for ``reclaim_queued``.
        self._reclaimable: set[int] = set()
        self._reclaimable_queued = trio.Event()
        self._open_files: dict[int, OpenFile] = {}
        # Large chunk writes, written behind (fusefs/writebehind.py); one thread keeps them in order.
        self._chunk_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chunk-writer")
        self._handles: dict[int, FileHandle | DirHandle] = {}
        self._next_fh = itertools.count(1)
        self.recovery = Recovery(self)
        self._mountpoint = ""

    def fuse_options(self) -> set[str]:
        options = {f"fsname=fusefs:{self.config.name}", "subtype=fusefs", "default_permissions"}
        if self.read_only:
            options.add("ro")
        return options

    # -- helpers ------------------------------------------------------------------------------------
    def _entry(self, attr: InodeAttr, *, counted: bool = True) -> pyfuse3.EntryAttributes:
        if counted:
            self._lookups[attr.ino] += 1
        open_file = self._open_files.get(attr.ino)
        if open_file is not None:
            attr = _with_data_fields(attr, open_file.attr)
        return entry_attributes(attr, self.timeout_s)

    def _check_writable(self) -> None:
        if self.read_only:
            raise FSError(errno.EROFS)

    def _new_fh(self, handle: FileHandle | DirHandle) -> int:
        fh = next(self._next_fh)
        self._handles[fh] = handle
        return fh

    def _file(self, fh: int) -> FileHandle:
        handle = self._handles.get(fh)
        if not isinstance(handle, FileHandle):
            raise FSError(errno.EBADF)
        return handle

    def _dir(self, fh: int) -> DirHandle:
        handle = self._handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise FSError(errno.EBADF)
        return handle

    async def _open_file(self, ino: int, known: InodeAttr | None = None) -> OpenFile:
        """The open file of ``ino`` with one more reference; ``known`` saves reading its attributes."""
        open_file = self._open_files.get(ino)
        if open_file is None:
            # Never load a checksum table that recovery is about to rebuild (fusefs/recovery.py).
            await self.recovery.wait_for(ino)
            open_file = self._open_files.get(ino)
        if open_file is None:
            attr = known if known is not None else await self._run(self.ns.getattr, ino)
            # Another open may have made it while the store was read (transactions in worker threads):
            # two open files of one inode would each write back their own copy of its data.
            open_file = self._open_files.get(ino)
            if open_file is None:
                open_file = OpenFile(
                    attr,
                    self.ns,
                    self.blocks,
                    self.runner,
                    self._chunk_ids,
                    self.store.sync,
                    self._chunk_writer,
                    kernel_tracks_mtime=self.enable_writeback_cache,
                    tier=self.tier,
                )
                self._open_files[ino] = open_file
        open_file.refs += 1
        return open_file

    async def _close_file(self, open_file: OpenFile) -> None:
        # The reference is dropped after the flush: an open meanwhile must find this open file (whose
        # data may not be in the store yet), not load a stale copy of its own.
        try:
            await open_file.flush()
        finally:
            open_file.refs -= 1
            if open_file.refs == 0 and self._open_files.get(open_file.ino) is open_file:
                del self._open_files[open_file.ino]
                self._queue_if_unused(open_file.ino)

    def _still_open(self, ino: int) -> bool:
        """Whether a handle or the kernel holds ``ino``: a file the kernel has looked up may still be
        opened by a path walk that found it before it lost its last name (as on a local disk)."""
        return ino in self._open_files or self._lookups.get(ino, 0) > 0

    async def _after_removal(self, removal: Removal | None) -> None:
        if removal is not None and removal.freed_chunks:
            await self.delete_chunk_files(removal.freed_chunks)
        if removal is not None and removal.is_orphan:
            self._orphans.add(removal.attr.ino)
            self._queue_if_unused(removal.attr.ino)

    def _queue_if_unused(self, ino: int) -> None:
        """Queue an orphan for deletion once the kernel has forgotten it and no handle has it open.

        Deleting waits for the background task ``reclaim_queued``: an ``rm -rf`` makes the kernel
        forget one inode per unlink, and one transaction per batch costs far less than one each."""
        if self._still_open(ino) or self.read_only:
            return
        self._orphans.discard(ino)
        self._reclaimable.add(ino)
        self._reclaimable_queued.set()

    async def reclaim_queued(self) -> None:
        """Wait for queued orphans, give more a moment to gather, then delete them, batch by batch."""
        await self._reclaimable_queued.wait()
        self._reclaimable_queued = trio.Event()
        await trio.sleep(RECLAIM_GATHER_S)
        while self._reclaimable:
            batch = [self._reclaimable.pop() for _ in range(min(RECLAIM_BATCH, len(self._reclaimable)))]
            # Shielded: an unmount must not cut a batch between its transaction and the deletion of
            # its chunk files, which would leave files no record owns until the next gc.
            with trio.CancelScope(shield=True):
                await self._reclaim(batch)

    async def _reclaim(self, inos: list[int], session: bytes | None = None) -> None:
        for start in range(0, len(inos), RECLAIM_BATCH):
            batch = inos[start : start + RECLAIM_BATCH]
            chunks = await self._run(functools.partial(self.ns.reclaim, session=session), *batch)
            await self.delete_chunk_files(chunks)

    async def reclaim_orphans_of(self, session: bytes, inos: list[int]) -> None:
        """Reclaim orphans a dead session left (those it still owns: see ``Namespace.reclaim``)."""
        with trio.CancelScope(shield=True):  # as in ``reclaim_queued``: no chunk file left unowned
            await self._reclaim(inos, session)

    async def delete_chunk_files(self, chunks: list[ChunkRecord]) -> None:
        for record in chunks:
            await trio.to_thread.run_sync(self.blocks.delete, record.dir_index, record.chunk_id)

    def forget_cached_data(self, ino: int) -> None:
        """Another mount changed ``ino``: reload its data at next use unless we hold unflushed writes."""
        open_file = self._open_files.get(ino)
        if open_file is not None:
            open_file.invalidate()
        self._forget_capability_answer(ino)

    # -- life cycle ---------------------------------------------------------------------------------
    async def recover(self, mountpoint: str) -> None:
        """Register this mount's session, before it serves: from then on its records are its own, and
        other mounts know it is alive.  What dead mounts left is recovered in the background
        (fusefs/recovery.py, started by ``run_services``), while requests are answered."""
        if self.read_only:
            return
        self._mountpoint = mountpoint
        await self._register()

    async def _register(self) -> None:
        session = sessions.Session.start(
            self.ns.session, self.recovery.here, self._mountpoint, _version(), now_ns()
        )
        await self._run(sessions.register, self.ns.keys, session)

    async def renew_session(self) -> None:
        """Renew the heartbeat; if another mount took this one for dead and is recovering it (it stalled
        past the timeout), carry on as a new session."""
        if await self._run(sessions.heartbeat, self.ns.keys, self.ns.session, now_ns()):
            return
        old = self.ns.session
        self.ns.session = os.urandom(8)
        log.error(
            "this mount's session %s was taken for dead (no heartbeat for over %g s) and is being "
            "recovered by another mount: its unlinked open files may be gone; registered as session %s",
            old.hex(),
            sessions.timeout_s(),
            self.ns.session.hex(),
        )
        await self._register()

    async def run_services(self) -> None:
        from fusefs.services import run_services

        await run_services(self)

    async def shutdown(self) -> None:
        """Flush open files and reclaim orphans: after unmount the kernel holds no inode any more."""
        try:
            for open_file in list(self._open_files.values()):
                await open_file.flush()
        finally:
            self._chunk_writer.shutdown(wait=True)
        if not self.read_only:
            try:
                await self._reclaim(await self._run(self.ns.orphans, self.ns.session))
            finally:
                # Whatever could not be done is this session's leftovers: the next mount recovers them.
                await self._run(sessions.unregister, self.ns.keys, self.ns.session)
        await trio.to_thread.run_sync(self.store.sync)

    # -- lookups and attributes ---------------------------------------------------------------------
    @fuse_handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if name == b".":
            return self._entry(await self._run(self.ns.getattr, parent_inode))
        if name == b"..":
            parent = await self._run(self.ns.getattr, parent_inode)
            return self._entry(await self._run(self.ns.getattr, parent.parent))
        try:
            return self._entry(await self._run(self.ns.lookup, parent_inode, name))
        except FSError as error:
            if error.errno != errno.ENOENT or not self.timeout_s:
                raise
            # A negative entry (inode 0) the kernel may cache: repeated lookups of missing names (PATH
            # searches, imports, build tools) then stay in the kernel.  A create through this mount
            # replaces it; other mounts' creates invalidate it through the change log.
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = 0
            negative.entry_timeout = self.timeout_s
            return negative

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        # Must not raise (pyfuse3: it answers no request); it only counts and queues.
        for ino, count in inode_list:
            left = self._lookups[ino] - count
            if left > 0:
                self._lookups[ino] = left
                continue
            self._lookups.pop(ino, None)
            if ino in self._orphans:
                self._queue_if_unused(ino)

    @fuse_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        open_file = self._open_files.get(inode)
        if open_file is not None and open_file.has_unflushed_writes:
            await open_file.count_allocated()  # st_blocks of data not flushed yet
        return self._entry(await self._run(self.ns.getattr, inode), counted=False)

    @fuse_handler
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        self._check_writable()
        caller = caller_of(ctx, with_groups=fields.update_mode)
        request = SetAttrRequest(
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
        )
        open_file = self._open_files.get(inode)
        only_times = not (fields.update_size or fields.update_mode or fields.update_uid or fields.update_gid)
        if only_times and open_file is not None and open_file.has_unflushed_writes:
            open_file.set_times(request.atime_ns, request.mtime_ns)
            return self._entry(await self._run(self.ns.getattr, inode), counted=False)
        if fields.update_size:
            await self._truncate(inode, attr.st_size, caller)
            open_file = self._open_files.get(inode)
        # Pending writes of an open file need not be flushed first: the flush transaction rewrites only
        # the data fields (size, times, storage), so mode and ownership set here survive it.
        new_attr = await self._run(self.ns.setattr, inode, request, caller)
        if open_file is not None:
            open_file.attr = _with_data_fields(new_attr, open_file.attr)
            if request.atime_ns is not None:
                open_file.attr.atime_ns = request.atime_ns
            if request.mtime_ns is not None:
                open_file.attr.mtime_ns = request.mtime_ns
        return self._entry(new_attr, counted=False)

    async def _truncate(self, inode: int, size: int, caller: Caller) -> None:
        open_file = await self._open_file(inode)
        try:
            if not open_file.attr.is_reg:
                raise FSError(errno.EINVAL)
            await self._resize(open_file, size, caller)
        finally:
            await self._close_file(open_file)

    async def _resize(self, open_file: OpenFile, size: int, caller: Caller) -> None:
        """Truncate and commit at once; chunk files cut off are deleted only after the commit, so a
        crash in between leaves garbage for gc, never a record pointing at a missing file."""
        dropped = await open_file.truncate(size)
        await open_file.flush(caller)
        await self.delete_chunk_files(dropped)

    @fuse_handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return await self._run(self.ns.readlink, inode)

    # -- creating and removing ----------------------------------------------------------------------
    async def _create(
        self,
        parent: int,
        name: bytes,
        mode: int,
        ctx: pyfuse3.RequestContext,
        rdev: int = 0,
        target: bytes = b"",
    ) -> InodeAttr:
        self._check_writable()
        ino = await self._inode_ids.take()
        caller = caller_of(ctx, with_groups=True)
        return await self._run(self.ns.create, parent, name, ino, mode, caller, rdev, target)

    @fuse_handler
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._entry(await self._create(parent_inode, name, mode, ctx, rdev))

    @fuse_handler
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._entry(await self._create(parent_inode, name, stat.S_IFDIR | (mode & 0o7777), ctx))

    @fuse_handler
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._entry(await self._create(parent_inode, name, stat.S_IFLNK | 0o777, ctx, target=target))

    @fuse_handler
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        attr = await self._create(parent_inode, name, stat.S_IFREG | (mode & 0o7777), ctx)
        open_file = await self._open_file(attr.ino, dataclasses.replace(attr))
        open_file.start_new()
        fh = self._new_fh(FileHandle(open_file, flags))
        return pyfuse3.FileInfo(fh=fh), self._entry(attr)

    @fuse_handler
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._check_writable()
        open_file = self._open_files.get(inode)
        if open_file is not None:
            await open_file.flush()
        return self._entry(await self._run(self.ns.link, inode, new_parent_inode, new_name, caller_of(ctx)))

    @fuse_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        removal = await self._run(self.ns.unlink, parent_inode, name, caller_of(ctx), self._still_open)
        await self._after_removal(removal)

    @fuse_handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        await self._after_removal(await self._run(self.ns.rmdir, parent_inode, name, caller_of(ctx)))

    @fuse_handler
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        self._check_writable()
        if flags & ~(pyfuse3.RENAME_NOREPLACE | pyfuse3.RENAME_EXCHANGE):
            # RENAME_WHITEOUT (for overlayfs) would leave a whiteout at the old name: not implemented,
            # so refused rather than done as a plain rename.
            raise FSError(errno.EINVAL)
        rename = functools.partial(
            self.ns.rename,
            noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
            exchange=bool(flags & pyfuse3.RENAME_EXCHANGE),
            still_open=self._still_open,
        )
        removal = await self._run(
            rename, parent_inode_old, name_old, parent_inode_new, name_new, caller_of(ctx)
        )
        await self._after_removal(removal)

    # -- files --------------------------------------------------------------------------------------
    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self._check_writable()
        open_file = await self._open_file(inode)
        if flags & os.O_TRUNC:
            await self._resize(open_file, 0, caller_of(ctx))
        fh = self._new_fh(FileHandle(open_file, flags))
        # The page cache stays valid across opens: every change to the data passes through this mount,
        # which the kernel sees (strict mode re-reads).
        return pyfuse3.FileInfo(fh=fh, keep_cache=not self.strict)

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self._file(fh).open_file.read(off, size)

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._file(fh)
        append = bool(handle.flags & os.O_APPEND) and not self.enable_writeback_cache
        return await handle.open_file.write(off, buf, append=append)

    @fuse_handler
    async def flush(self, fh: int) -> None:
        await self._file(fh).open_file.flush()

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._file(fh).open_file.fsync()

    @fuse_handler
    async def release(self, fh: int) -> None:
        handle = self._file(fh)
        del self._handles[fh]
        await self._close_file(handle.open_file)

    # -- directories --------------------------------------------------------------------------------
    @fuse_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        attr = await self._run(self.ns.getattr, inode)
        if not attr.is_dir:
            raise FSError(errno.ENOTDIR)
        return self._new_fh(DirHandle(inode, parent=attr.parent or inode))

    @fuse_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._dir(fh)
        if start_id != len(handle.names):  # a rewind or seekdir: what was fetched ahead is moot
            del handle.names[start_id:]
            handle.ahead.clear()
            handle.read_up_to = handle.names[-1] if len(handle.names) > 2 else None
            handle.read_to_end = False
        if start_id < 2:
            # The kernel takes only the inode number and type of "." and ".." (their attributes in a
            # readdirplus answer are ignored), so they need no read.
            for name, ino in [(b".", handle.ino), (b"..", handle.parent)][start_id:]:
                dot = pyfuse3.EntryAttributes()
                dot.st_ino, dot.st_mode = ino, stat.S_IFDIR
                if not self._reply_entry(token, handle, name, dot):
                    return
        while True:
            if not handle.ahead:
                if handle.read_to_end:
                    return
                page = await self._run(
                    self.ns.readdir_page, handle.ino, handle.read_up_to, READDIR_PAGE_ENTRIES
                )
                handle.ahead.extend(page.entries)
                handle.read_up_to, handle.read_to_end = page.last_name, page.complete
                continue
            # The kernel's buffer holds a few dozen entries per request: keep the rest of the page for
            # the next request instead of reading it from the store again.
            while handle.ahead:
                name, attr = handle.ahead[0]
                if not self._reply_entry(token, handle, name, self._entry(attr, counted=False)):
                    return
                handle.ahead.popleft()
                self._lookups[attr.ino] += 1  # readdirplus: each entry accepted counts as a lookup

    def _reply_entry(
        self, token: pyfuse3.ReaddirToken, handle: DirHandle, name: bytes, entry: pyfuse3.EntryAttributes
    ) -> bool:
        """Offer one entry to the kernel; False when its buffer is full (the entry was not taken)."""
        accepted = pyfuse3.readdir_reply(token, name, entry, len(handle.names) + 1)
        if accepted:
            handle.names.append(name)
        return bool(accepted)

    @fuse_handler
    async def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    @fuse_handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await trio.to_thread.run_sync(self.store.sync)

    # -- extended attributes ------------------------------------------------------------------------
    @fuse_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        # Without SB_NOSEC on FUSE, the kernel asks for security.capability before every write(2) to
        # see whether it must drop privileges: while the file is open here, the answer is remembered.
        open_file = self._open_files.get(inode)
        if name == CAPABILITY_XATTR and open_file is not None and open_file.known_without_capability:
            raise FSError(errno.ENODATA)
        try:
            return await self._run(self.ns.getxattr, inode, name)
        except FSError as error:
            open_file = self._open_files.get(inode)
            if name == CAPABILITY_XATTR and error.errno == errno.ENODATA and open_file is not None:
                open_file.known_without_capability = True
            raise

    @fuse_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        names = await self._run(self.ns.listxattr, inode)
        if ctx.uid != 0:
            # xattr(7): trusted.* is visible only to CAP_SYS_ADMIN; the kernel filters get/set, not lists.
            names = [name for name in names if not name.startswith(b"trusted.")]
        return names

    @fuse_handler
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        self._forget_capability_answer(inode)
        await self._run(self.ns.setxattr, inode, name, value, caller_of(ctx))

    @fuse_handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        self._forget_capability_answer(inode)
        await self._run(self.ns.removexattr, inode, name, caller_of(ctx))

    def _forget_capability_answer(self, ino: int) -> None:
        open_file = self._open_files.get(ino)
        if open_file is not None:
            open_file.known_without_capability = False

    # -- the filesystem -----------------------------------------------------------------------------
    @fuse_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        inodes_used, _ = await self._run(self.ns.statfs)
        total_bytes, free_bytes = await trio.to_thread.run_sync(self.blocks.usage)
        return statvfs_data(inodes_used, total_bytes, free_bytes)


def statvfs_data(inodes_used: int, total_bytes: int, free_bytes: int) -> pyfuse3.StatvfsData:
    data = pyfuse3.StatvfsData()
    block = 4096
    data.f_bsize = block
    data.f_frsize = block
    data.f_blocks = total_bytes // block
    data.f_bfree = free_bytes // block
    data.f_bavail = free_bytes // block
    inode_capacity = max(2**32, inodes_used * 2)
    data.f_files = inode_capacity
    data.f_ffree = inode_capacity - inodes_used
    data.f_favail = data.f_ffree
    data.f_namemax = 255
    return data


def _with_data_fields(stored: InodeAttr, live: InodeAttr) -> InodeAttr:
    """``stored`` with the size and times of the open file, which may be ahead of the store."""
    stored.size = live.size
    stored.chunked = live.chunked
    stored.allocated = live.allocated
    stored.atime_ns = live.atime_ns
    stored.mtime_ns = live.mtime_ns
    return stored
