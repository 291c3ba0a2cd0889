"""The pyfuse3 adapter: translates kernel requests into metadata operations and open-file calls.

Thin by design: each handler calls one typed entry point of metadata/meta.py (which opens its own
transaction around a function of metadata/namespace.py) or an open file (fusefs/openfile.py, whose
data path is in metadata/content.py and blocks/).  What only the FUSE layer knows lives beside it: the
handle table (fusefs/handles.py), the open-file table (fusefs/openfiles.py), and the kernel's lookup
counts with the orphans they keep alive (fusefs/lifecycle.py).  fusefs/filesystem.py wires them.

Kernel caching: with a single writer (the embedded store is owned by one daemon) every change passes
through this daemon, so the kernel's entry and attribute caches stay right and long timeouts are safe.
On a shared store, other mounts' changes arrive through the change log (fusefs/invalidation.py), which
invalidates the kernel's caches; ``strict`` turns kernel caching off entirely.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence

import pyfuse3
import trio

from blocks import BlockStore
from fusefs import quotactl
from fusefs.accesses import HandleAccess
from fusefs.attrs import entry_attributes
from fusefs.boundary import fuse_handler
from fusefs.handles import DirHandle, FileHandle, HandleTable
from fusefs.idpool import IdPool
from fusefs.lifecycle import InodeLifecycle
from fusefs.nscache import NamespaceCache
from fusefs.openfile import OpenFile
from fusefs.openfiles import OpenFiles
from metadata import acl
from metadata.meta import Meta
from metadata.model import Caller, FSError, InodeAttr, SetAttrRequest
from metadata.namespace import check_name

#: Kernel cache lifetimes when this daemon is the only writer (embedded store).
SOLE_WRITER_TIMEOUT_S = 60.0
#: Kernel cache lifetimes on a shared store, bounding staleness if an invalidation is missed.
SHARED_TIMEOUT_S = 1.0
READDIR_PAGE_ENTRIES = 256
CAPABILITY_XATTR = b"security.capability"


def kernel_timeout_s(*, shared: bool, strict: bool) -> float:
    """How long the kernel (and fusefs/nscache.py) may keep entries and attributes."""
    if strict:
        return 0.0
    return SHARED_TIMEOUT_S if shared else SOLE_WRITER_TIMEOUT_S


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
    # FUSE_POSIX_ACL: the kernel enforces the ACLs it reads from system.posix_acl_* (metadata/acl.py).
    enable_acl = True

    def __init__(
        self,
        meta: Meta,
        blocks: BlockStore,
        handles: HandleTable,
        open_files: OpenFiles,
        lifecycle: InodeLifecycle,
        sync_store: Callable[[], None],
        cache: NamespaceCache,
        *,
        shared: bool,
        read_only: bool = False,
        strict: bool = False,
        writeback_cache: bool = False,
        acl: bool = False,
        provenance: bool = False,
    ) -> None:
        super().__init__()
        self.meta = meta
        self._blocks = blocks
        self._handles = handles
        self._open_files = open_files
        self._lifecycle = lifecycle
        self._sync_store = sync_store
        self.read_only = read_only
        self.strict = strict
        self._cache = cache
        self._inode_ids = IdPool(meta, "inode")
        self.timeout_s = kernel_timeout_s(shared=shared, strict=strict)
        self.enable_writeback_cache = writeback_cache and not strict and not read_only
        # FUSE_POSIX_ACL: the kernel enforces the ACLs it reads from system.posix_acl_* (metadata/acl.py).
        # Without it the kernel still passes those names through to us: they are refused, since an ACL
        # stored but not enforced would mislead.
        self.enable_acl = acl
        #: Record every open and close of a file (metadata/provenance.py); not on a read-only mount.
        self.provenance = provenance and not read_only

    def fuse_options(self) -> set[str]:
        options = {f"fsname=fusefs:{self.meta.config.name}", "subtype=fusefs", "default_permissions"}
        if self.read_only:
            options.add("ro")
        return options

    # -- helpers ------------------------------------------------------------------------------------
    def _entry(self, attr: InodeAttr, *, counted: bool = True) -> pyfuse3.EntryAttributes:
        if counted:
            self._lifecycle.lookups[attr.ino] += 1
        open_file = self._open_files.get(attr.ino)
        if open_file is not None:
            attr = _with_data_fields(attr, open_file.attr)
        return entry_attributes(attr, self.timeout_s)

    def _check_acl_name(self, name: bytes) -> None:
        if not self.enable_acl and acl.is_acl(name):
            raise FSError(errno.EOPNOTSUPP)

    def _check_writable(self) -> None:
        if self.read_only:
            raise FSError(errno.EROFS)

    async def _close_file(self, open_file: OpenFile) -> None:
        if await self._open_files.close(open_file):
            self._lifecycle.queue_if_unused(open_file.ino)

    # -- lookups and attributes ---------------------------------------------------------------------
    @fuse_handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if name == b".":
            return self._entry(await self.meta.getattr(parent_inode))
        if name == b"..":
            parent = await self.meta.getattr(parent_inode)
            return self._entry(await self.meta.getattr(parent.parent))
        check_name(name)  # ENAMETOOLONG before any answer from the cache
        known, attr = self._cache.lookup(parent_inode, name)
        try:
            if known and attr is None:
                raise FSError(errno.ENOENT)
            if attr is None:
                attr = await self.meta.lookup(parent_inode, name, self._cache.hint(parent_inode, name))
            return self._entry(attr)
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
        self._lifecycle.forget(inode_list)

    @fuse_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        open_file = self._open_files.get(inode)
        if open_file is not None and open_file.has_unflushed_writes:
            await open_file.count_allocated()  # st_blocks of data not flushed yet
        attr = self._cache.attr(inode) or await self.meta.getattr(inode)
        return self._entry(attr, counted=False)

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
            # Answered as getattr is: the times come from the open file, the rest from the cache if fresh.
            return self._entry(self._cache.attr(inode) or await self.meta.getattr(inode), counted=False)
        if fields.update_size:
            await self._truncate(inode, attr.st_size, caller)
            open_file = self._open_files.get(inode)
        # Pending writes of an open file need not be flushed first: the flush transaction rewrites only
        # the data fields (size, times, storage), so mode and ownership set here survive it.
        new_attr = await self.meta.setattr(inode, request, caller)
        if open_file is not None:
            open_file.attr = _with_data_fields(new_attr, open_file.attr)
            if request.atime_ns is not None:
                open_file.attr.atime_ns = request.atime_ns
            if request.mtime_ns is not None:
                open_file.attr.mtime_ns = request.mtime_ns
        return self._entry(new_attr, counted=False)

    async def _truncate(self, inode: int, size: int, caller: Caller) -> None:
        open_file = await self._open_files.open(inode)
        try:
            if not open_file.attr.is_reg:
                raise FSError(errno.EINVAL)
            await self._resize(open_file, size, caller)
        finally:
            await self._close_file(open_file)

    async def _resize(self, open_file: OpenFile, size: int, caller: Caller) -> None:
        """Truncate and commit at once; the flush deletes the chunk files cut off after its commit, so
        a crash in between leaves garbage for gc, never a record pointing at a missing file."""
        await open_file.truncate(size)
        await open_file.flush(caller)

    @fuse_handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return await self.meta.readlink(inode)

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
        return await self.meta.create(parent, name, ino, mode, caller, rdev, target)

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
        open_file = await self._open_files.open(attr.ino, attr.copy())
        open_file.start_new()
        fh = self._add_file_handle(FileHandle(open_file, flags), ctx)
        return pyfuse3.FileInfo(fh=fh), self._entry(attr)

    @fuse_handler
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._check_writable()
        open_file = self._open_files.get(inode)
        if open_file is not None:
            await open_file.flush()
        return self._entry(await self.meta.link(inode, new_parent_inode, new_name, caller_of(ctx)))

    @fuse_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        hint = self._cache.hint(parent_inode, name)
        removal = await self.meta.unlink(parent_inode, name, caller_of(ctx), self._lifecycle.still_open, hint)
        await self._lifecycle.after_removal(removal)

    @fuse_handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        await self._lifecycle.after_removal(await self.meta.rmdir(parent_inode, name, caller_of(ctx)))

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
        removal = await self.meta.rename(
            parent_inode_old,
            name_old,
            parent_inode_new,
            name_new,
            caller_of(ctx),
            noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
            exchange=bool(flags & pyfuse3.RENAME_EXCHANGE),
            still_open=self._lifecycle.still_open,
            hints=(
                self._cache.hint(parent_inode_old, name_old),
                self._cache.hint(parent_inode_new, name_new),
            ),
        )
        await self._lifecycle.after_removal(removal)

    # -- files --------------------------------------------------------------------------------------
    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self._check_writable()
        open_file = await self._open_files.open(inode)
        if flags & os.O_TRUNC:
            await self._resize(open_file, 0, caller_of(ctx))
        fh = self._add_file_handle(FileHandle(open_file, flags), ctx)
        # The page cache stays valid across opens: every change to the data passes through this mount,
        # which the kernel sees (strict mode re-reads).  With provenance each open reads through us once,
        # so that its bytes read are counted.
        return pyfuse3.FileInfo(fh=fh, keep_cache=not self.strict and not self.provenance)

    def _add_file_handle(self, handle: FileHandle, ctx: pyfuse3.RequestContext) -> int:
        fh = self._handles.add(handle)
        if self.provenance:
            ino, session = handle.open_file.ino, self.meta.session
            handle.access = HandleAccess.start(ino, ctx.uid, ctx.pid, session, fh)
        return fh

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handles.file(fh)
        data = await handle.open_file.read(off, size)
        if handle.access is not None:
            handle.access.access.bytes_read += len(data)
        return data

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handles.file(fh)
        append = bool(handle.flags & os.O_APPEND) and not self.enable_writeback_cache
        written = await handle.open_file.write(off, buf, append=append)
        if handle.access is not None:
            handle.access.access.bytes_written += written
        return written

    @fuse_handler
    async def flush(self, fh: int) -> None:
        handle = self._handles.file(fh)
        await handle.open_file.flush(access=handle.access)

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._handles.file(fh).open_file.fsync()

    @fuse_handler
    async def release(self, fh: int) -> None:
        handle = self._handles.file(fh)
        self._handles.remove(fh)
        try:
            await self._close_file(handle.open_file)
        finally:
            if handle.access is not None and handle.access.changed:
                await self.meta.record_access(handle.access.stamped())

    # -- directories --------------------------------------------------------------------------------
    @fuse_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        attr = await self.meta.getattr(inode)
        if not attr.is_dir:
            raise FSError(errno.ENOTDIR)
        return self._handles.add(DirHandle(inode, parent=attr.parent or inode))

    @fuse_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._handles.dir(fh)
        handle.seek(start_id)
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
                page = await self.meta.readdir_page(handle.ino, handle.read_up_to, READDIR_PAGE_ENTRIES)
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
                self._lifecycle.lookups[attr.ino] += 1  # readdirplus: each entry accepted counts as a lookup

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
        self._handles.remove(fh)

    @fuse_handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await trio.to_thread.run_sync(self._sync_store)

    # -- extended attributes ------------------------------------------------------------------------
    @fuse_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        self._check_acl_name(name)
        if name in quotactl.NAMES:
            return await self._get_quota_xattr(inode, name)
        # Without SB_NOSEC on FUSE, the kernel asks for security.capability before every write(2) to
        # see whether it must drop privileges: while the file is open here, the answer is remembered.
        if name == CAPABILITY_XATTR and self._open_files.known_without_capability(inode):
            raise FSError(errno.ENODATA)
        try:
            return await self.meta.getxattr(inode, name)
        except FSError as error:
            if name == CAPABILITY_XATTR and error.errno == errno.ENODATA:
                self._open_files.remember_without_capability(inode)
            raise

    @fuse_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        names = await self.meta.listxattr(inode)
        if ctx.uid != 0:
            # xattr(7): trusted.* is visible only to CAP_SYS_ADMIN; the kernel filters get/set, not lists.
            names = [name for name in names if not name.startswith(b"trusted.")]
        if not self.enable_acl:
            names = [name for name in names if not acl.is_acl(name)]  # stored by a mount with ACLs
        return names

    @fuse_handler
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        self._check_acl_name(name)
        if name == quotactl.QUOTA:
            await self.meta.quota_set(inode, *quotactl.parse_limits(value))
            return
        if name == quotactl.CHECK:
            await self.meta.quota_check()
            return
        self._open_files.forget_capability_answer(inode)
        await self.meta.setxattr(inode, name, value, caller_of(ctx))

    @fuse_handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._check_writable()
        self._check_acl_name(name)
        if name == quotactl.QUOTA:
            await self.meta.quota_unset(inode)
            return
        self._open_files.forget_capability_answer(inode)
        await self.meta.removexattr(inode, name, caller_of(ctx))

    async def _get_quota_xattr(self, inode: int, name: bytes) -> bytes:
        if name == quotactl.QUOTAS:
            return quotactl.format_quotas(await self.meta.quota_list())
        found = await self.meta.quota_get(inode)
        if not found:
            raise FSError(errno.ENODATA)
        return quotactl.format_quotas(found)

    # -- the filesystem -----------------------------------------------------------------------------
    @fuse_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        inodes_used, _ = await self.meta.statfs()
        total_bytes, free_bytes = await trio.to_thread.run_sync(self._blocks.usage)
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
