"""The filesystem namespace as transaction functions: inodes, directory entries, links, rename, setattr.

Every public method takes the transaction first and is retry-safe: it is a pure function of what it
reads, identifiers (inode numbers) are chosen by the caller before the transaction, and every mutation
that a second application would repeat (counters, change-log records) or change the result of is
wrapped whole in ``idempotent_method``, so a retry after ``CommitUnknownResult`` returns the result of
the attempt that committed (metadata/idempotency.py).  Read-only operations use snapshot reads;
mutations read what they depend on serializably, so concurrent conflicting operations (two renames
forming a loop, a create racing an rmdir) are serialized by the store.

Permission checks on paths (search, write, sticky directories) are made by the kernel (the mount uses
``default_permissions``); the rules the kernel leaves to the filesystem (setgid inheritance, clearing
set-id bits on chown) are applied here.
"""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metadata import acl, changelog, filedata, index, quota, trash, written, xattrs
from metadata.idempotency import idempotent_method
from metadata.keys import FsKeys, all_filesystems_range, filesystem_of
from metadata.model import (
    NAME_MAX_BYTES,
    ROOT_INODE,
    SYMLINK_MAX_BYTES,
    Caller,
    ChunkRecord,
    FsConfig,
    FSError,
    InodeAttr,
    InodeId,
    Removal,
    SetAttrRequest,
    new_fs_id,
    now_ns,
    pack,
    unpack,
    unpack_list,
)
from metadata.store import CorruptValue, Store, StoreError, Transaction, decode_int64

log = logging.getLogger(__name__)
LINK_MAX = 65000
_COUNTER_SHARDS = 16
_FIRST_FREE_INODE = 2


class FilesystemExists(StoreError):
    pass


class UnknownFilesystem(StoreError):
    pass


def _always_open(ino: int) -> bool:
    return True


def check_name(name: bytes) -> None:
    if len(name) > NAME_MAX_BYTES:
        raise FSError(errno.ENAMETOOLONG)
    if not name or b"/" in name or b"\0" in name:
        raise FSError(errno.EINVAL)


@dataclass
class DirPage:
    entries: list[tuple[bytes, InodeAttr]]
    #: The last name read: entries of damaged inodes are left out, so it may not be the last returned.
    last_name: bytes | None
    #: No entries follow.
    complete: bool


class Namespace:
    """The namespace operations of one filesystem."""

    def __init__(self, config: FsConfig, session: bytes = b"") -> None:
        self.config = config
        self.keys = FsKeys(config.name)
        #: Tags this mount's change-log records, so its cache invalidation skips its own changes.
        self.session = session

    def _log(
        self,
        tr: Transaction,
        op: str,
        uid: int,
        ino: int,
        parent: int | None = None,
        name: bytes | None = None,
        new_parent: int | None = None,
        new_name: bytes | None = None,
    ) -> None:
        changelog.append(tr, self.keys, op, uid, ino, parent, name, new_parent, new_name, self.session)

    # -- records ------------------------------------------------------------------------------------
    def _load(self, tr: Transaction, ino: int, *, snapshot: bool = False) -> InodeAttr:
        return _read_attr(tr, ino, tr.get(self.keys.attr(ino), snapshot=snapshot))

    def _load_many(self, tr: Transaction, inos: list[int]) -> list[InodeAttr]:
        """Attributes of several inodes, read in one round trip with their quota charges (which a move
        between directories or a deletion consults)."""
        raws = tr.get_many([*(self.keys.attr(ino) for ino in inos), *map(self.keys.quota_charges, inos)])
        return [_read_attr(tr, ino, raw) for ino, raw in zip(inos, raws[: len(inos)], strict=True)]

    def _save(self, tr: Transaction, attr: InodeAttr) -> None:
        tr.set(self.keys.attr(attr.ino), attr.encode())
        written.wrote_attr(tr, attr)

    def _directory(self, tr: Transaction, ino: int) -> InodeAttr:
        return _as_directory(self._load(tr, ino))

    def _directory_and_entries(
        self, tr: Transaction, parent: int, *names: bytes, hints: Sequence[int | None] = ()
    ) -> tuple[InodeAttr, list[int | None]]:
        """Directory ``parent`` and the inodes its ``names`` point to (None: no such entry), read in one
        round trip: on FoundationDB every serial read costs a network round trip."""
        directories, inos = self._directories_and_entries(tr, [(parent, name) for name in names], hints)
        return directories.get(parent) or self._directory(tr, parent), inos

    def _directories_and_entries(
        self,
        tr: Transaction,
        places: Sequence[tuple[int, bytes]],
        hints: Sequence[int | None] = (),
        also: Sequence[bytes] = (),
    ) -> tuple[dict[int, InodeAttr], list[int | None]]:
        """The directories of ``places`` (directory, name) and the inodes the names point to, in one
        round trip.  The records of the inodes in ``hints`` (those the names named when last seen) are
        fetched in the same round trip, so that reading them next costs none while the names still name
        them (FoundationDB's client answers a key read twice in a transaction from its cache); so are the
        keys in ``also``."""
        parents = list(dict.fromkeys(parent for parent, _ in places))
        keys = [self.keys.attr(parent) for parent in parents]
        keys += [self.keys.entry(parent, name) for parent, name in places]
        for hint in hints:
            if hint is not None:
                keys += [self.keys.attr(hint), self.keys.quota_charges(hint)]
        raws = tr.get_many([*keys, *also])
        directories = {
            parent: _as_directory(_read_attr(tr, parent, raw)) for parent, raw in zip(parents, raws)
        }
        entries = raws[len(parents) : len(parents) + len(places)]
        inos = [
            _read_entry(tr, parent, name, raw) for (parent, name), raw in zip(places, entries, strict=True)
        ]
        return directories, inos

    def _entry(self, tr: Transaction, parent: int, name: bytes, *, snapshot: bool = False) -> int | None:
        return _read_entry(tr, parent, name, tr.get(self.keys.entry(parent, name), snapshot=snapshot))

    def _set_entry(self, tr: Transaction, parent: int, name: bytes, attr: InodeAttr) -> None:
        tr.set(self.keys.entry(parent, name), pack([attr.ino, stat.S_IFMT(attr.mode)]))
        written.wrote_entry(tr, parent, name, attr.ino)

    def _clear_entry(self, tr: Transaction, parent: int, name: bytes) -> None:
        tr.clear(self.keys.entry(parent, name))
        written.wrote_entry(tr, parent, name, None)

    def _count_inodes(self, tr: Transaction, ino: int, delta: int) -> None:
        tr.add(self.keys.counter("inodes", ino % _COUNTER_SHARDS), delta)

    def count_bytes(self, tr: Transaction, attr: InodeAttr, delta: int) -> None:
        """A regular file's size changed: the filesystem's counter and its quotas (EDQUOT)."""
        if delta:
            quota.add_bytes(tr, self.keys, attr, delta)
            self._count_file_bytes(tr, attr.ino, delta)

    def _count_file_bytes(self, tr: Transaction, ino: int, delta: int) -> None:
        if delta:
            tr.add(self.keys.counter("bytes", ino % _COUNTER_SHARDS), delta)

    def _sum_counter(self, tr: Transaction, name: str) -> int:
        begin, end = self.keys.counters(name)
        return sum(decode_int64(value) for _, value in tr.iter_range(begin, end, snapshot=True))

    def _is_empty_dir(self, tr: Transaction, ino: int) -> bool:
        begin, end = self.keys.entries(ino)
        return not tr.get_range(begin, end, limit=1)

    # -- formatting ---------------------------------------------------------------------------------
    @idempotent_method
    def format(self, tr: Transaction, caller: Caller) -> None:
        if tr.get(self.keys.config()) is not None:
            raise FilesystemExists(f"a filesystem named '{self.config.name}' already exists")
        tr.set(self.keys.config(), self.config.encode())
        now = now_ns()
        root = InodeAttr(
            ROOT_INODE,
            stat.S_IFDIR | 0o755,
            2,
            caller.uid,
            caller.gid,
            atime_ns=now,
            mtime_ns=now,
            ctime_ns=now,
            parent=ROOT_INODE,
        )
        self._save(tr, root)
        self._count_inodes(tr, ROOT_INODE, 1)
        tr.set(self.keys.id_pool("inode"), pack(_FIRST_FREE_INODE))
        tr.set(self.keys.id_pool("chunk"), pack(1))

    @idempotent_method
    def reserve_ids(self, tr: Transaction, kind: str, count: int) -> int:
        """Reserve ``count`` consecutive ids of ``kind`` ("inode" or "chunk"); returns the first.

        Callers take ids in batches (never one store round trip per create) and outside the transaction
        that uses them."""
        key = self.keys.id_pool(kind)
        raw = tr.get(key)
        first = int(unpack(raw, "id pool")) if raw is not None else _FIRST_FREE_INODE
        tr.set(key, pack(first + count))
        return first

    # -- reads --------------------------------------------------------------------------------------
    def getattr(self, tr: Transaction, ino: int) -> InodeAttr:
        return self._load(tr, ino, snapshot=True)

    def attr_for_update(self, tr: Transaction, ino: int) -> InodeAttr:
        """Attributes read serializably, for a transaction that will write them back."""
        return self._load(tr, ino)

    def lookup(self, tr: Transaction, parent: int, name: bytes, hint: int | None = None) -> InodeAttr:
        """The inode ``name`` in ``parent`` names.  ``hint``, the inode it named when last seen, is read in
        the same round trip as the entry: one round trip, not two, while the name still names it."""
        check_name(name)
        if hint is not None:
            tr.get_many([self.keys.entry(parent, name), self.keys.attr(hint)], snapshot=True)
        ino = self._entry(tr, parent, name, snapshot=True)
        if ino is None:
            raise FSError(errno.ENOENT)
        return self._load(tr, ino, snapshot=True)

    def inode_at(self, tr: Transaction, path: bytes) -> int:
        """The inode at ``path`` from the root, for tools working on an unmounted filesystem."""
        ino: int = ROOT_INODE
        for part in path.strip(b"/").split(b"/"):
            if part:
                ino = self.lookup(tr, ino, part).ino
        return ino

    def readlink(self, tr: Transaction, ino: int) -> bytes:
        attr = self._load(tr, ino, snapshot=True)
        if not attr.is_symlink:
            raise FSError(errno.EINVAL)
        return attr.target

    def readdir(
        self, tr: Transaction, ino: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, InodeAttr]]:
        """Up to ``limit`` entries of directory ``ino`` with names after ``after``, in name order.

        Resuming by name (not by position) means an entry present for the whole listing is returned
        exactly once, whatever else is added or removed meanwhile."""
        return self.readdir_page(tr, ino, after, limit).entries

    def readdir_page(self, tr: Transaction, ino: int, after: bytes | None, limit: int) -> DirPage:
        """``readdir``, with where the next page starts and whether there is one."""
        entries_begin, end = self.keys.entries(ino)
        begin = entries_begin if after is None else self.keys.entry(ino, after) + b"\0"
        entries = [
            (self.keys.entry_name_in(entries_begin, key), value)
            for key, value in tr.iter_range(begin, end, limit=limit, snapshot=True)
        ]
        children = [_entry_ino(value, ino, name) for name, value in entries]
        attrs = tr.get_many([self.keys.attr(child) for child in children], snapshot=True)
        listing = []
        for (name, _), child, raw in zip(entries, children, attrs, strict=True):
            if raw is None:
                continue
            try:
                listing.append((name, InodeAttr.decode(child, raw)))
            except CorruptValue as error:
                # One damaged inode must not hide the rest of its directory.
                log.error("directory %d: entry %r left out of the listing: %s", ino, name, error)
        return DirPage(listing, entries[-1][0] if entries else after, len(entries) < limit)

    def statfs(self, tr: Transaction) -> tuple[int, int]:
        """(inodes in use, bytes of file data)."""
        return self._sum_counter(tr, "inodes"), self._sum_counter(tr, "bytes")

    # -- creating -----------------------------------------------------------------------------------
    @idempotent_method
    def create(
        self,
        tr: Transaction,
        parent: int,
        name: bytes,
        ino: int,
        mode: int,
        caller: Caller,
        rdev: int = 0,
        target: bytes = b"",
    ) -> InodeAttr:
        """Create an inode of any type (``mode`` carries the type bits) named ``name`` in ``parent``."""
        check_name(name)
        if stat.S_ISLNK(mode) and len(target) > SYMLINK_MAX_BYTES:
            raise FSError(errno.ENAMETOOLONG)
        # The parent's default ACL is read with it, in the same round trip.
        raws = tr.get_many(
            [
                self.keys.attr(parent),
                self.keys.entry(parent, name),
                self.keys.xattr(parent, acl.DEFAULT),
                *quota.create_keys(self.keys, parent),
            ]
        )
        directory = _as_directory(_read_attr(tr, parent, raws[0]))
        if _read_entry(tr, parent, name, raws[1]) is not None:
            raise FSError(errno.EEXIST)
        is_dir = stat.S_ISDIR(mode)
        gid = caller.gid
        if directory.mode & stat.S_ISGID:
            # BSD group semantics in setgid directories: inherit the group, and subdirectories inherit
            # the setgid bit itself.
            gid = directory.gid
            if is_dir:
                mode |= stat.S_ISGID
        if stat.S_ISREG(mode) and mode & stat.S_ISGID and not (caller.is_root or caller.in_group(gid)):
            mode &= ~stat.S_ISGID
        if is_dir and directory.nlink >= LINK_MAX:
            raise FSError(errno.EMLINK)
        now = now_ns()
        attr = InodeAttr(
            InodeId(ino),
            mode,
            2 if is_dir else 1,
            caller.uid,
            gid,
            size=len(target),
            rdev=rdev,
            atime_ns=now,
            mtime_ns=now,
            ctime_ns=now,
            target=target,
            parent=parent if is_dir else 0,
        )
        acl.inherit(tr, self.keys, attr, raws[2])
        quota.on_create(tr, self.keys, parent, attr, raws[3:])
        self._save(tr, attr)
        self._set_entry(tr, parent, name, attr)
        if self.config.search_index:
            index.add_link(tr, self.keys, parent, name, ino, is_dir)
        if is_dir:
            directory.nlink += 1
            written.created_dir(tr, ino)
        directory.touch(mtime=True, when_ns=now)
        self._save(tr, directory)
        self._count_inodes(tr, ino, 1)
        self._log(tr, _create_op(mode), caller.uid, ino, parent, name)
        return attr

    def attach(
        self, tr: Transaction, parent: int, name: bytes, attr: InodeAttr, caller: Caller, op: str
    ) -> None:
        """Store a new inode ``attr`` under ``name`` in ``parent`` (EEXIST if taken), with its counts and
        a change-log record: for the callers that build inodes themselves (metadata/clone.py).  A part
        of their transaction function, which is idempotent as a whole."""
        check_name(name)
        directory, (existing,) = self._directory_and_entries(tr, parent, name)
        if existing is not None:
            raise FSError(errno.EEXIST)
        if attr.is_dir:
            attr.parent = parent
            directory.nlink += 1
        self._save(tr, attr)
        self._set_entry(tr, parent, name, attr)
        if self.config.search_index:
            index.add_link(tr, self.keys, parent, name, attr.ino, attr.is_dir)
        directory.touch(mtime=True, when_ns=attr.ctime_ns)
        self._save(tr, directory)
        self._count_inodes(tr, attr.ino, 1)
        if attr.is_reg:
            self.count_bytes(tr, attr, attr.size)
        self._log(tr, op, caller.uid, attr.ino, parent, name)

    def move_into(self, tr: Transaction, directory: InodeAttr, name: bytes, attr: InodeAttr) -> None:
        """Give ``attr``, which just lost its name elsewhere, the name ``name`` in ``directory``
        (metadata/trash.py: the caller checked the name is free and logs the change)."""
        if attr.is_dir:
            attr.parent = directory.ino
            directory.nlink += 1
            self._save(tr, directory)
        self._save(tr, attr)
        self._set_entry(tr, directory.ino, name, attr)
        if self.config.search_index:
            index.add_link(tr, self.keys, directory.ino, name, attr.ino, attr.is_dir)

    def entry(self, tr: Transaction, parent: int, name: bytes) -> int | None:
        """The inode ``name`` in ``parent`` names (None: no such entry), read serializably."""
        return self._entry(tr, parent, name)

    @idempotent_method
    def link(self, tr: Transaction, ino: int, new_parent: int, new_name: bytes, caller: Caller) -> InodeAttr:
        check_name(new_name)
        attr = self._load(tr, ino)
        if attr.is_dir:
            raise FSError(errno.EPERM)
        directory = self._directory(tr, new_parent)
        if self._entry(tr, new_parent, new_name) is not None:
            raise FSError(errno.EEXIST)
        if attr.nlink == 0:
            raise FSError(errno.ENOENT)
        if attr.nlink >= LINK_MAX:
            raise FSError(errno.EMLINK)
        quota.check_move(tr, self.keys, ino, new_parent)
        now = now_ns()
        attr.nlink += 1
        attr.touch(when_ns=now)
        self._save(tr, attr)
        self._set_entry(tr, new_parent, new_name, attr)
        if self.config.search_index:
            index.add_link(tr, self.keys, new_parent, new_name, ino, False)
        directory.touch(mtime=True, when_ns=now)
        self._save(tr, directory)
        tr.clear(self.keys.orphan(ino))
        self._log(tr, "link", caller.uid, ino, new_parent, new_name)
        return attr

    # -- removing -----------------------------------------------------------------------------------
    def _detach(
        self, tr: Transaction, attr: InodeAttr, now: int, still_open: Callable[[int], bool]
    ) -> Removal:
        """Drop one name of ``attr``; a directory loses both its links.  A file left without names and
        not open is deleted at once; otherwise the inode becomes an orphan, reclaimed by ``reclaim``
        once no one has it open (a directory may still be a process's working directory)."""
        attr.nlink = 0 if attr.is_dir else attr.nlink - 1
        attr.touch(when_ns=now)
        if attr.nlink == 0 and not attr.is_dir and not still_open(attr.ino):
            return Removal(attr, self._delete_inode(tr, attr))
        self._save(tr, attr)
        if attr.nlink == 0:
            # Names the session that holds it open, so that only that mount, or whoever recovers it
            # once it is dead, reclaims the inode (metadata/recovery.py).
            tr.set(self.keys.orphan(attr.ino), pack([now, self.session]))
        return Removal(attr)

    @idempotent_method
    def unlink(
        self,
        tr: Transaction,
        parent: int,
        name: bytes,
        caller: Caller,
        still_open: Callable[[int], bool] = _always_open,
        hint: int | None = None,
    ) -> Removal:
        """``still_open(ino)`` tells whether the inode is still held (open, or known to the kernel): then it
        stays an orphan until ``reclaim``.  ``hint``: the inode ``name`` named when last seen."""
        return self._remove(tr, parent, name, caller, directory=False, still_open=still_open, hint=hint)

    @idempotent_method
    def rmdir(self, tr: Transaction, parent: int, name: bytes, caller: Caller) -> Removal:
        return self._remove(tr, parent, name, caller, directory=True)

    def _remove(
        self,
        tr: Transaction,
        parent: int,
        name: bytes,
        caller: Caller,
        *,
        directory: bool,
        still_open: Callable[[int], bool] = _always_open,
        hint: int | None = None,
    ) -> Removal:
        check_name(name)
        tr.frees_space = True
        parent_attr, (ino,) = self._directory_and_entries(tr, parent, name, hints=(hint,))
        if ino is None:
            raise FSError(errno.ENOENT)
        attr = self._load(tr, ino)
        if directory:
            if not attr.is_dir:
                raise FSError(errno.ENOTDIR)
            if not self._is_empty_dir(tr, ino):
                raise FSError(errno.ENOTEMPTY)
            parent_attr.nlink -= 1
        elif attr.is_dir:
            raise FSError(errno.EISDIR)
        now = now_ns()
        self._clear_entry(tr, parent, name)
        if self.config.search_index:
            index.remove_link(tr, self.keys, parent, name, ino, attr.is_dir)
        parent_attr.touch(mtime=True, when_ns=now)
        self._save(tr, parent_attr)
        self._log(tr, "rmdir" if directory else "unlink", caller.uid, ino, parent, name)
        return trash.keep(tr, self, parent, name, attr, now) or self._detach(tr, attr, now, still_open)

    def orphans(self, tr: Transaction, session: bytes | None = None) -> list[int]:
        """Orphan inodes: all of them, or those of one session (``b""``: records older than sessions)."""
        return [ino for ino, owner in self.orphan_sessions(tr).items() if session in (None, owner)]

    def orphan_sessions(self, tr: Transaction) -> dict[int, bytes]:
        """Every orphan inode and the session that holds (or held) it open."""
        begin, end = self.keys.orphans()
        return {self.keys.orphan_ino(key): orphan_session(raw) for key, raw in tr.iter_range(begin, end)}

    @idempotent_method
    def reclaim(self, tr: Transaction, *inos: int, session: bytes | None = None) -> list[ChunkRecord]:
        """Delete orphan inodes and everything under them; returns the chunks whose files to delete.

        Skips an inode that regained a name (link of an open file) or is already gone, and, when
        ``session`` is given, one whose orphan record names another session (unlinked again since by a
        live mount, which holds it open)."""
        tr.frees_space = True
        chunks = []
        if session is not None:
            owners = tr.get_many([self.keys.orphan(ino) for ino in inos])
            inos = tuple(
                ino for ino, raw in zip(inos, owners, strict=True) if raw and orphan_session(raw) == session
            )
        for ino, raw in zip(inos, tr.get_many([self.keys.attr(ino) for ino in inos]), strict=True):
            if raw is None or InodeAttr.decode(ino, raw).nlink > 0:
                tr.clear(self.keys.orphan(ino))
            else:
                chunks += self._delete_inode(tr, InodeAttr.decode(ino, raw))
        return chunks

    def _delete_inode(self, tr: Transaction, attr: InodeAttr) -> list[ChunkRecord]:
        ino = attr.ino
        chunks = filedata.drop_chunks_from(tr, self.keys, ino, 0)
        filedata.clear_inline(tr, self.keys, ino)
        if self.config.search_index:
            index.drop_xattrs(tr, self.keys, ino)
        tr.clear_range(*self.keys.xattrs(ino))
        tr.clear_range(*self.keys.dirty_chunks_of(ino))
        tr.clear(self.keys.attr(ino))
        written.deleted_inode(tr, ino)
        tr.clear(self.keys.orphan(ino))
        quota.on_delete(tr, self.keys, attr)
        self._count_inodes(tr, ino, -1)
        if attr.is_reg:
            self._count_file_bytes(tr, ino, -attr.size)
        return chunks

    # -- rename -------------------------------------------------------------------------------------
    def _check_not_ancestor(self, tr: Transaction, moved_dir: int, new_parent: int) -> None:
        """EINVAL if ``new_parent`` is ``moved_dir`` or lies below it (a rename would cut a loop).

        The walk reads each ancestor serializably, so a concurrent rename that would form a loop with
        this one conflicts instead of both committing."""
        ino = new_parent
        while True:
            if ino == moved_dir:
                raise FSError(errno.EINVAL)
            if ino == ROOT_INODE:
                return
            ino = self._load(tr, ino).parent

    @idempotent_method
    def rename(
        self,
        tr: Transaction,
        old_parent: int,
        old_name: bytes,
        new_parent: int,
        new_name: bytes,
        caller: Caller,
        *,
        noreplace: bool = False,
        exchange: bool = False,
        still_open: Callable[[int], bool] = _always_open,
        hints: tuple[int | None, int | None] = (None, None),
    ) -> Removal | None:
        """Move an entry; returns what happened to a replaced target (None if nothing was replaced).
        ``hints``: the inodes the old and the new name named when last seen."""
        check_name(old_name)
        check_name(new_name)
        # A move between directories checks the quotas of both: their keys come in the same round trip.
        quota_keys = [] if new_parent == old_parent else quota.move_keys(self.keys, old_parent, new_parent)
        directories, (src_ino, dst_ino) = self._directories_and_entries(
            tr, [(old_parent, old_name), (new_parent, new_name)], hints, quota_keys
        )
        src_dir, dst_dir = directories[old_parent], directories[new_parent]
        if src_ino is None:
            raise FSError(errno.ENOENT)
        if noreplace and dst_ino is not None:
            raise FSError(errno.EEXIST)
        if exchange and dst_ino is None:
            raise FSError(errno.ENOENT)
        if src_ino == dst_ino:
            return None  # POSIX: two links to the same file, nothing to do
        if dst_ino is None:
            (src,), dst = self._load_many(tr, [src_ino]), None
        else:
            src, dst = self._load_many(tr, [src_ino, dst_ino])
        if new_parent != old_parent:
            quota.check_move(tr, self.keys, src_ino, new_parent)
            if exchange and dst is not None:
                quota.check_move(tr, self.keys, dst.ino, old_parent)
        if src.is_dir and new_parent != old_parent:
            self._check_not_ancestor(tr, src_ino, new_parent)
        now = now_ns()
        if self.config.search_index:
            index.rename_links(
                tr,
                self.keys,
                (old_parent, old_name, src),
                (new_parent, new_name, dst),
                exchange=exchange,
            )
        if exchange:
            assert dst is not None
            if dst.is_dir and new_parent != old_parent:
                self._check_not_ancestor(tr, dst.ino, old_parent)
            self._exchange(tr, src, dst, src_dir, dst_dir, old_name, new_name, now)
            self._log(tr, "exchange", caller.uid, src_ino, old_parent, old_name, new_parent, new_name)
            return None
        removal = None
        if dst is not None:
            if src.is_dir and not dst.is_dir:
                raise FSError(errno.ENOTDIR)
            if dst.is_dir and not src.is_dir:
                raise FSError(errno.EISDIR)
            if dst.is_dir:
                if not self._is_empty_dir(tr, dst.ino):
                    raise FSError(errno.ENOTEMPTY)
                dst_dir.nlink -= 1
            removal = (
                None if dst.is_dir else trash.keep(tr, self, new_parent, new_name, dst, now)
            ) or self._detach(tr, dst, now, still_open)
        self._clear_entry(tr, old_parent, old_name)
        self._set_entry(tr, new_parent, new_name, src)
        if src.is_dir and new_parent != old_parent:
            src_dir.nlink -= 1
            dst_dir.nlink += 1
            src.parent = new_parent
        src.touch(when_ns=now)
        self._save(tr, src)
        self._touch_parents(tr, src_dir, dst_dir, now)
        self._log(tr, "rename", caller.uid, src_ino, old_parent, old_name, new_parent, new_name)
        return removal

    def _exchange(
        self,
        tr: Transaction,
        src: InodeAttr,
        dst: InodeAttr,
        src_dir: InodeAttr,
        dst_dir: InodeAttr,
        old_name: bytes,
        new_name: bytes,
        now: int,
    ) -> None:
        self._set_entry(tr, src_dir.ino, old_name, dst)
        self._set_entry(tr, dst_dir.ino, new_name, src)
        if src_dir.ino != dst_dir.ino:
            for moved, to in ((src, dst_dir), (dst, src_dir)):
                if moved.is_dir:
                    moved.parent = to.ino
            src_dir.nlink += int(dst.is_dir) - int(src.is_dir)
            dst_dir.nlink += int(src.is_dir) - int(dst.is_dir)
        for attr in (src, dst):
            attr.touch(when_ns=now)
            self._save(tr, attr)
        self._touch_parents(tr, src_dir, dst_dir, now)

    def _touch_parents(self, tr: Transaction, src_dir: InodeAttr, dst_dir: InodeAttr, now: int) -> None:
        src_dir.touch(mtime=True, when_ns=now)
        self._save(tr, src_dir)
        if dst_dir.ino != src_dir.ino:
            dst_dir.touch(mtime=True, when_ns=now)
            self._save(tr, dst_dir)

    # -- attributes ---------------------------------------------------------------------------------
    @idempotent_method
    def setattr(self, tr: Transaction, ino: int, request: SetAttrRequest, caller: Caller) -> InodeAttr:
        """Apply a setattr; a size change here only records the size (file data is the caller's)."""
        if request.mode is not None:
            # A mode change rewrites the access ACL too: it is read with the attributes, in one round trip.
            tr.get_many([self.keys.attr(ino), self.keys.xattr(ino, acl.ACCESS)])
        attr = self._load(tr, ino)
        if request.mode is not None:
            mode = request.mode & 0o7777
            if mode & stat.S_ISGID and not (caller.is_root or caller.in_group(attr.gid)) and not attr.is_dir:
                mode &= ~stat.S_ISGID  # chmod(2): only a member of the file's group may set setgid
            attr.mode = stat.S_IFMT(attr.mode) | mode
            acl.chmod(tr, self.keys, attr)
        if request.uid is not None or request.gid is not None:
            changes_owner = (request.uid not in (None, attr.uid)) or (request.gid not in (None, attr.gid))
            if request.uid is not None:
                attr.uid = request.uid
            if request.gid is not None:
                attr.gid = request.gid
            if changes_owner and not attr.is_dir:
                # chown(2) on Linux clears setuid, and setgid when group-executable, even for root.
                attr.mode &= ~stat.S_ISUID
                if attr.mode & stat.S_IXGRP:
                    attr.mode &= ~stat.S_ISGID
        if request.size is not None:
            if attr.is_dir:
                raise FSError(errno.EISDIR)
            if not attr.is_reg:
                raise FSError(errno.EINVAL)
            self.count_bytes(tr, attr, request.size - attr.size)
            if request.size != attr.size:
                attr.mtime_ns = now_ns()
            attr.size = request.size
        if request.atime_ns is not None:
            attr.atime_ns = request.atime_ns
        if request.mtime_ns is not None:
            attr.mtime_ns = request.mtime_ns
        attr.ctime_ns = request.ctime_ns if request.ctime_ns is not None else now_ns()
        self._save(tr, attr)
        self._log(tr, "setattr", caller.uid, ino)
        return attr

    # -- extended attributes ------------------------------------------------------------------------
    def getxattr(self, tr: Transaction, ino: int, name: bytes) -> bytes:
        self._load(tr, ino, snapshot=True)
        return xattrs.get(tr, self.keys, ino, name)

    def listxattr(self, tr: Transaction, ino: int) -> list[bytes]:
        self._load(tr, ino, snapshot=True)
        return xattrs.names(tr, self.keys, ino)

    @idempotent_method
    def setxattr(self, tr: Transaction, ino: int, name: bytes, value: bytes, caller: Caller) -> None:
        if self.config.search_index and not acl.is_acl(name):
            attr, old = self._attr_and_xattr(tr, ino, name)
            index.replace_xattr(tr, self.keys, ino, name, old, value)
        else:
            attr = self._load(tr, ino)
        if acl.is_acl(name):
            acl.set_acl(tr, self.keys, attr, name, value, caller)
        else:
            xattrs.set(tr, self.keys, attr, name, value)
        self._save(tr, attr)
        self._log(tr, "setxattr", caller.uid, ino, name=name)

    @idempotent_method
    def removexattr(self, tr: Transaction, ino: int, name: bytes, caller: Caller) -> None:
        attr, old = self._attr_and_xattr(tr, ino, name)
        if self.config.search_index and old is not None:
            index.replace_xattr(tr, self.keys, ino, name, old, None)
        xattrs.remove(tr, self.keys, attr, name)
        self._save(tr, attr)
        self._log(tr, "removexattr", caller.uid, ino, name=name)

    def _attr_and_xattr(self, tr: Transaction, ino: int, name: bytes) -> tuple[InodeAttr, bytes | None]:
        """The inode's attributes and the value of its xattr ``name``, in one round trip: for a change
        that needs the value it replaces (the search indexes clear its records; a removal checks it is
        there, and FoundationDB's client answers that second read from its cache)."""
        raw_attr, value = tr.get_many([self.keys.attr(ino), self.keys.xattr(ino, name)])
        return _read_attr(tr, ino, raw_attr), value

    def write_back(self, tr: Transaction, attr: InodeAttr, caller: Caller) -> None:
        """Store attributes changed by the data path (size, times, storage kind) with a log record.

        A part of the flush transaction (metadata/content.py), which is idempotent as a whole."""
        self._save(tr, attr)
        self._log(tr, "write", caller.uid, attr.ino)


def _read_attr(tr: Transaction, ino: int, raw: bytes | None) -> InodeAttr:
    attr = _decode_attr(ino, raw)
    written.read_attr(tr, attr)
    return attr


def _read_entry(tr: Transaction, parent: int, name: bytes, raw: bytes | None) -> int | None:
    ino = None if raw is None else _entry_ino(raw, parent, name)
    written.read_entry(tr, parent, name, ino)
    return ino


def _decode_attr(ino: int, raw: bytes | None) -> InodeAttr:
    if raw is None:
        raise FSError(errno.ENOENT)
    return InodeAttr.decode(ino, raw)


def _as_directory(attr: InodeAttr) -> InodeAttr:
    if not attr.is_dir:
        raise FSError(errno.ENOTDIR)
    if attr.nlink == 0:
        raise FSError(errno.ENOENT)  # a removed directory still open somewhere takes no new entries
    return attr


def orphan_session(raw: bytes) -> bytes:
    """The session of an orphan record: ``[time, session]``, or a bare time before sessions existed."""
    value = unpack(raw, "orphan record")
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], bytes):
        return value[1]
    return b""


def _entry_ino(raw: bytes, parent: int, name: bytes) -> int:
    ino, _ = unpack_list(raw, f"entry {name!r} of directory {parent}", (int, int))
    return int(ino)


def _create_op(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "mkdir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "create"
    return "mknod"


# -- filesystems in a store ---------------------------------------------------------------------------
def format_filesystem(store: Store, config: FsConfig, caller: Caller | None = None) -> None:
    config.created_ns = config.created_ns or now_ns()
    config.fs_id = config.fs_id or new_fs_id()
    owner = caller or Caller(uid=0, gid=0)
    store.transact(lambda tr: Namespace(config).format(tr, owner))


def load_config(store: Store, name: str) -> FsConfig:
    raw = store.transact(lambda tr: tr.get(FsKeys(name).config(), snapshot=True))
    if raw is None:
        raise UnknownFilesystem(f"no filesystem named '{name}' in {store.url}")
    return FsConfig.decode(raw)


def save_config(store: Store, config: FsConfig) -> None:
    store.transact(lambda tr: tr.set(FsKeys(config.name).config(), config.encode()))


def assign_fs_id(store: Store, name: str, candidate: str) -> FsConfig:
    """The settings of filesystem `name`, given id `candidate` first if they have none (made before
    filesystems had ids).  An id already there is kept, so two mounts racing to assign one agree."""

    def assign(tr: Transaction) -> FsConfig:
        raw = tr.get(FsKeys(name).config())
        if raw is None:
            raise UnknownFilesystem(f"no filesystem named '{name}' in {store.url}")
        config = FsConfig.decode(raw)
        if not config.fs_id:
            config.fs_id = candidate
            tr.set(FsKeys(name).config(), config.encode())
        return config

    return store.transact(assign)


def list_filesystems(store: Store) -> list[FsConfig]:
    """Every filesystem in the store (scans config keys only, skipping each filesystem's contents)."""

    def scan(tr: Transaction) -> list[FsConfig]:
        found: list[FsConfig] = []
        begin, end = all_filesystems_range()
        while True:
            rows = tr.get_range(begin, end, limit=1, snapshot=True)
            if not rows:
                return found
            keys = FsKeys(filesystem_of(rows[0][0]))
            raw = tr.get(keys.config(), snapshot=True)
            if raw is not None:
                found.append(FsConfig.decode(raw))
            begin = keys.whole_filesystem()[1]

    return store.transact(scan)
