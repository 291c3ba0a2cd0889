"""Paths from inodes and inodes from paths, inside one transaction (snapshot reads).

An inode's names are its link back-references (metadata/index.py): one range read lists every
(parent, name) naming it, hard links included.  A directory has exactly one, so a path is built by
walking up one back-reference per level: the cost is the depth, and a ``Paths`` remembers the
directories it resolved, so many paths under one tree cost little more than one.  Many inodes' names
(``links_of``) are one batch of range reads, and many directories (``resolve_directories``) one batch
per level: on FoundationDB, a round trip each rather than one per inode.

A filesystem without the indexes has no back-references: there a directory's name is found in the
entries of its parent (its attributes name the parent), a read of the whole parent directory, so only
directories' paths are offered (``Paths(..., indexed=False)``: change-log records' paths).
"""

from __future__ import annotations

import errno

from metadata.keys import FsKeys
from metadata.model import ROOT_INODE, FSError, InodeAttr, unpack_list
from metadata.store import CorruptValue, Transaction

#: Deeper than any real tree: a longer walk up means a loop in damaged metadata.
MAX_DEPTH = 4096


class Paths:
    """Path lookups in transaction ``tr``, with the directories already resolved remembered."""

    def __init__(self, tr: Transaction, keys: FsKeys, *, indexed: bool = True) -> None:
        self.tr = tr
        self.keys = keys
        self.indexed = indexed
        self._dirs: dict[int, bytes | None] = {ROOT_INODE: b"/"}
        self._parents: dict[int, int] = {ROOT_INODE: ROOT_INODE}
        #: (parent, name) of directories read but not yet joined into a path.
        self._names: dict[int, tuple[int, bytes]] = {}

    def links(self, ino: int) -> list[tuple[int, bytes]]:
        """Every (parent, name) naming ``ino``: none for the root and for an orphan."""
        rows = self.tr.iter_range(*self.keys.links(ino), snapshot=True)
        return [self.keys.link_of(key)[1:] for key, _ in rows]

    def links_of(self, inos: list[int]) -> list[list[tuple[int, bytes]]]:
        """``links`` of each of ``inos``, read in one batch."""
        found = self.tr.get_ranges([self.keys.links(ino) for ino in inos], snapshot=True)
        return [[self.keys.link_of(key)[1:] for key, _ in rows] for rows in found]

    def learn(self, directory: int, parent: int, name: bytes) -> None:
        """Directory ``directory`` is ``name`` in ``parent`` (read by the caller in this transaction)."""
        if directory not in self._dirs:
            self._names[directory] = (parent, name)
            self._parents[directory] = parent

    def resolve_directories(self, directories: set[int]) -> None:
        """Read what the paths of ``directories`` need, a batch per level of the tree (then ``directory``
        and ``is_within`` answer them from memory)."""
        pending = [ino for ino in directories if not self._known(ino)]
        for _ in range(MAX_DEPTH):
            if not pending or not self.indexed:
                return
            above = set()
            for ino, links in zip(pending, self.links_of(pending), strict=True):
                if not links:
                    self._dirs[ino] = None
                    continue
                self.learn(ino, *links[0])
                if not self._known(links[0][0]):
                    above.add(links[0][0])
            pending = sorted(above)
        raise CorruptValue(f"directories {pending[:3]}: no way up to the root within {MAX_DEPTH} levels")

    def _known(self, ino: int) -> bool:
        return ino in self._dirs or ino in self._names

    def paths(self, ino: int) -> list[bytes]:
        """Every path of ``ino``, sorted (the root's is ``/``; an orphan has none)."""
        if ino == ROOT_INODE:
            return [b"/"]
        found = []
        for parent, name in self.links(ino):
            directory = self.directory(parent)
            if directory is not None:
                found.append(join(directory, name))
        return sorted(found)

    def directory(self, ino: int) -> bytes | None:
        """The path of directory ``ino`` (None if it has no name: removed while open)."""
        chain: list[tuple[int, bytes]] = []
        current = ino
        while current not in self._dirs:
            if current in self._names:
                links = [self._names.pop(current)]
            else:
                links = self.links(current) if self.indexed else self._name_in_parent(current)
            if not links:
                self._dirs[current] = None
                break
            parent, name = links[0]
            self._parents[current] = parent
            chain.append((current, name))
            current = parent
            if len(chain) > MAX_DEPTH:
                raise CorruptValue(f"directory {ino}: no way up to the root within {MAX_DEPTH} levels")
        base = self._dirs[current]
        for directory, name in reversed(chain):
            base = None if base is None else join(base, name)
            self._dirs[directory] = base
        return self._dirs[ino]

    def _name_in_parent(self, directory: int) -> list[tuple[int, bytes]]:
        """(parent, name) of ``directory``, found among its parent's entries (none: it has no name)."""
        raw = self.tr.get(self.keys.attr(directory), snapshot=True)
        if raw is None:
            return []
        parent = InodeAttr.decode(directory, raw).parent
        for key, value in self.tr.iter_range(*self.keys.entries(parent), snapshot=True):
            name = self.keys.entry_name(key)
            if unpack_list(value, f"entry {name!r} of directory {parent}", (int, int))[0] == directory:
                return [(parent, name)]
        return []

    def parent(self, directory: int) -> int | None:
        """The parent of ``directory`` (None if it has no name)."""
        if directory not in self._parents:
            self.directory(directory)
        return self._parents.get(directory)

    def is_within(self, directory: int, top: int) -> bool:
        """Whether ``directory`` is ``top`` or lies below it."""
        current: int | None = directory
        for _ in range(MAX_DEPTH):
            if current == top:
                return True
            if current is None or current == ROOT_INODE:
                return False
            current = self.parent(current)
        raise CorruptValue(f"directory {directory}: no way up to the root within {MAX_DEPTH} levels")

    def resolve(self, path: bytes) -> InodeAttr:
        """The inode at absolute ``path`` (symbolic links are not followed).  FSError ENOENT or ENOTDIR."""
        if not path.startswith(b"/"):
            raise FSError(errno.EINVAL)
        ino: int = ROOT_INODE
        for name in (part for part in path.split(b"/") if part and part != b"."):
            if name == b"..":
                ino = self.parent(ino) or ROOT_INODE
                continue
            # The directory's attributes and its entry in one round.
            raw_attr, raw = self.tr.get_many([self.keys.attr(ino), self.keys.entry(ino, name)], snapshot=True)
            if not self._decoded(ino, raw_attr).is_dir:
                raise FSError(errno.ENOTDIR)
            if raw is None:
                raise FSError(errno.ENOENT)
            parent, ino = ino, int(unpack_list(raw, f"entry {name!r} of directory {ino}", (int, int))[0])
            self.learn(ino, parent, name)
        return self.attr(ino)

    def attr(self, ino: int) -> InodeAttr:
        return self._decoded(ino, self.tr.get(self.keys.attr(ino), snapshot=True))

    @staticmethod
    def _decoded(ino: int, raw: bytes | None) -> InodeAttr:
        if raw is None:
            raise FSError(errno.ENOENT)
        return InodeAttr.decode(ino, raw)


def join(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory.endswith(b"/") else directory + b"/" + name
