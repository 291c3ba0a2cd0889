"""The filesystem's records as Python values: inode attributes, callers, settings, and the error type.

Values are stored with msgpack; every decode goes through ``unpack`` so that a corrupt value becomes a
clear ``CorruptValue`` naming the key rather than a stray exception deep in an operation."""

from __future__ import annotations

import errno
import stat
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NewType

import msgpack

from metadata.keys import FORMAT_VERSION
from metadata.store import CorruptValue

InodeId = NewType("InodeId", int)
ROOT_INODE = InodeId(1)
NAME_MAX_BYTES = 255
SYMLINK_MAX_BYTES = 4095  # PATH_MAX - 1
DEFAULT_INLINE_MAX_BYTES = 64 * 1024
DEFAULT_CHUNK_SIZE_BYTES = 4 * 1024 * 1024
#: One day of change log: a busy filesystem writes ~100 bytes of log per metadata operation.
DEFAULT_LOG_RETENTION_S = 24 * 3600
#: How long past the retention a lagging log consumer holds change-log records back from trimming.
DEFAULT_LOG_HOLD_S = 7 * 24 * 3600


class FSError(Exception):
    """A filesystem operation failed with ``errno``; the FUSE layer answers the kernel with it."""

    def __init__(self, errno_value: int, message: str = "") -> None:
        super().__init__(message or errno.errorcode.get(errno_value, str(errno_value)))
        self.errno = errno_value


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(raw: bytes, what: str = "value") -> Any:
    try:
        return msgpack.unpackb(raw, raw=False)
    except Exception as error:  # msgpack raises several unrelated types for bad input
        # Some of msgpack's errors have no message: name the error then, so the line says something.
        raise CorruptValue(f"corrupt {what}: {str(error) or type(error).__name__}") from error


def unpack_list(raw: bytes, what: str, types: tuple[type | tuple[type, ...], ...]) -> list[Any]:
    """Decode a msgpack list and check its shape: a value that decodes but is not what the record
    should hold is as corrupt as one that does not decode."""
    return check_list(unpack(raw, what), what, types)


def check_list(values: Any, what: str, types: tuple[type | tuple[type, ...], ...]) -> list[Any]:
    """``values`` if it is a list of ``types``, else CorruptValue."""
    # msgpack decodes to exact types (never a subclass): a field whose type is the expected one is valid
    # (an int is then not a bool), so the usual record needs no isinstance per field (listings decode
    # thousands).  Anything else takes the full checks below.
    if type(values) is list and tuple(map(type, values)) == types:
        return values
    if not isinstance(values, list) or len(values) != len(types):
        raise CorruptValue(f"corrupt {what}: expected {len(types)} fields, got {values!r:.80}")
    for value, expected in zip(values, types, strict=True):
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CorruptValue(f"corrupt {what}: unexpected field {value!r:.80}")
    return values


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class Caller:
    """Who asked: the credentials of the process behind a request."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    pid: int = 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups

    @property
    def is_root(self) -> bool:
        return self.uid == 0


ROOT_CALLER = Caller(uid=0, gid=0)


@dataclass
class InodeAttr:
    """One inode's attributes: the value of its attribute key (plus ``ino``, which is its key)."""

    ino: InodeId
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int = 0
    rdev: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    #: Symlink target; empty for other types.
    target: bytes = b""
    #: True once the file's data lives in chunks rather than inline (never goes back).
    chunked: bool = False
    #: A directory's parent (for the rename loop check); 0 for other types.
    parent: int = 0
    #: Bytes of a chunked file's blocks that hold data (holes excluded), for st_blocks.
    allocated: int = 0
    #: Whether quotas above count this inode (it has quota charges, metadata/quota.py): a size change or
    #: a deletion of an inode without reads no quota record.  Stored only when True, so the attributes of
    #: a filesystem without quotas keep their format-3 encoding.
    quota_charged: bool = False

    def copy(self) -> InodeAttr:
        """A shallow copy, ~7x cheaper than ``copy.copy`` (hot: the daemon's cache copies on every note)."""
        twin = object.__new__(InodeAttr)
        twin.__dict__.update(self.__dict__)
        return twin

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def encode(self) -> bytes:
        fields_stored = _ATTR_FIELDS if self.quota_charged else _ATTR_FIELDS[:-1]
        return pack([getattr(self, name) for name in fields_stored])

    @classmethod
    def decode(cls, ino: int, raw: bytes) -> InodeAttr:
        what = f"attributes of inode {ino}"
        values = unpack(raw, what)
        charged = isinstance(values, list) and len(values) == len(_ATTR_TYPES)
        return cls(InodeId(ino), *check_list(values, what, _ATTR_TYPES if charged else _ATTR_TYPES[:-1]))

    def touch(self, *, mtime: bool = False, ctime: bool = True, when_ns: int | None = None) -> None:
        when = now_ns() if when_ns is None else when_ns
        if mtime:
            self.mtime_ns = when
        if ctime:
            self.ctime_ns = when


_ATTR_TYPES = (int, int, int, int, int, int, int, int, int, bytes, bool, int, int, bool)
#: The stored fields of InodeAttr, in order (``ino`` is the key, not stored).
_ATTR_FIELDS = tuple(f.name for f in fields(InodeAttr))[1:]


def new_fs_id() -> str:
    return str(uuid.uuid4())


@dataclass
class FsConfig:
    """A filesystem's settings, chosen at mkfs and stored with it."""

    name: str
    block_dirs: list[str] = field(default_factory=list)
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES
    chunk_size_bytes: int = DEFAULT_CHUNK_SIZE_BYTES
    #: Change-log records older than this are trimmed.
    log_retention_s: int = DEFAULT_LOG_RETENTION_S
    #: Records a named log consumer has not acknowledged are kept up to this long (metadata/consumers.py);
    #: older ones are trimmed all the same, and the consumer is told it missed them.
    log_hold_s: int = DEFAULT_LOG_HOLD_S
    created_ns: int = 0
    #: Unique id (a uuid4), named by the marker of each of its block directories.  Empty in settings
    #: written before filesystems had ids; the first read-write mount assigns one (``assign_fs_id``).
    fs_id: str = ""
    #: The key layout the filesystem's records are in (``keys.FORMAT_VERSION``); settings without one
    #: were written in format 1.
    format_version: int = FORMAT_VERSION
    #: The object data tier (``s3://BUCKET/PREFIX`` and the S3 endpoint URL) holding large files' chunks
    #: for every host, the block directories then being a staging area and read cache; empty: none.
    #: Credentials are never stored here.
    data_url: str = ""
    s3_endpoint: str = ""
    #: Removed files and directories are kept in ``/.trash`` this many days (0: no trash).
    trash_days: int = 0
    #: Whether the namespace transactions keep the secondary indexes (metadata/index.py) that ``fusefs
    #: find`` reads: they make creates, renames and setxattrs cost more, so they are opt-in.  Settings
    #: written before the choice existed have none (False).
    search_index: bool = False
    #: Whether the mounts record every open and close of a file (metadata/provenance.py); a mount option
    #: (``-o provenance``) turns it on for one mount.
    provenance: bool = False

    def encode(self) -> bytes:
        return pack(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> FsConfig:
        values = unpack(raw, "filesystem settings")
        if not isinstance(values, dict):
            raise CorruptValue(f"corrupt filesystem settings: {values!r:.80}")
        known = {f.name for f in fields(cls)}
        values.setdefault("format_version", 1)
        try:
            config = cls(**{k: v for k, v in values.items() if k in known})
        except TypeError as error:
            raise CorruptValue(f"corrupt filesystem settings: {error}") from error
        config._check_types()
        return config

    def _check_types(self) -> None:
        """Settings that decode but hold values no filesystem can have are as corrupt as undecodable ones:
        caught here, they fail a mount with one line rather than deep inside it."""
        problems = [
            f"{name} is {getattr(self, name)!r:.80}"
            for name, valid in _CONFIG_CHECKS.items()
            if not valid(getattr(self, name))
        ]
        if problems:
            raise CorruptValue(f"corrupt settings of filesystem {self.name!r:.80}: {'; '.join(problems)}")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_CONFIG_CHECKS = {
    "name": lambda value: isinstance(value, str) and value != "",
    "block_dirs": lambda value: isinstance(value, list) and all(isinstance(d, str) and d for d in value),
    "inline_max_bytes": _is_count,
    "chunk_size_bytes": lambda value: _is_count(value) and value > 0,
    "log_retention_s": lambda value: _is_count(value) and value > 0,
    "log_hold_s": lambda value: _is_count(value) and value > 0,
    "created_ns": _is_count,
    "fs_id": lambda value: isinstance(value, str),
    "format_version": lambda value: _is_count(value) and value > 0,
    "data_url": lambda value: isinstance(value, str),
    "s3_endpoint": lambda value: isinstance(value, str),
    "trash_days": _is_count,
    "search_index": lambda value: isinstance(value, bool),
    "provenance": lambda value: isinstance(value, bool),
}


@dataclass
class SetAttrRequest:
    """The changes of one setattr call; ``None`` leaves a field alone."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    #: ctime may be set explicitly only by internal callers (the kernel never asks).
    ctime_ns: int | None = None


@dataclass
class ChunkRecord:
    """Where one chunk of a large file lives: a file in a block directory, with its checksum table."""

    chunk_id: int
    dir_index: int
    checksums: bytes = b""
    #: True while a writer may have changed the chunk file beyond what ``checksums`` describes; chunks
    #: still dirty at mount (the writer crashed) get their checksums recomputed from the file.
    dirty: bool = False
    #: With an object data tier: the version of the object ``<chunk id>.<version>`` holding the chunk's
    #: data as of ``checksums``; 0 before its first upload.  Records of filesystems without one keep
    #: the shorter encoding.
    version: int = 0

    def encode(self) -> bytes:
        fields = [self.chunk_id, self.dir_index, self.checksums, self.dirty]
        return pack(fields + [self.version] if self.version else fields)

    @classmethod
    def decode(cls, raw: bytes) -> ChunkRecord:
        try:
            return cls(*unpack_list(raw, "chunk record", (int, int, bytes, bool)))
        except CorruptValue:
            return cls(*unpack_list(raw, "chunk record", (int, int, bytes, bool, int)))


@dataclass
class Removal:
    """What an unlink, rmdir or replacing rename did to the inode it detached."""

    attr: InodeAttr
    #: Set when the inode was deleted in the same transaction: the chunks whose files to delete.
    freed_chunks: list[ChunkRecord] | None = None

    @property
    def is_orphan(self) -> bool:
        """The inode has no name left but still exists: reclaim it once nothing has it open."""
        return self.attr.nlink == 0 and self.freed_chunks is None
