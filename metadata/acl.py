"""POSIX ACLs: the ``system.posix_acl_*`` xattrs and the mode bits kept in step with them.

The mount asks the kernel to enforce ACLs (FUSE_POSIX_ACL): the kernel checks permissions against the
ACL it reads through getxattr and caches; the filesystem stores the xattrs (in the kernel's binary
``posix_acl_xattr`` format: a 4-byte version, then 8-byte entries ``tag u16, perm u16, id u32``) and
does what ext4 does in fs/posix_acl.c: ``posix_acl_update_mode`` when an access ACL is set,
``posix_acl_chmod`` on chmod and ``posix_acl_create`` (default ACL inheritance) on create and mkdir.
"""

from __future__ import annotations

import errno
import stat
import struct
from dataclasses import dataclass

from metadata.keys import FsKeys
from metadata.model import Caller, FSError, InodeAttr, now_ns
from metadata.store import Transaction

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
NAMES = (ACCESS, DEFAULT)

_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_PERMS = 0o7


@dataclass
class Entry:
    tag: int
    perm: int
    id: int = _UNDEFINED_ID


def decode(value: bytes) -> list[Entry]:
    """Entries of an ACL xattr, checked as ``posix_acl_valid`` does (EINVAL otherwise)."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise FSError(errno.EINVAL)
    if _HEADER.unpack_from(value)[0] != _VERSION:
        raise FSError(errno.EOPNOTSUPP)
    entries = [Entry(*fields) for fields in _ENTRY.iter_unpack(value[_HEADER.size :])]
    _check(entries)
    return entries


def _check(entries: list[Entry]) -> None:
    order = [(entry.tag, entry.id if entry.tag in (USER, GROUP) else 0) for entry in entries]
    tags = [entry.tag for entry in entries]
    well_formed = (
        order == sorted(set(order))  # sorted, no duplicates
        and all(entry.perm & ~_PERMS == 0 for entry in entries)
        and all(tags.count(tag) == 1 for tag in (USER_OBJ, GROUP_OBJ, OTHER))
        and tags.count(MASK) <= 1
        and (MASK in tags or not (USER in tags or GROUP in tags))
        and set(tags) <= {USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER}
    )
    if not well_formed:
        raise FSError(errno.EINVAL)


def encode(entries: list[Entry]) -> bytes:
    return _HEADER.pack(_VERSION) + b"".join(
        _ENTRY.pack(entry.tag, entry.perm, entry.id if entry.tag in (USER, GROUP) else _UNDEFINED_ID)
        for entry in entries
    )


def _find(entries: list[Entry], tag: int) -> Entry | None:
    return next((entry for entry in entries if entry.tag == tag), None)


def _is_minimal(entries: list[Entry]) -> bool:
    """True when the ACL says nothing the mode bits do not (posix_acl_equiv_mode)."""
    return all(entry.tag in (USER_OBJ, GROUP_OBJ, OTHER) for entry in entries)


def _mode_of(entries: list[Entry]) -> int:
    """The permission bits an access ACL implies: owner, mask (or owning group), other."""
    group = _find(entries, MASK) or _find(entries, GROUP_OBJ)
    owner, other = _find(entries, USER_OBJ), _find(entries, OTHER)
    assert owner is not None and group is not None and other is not None  # _check made sure
    return owner.perm << 6 | group.perm << 3 | other.perm


def is_acl(name: bytes) -> bool:
    return name in NAMES


def set_acl(
    tr: Transaction, keys: FsKeys, attr: InodeAttr, name: bytes, value: bytes, caller: Caller
) -> None:
    """setxattr of an ACL: an access ACL sets the mode's permission bits and is stored only when it says
    more than they do; a default ACL exists only on directories (the kernel checked ownership)."""
    entries = decode(value)
    attr.ctime_ns = now_ns()
    if name == DEFAULT:
        if not attr.is_dir:
            raise FSError(errno.EACCES)
        tr.set(keys.xattr(attr.ino, DEFAULT), encode(entries))
        return
    mode = attr.mode & ~0o777 | _mode_of(entries)
    if not (caller.is_root or caller.in_group(attr.gid)):
        mode &= ~stat.S_ISGID  # posix_acl_update_mode: as chmod would
    attr.mode = mode
    if _is_minimal(entries):
        tr.clear(keys.xattr(attr.ino, ACCESS))
    else:
        tr.set(keys.xattr(attr.ino, ACCESS), encode(entries))


def remove_acl(tr: Transaction, keys: FsKeys, attr: InodeAttr, name: bytes) -> None:
    """removexattr of an ACL; an access ACL's mode bits stay as they are, as on ext4."""
    key = keys.xattr(attr.ino, name)
    if tr.get(key) is None:
        raise FSError(errno.ENODATA)
    tr.clear(key)


def chmod(tr: Transaction, keys: FsKeys, attr: InodeAttr) -> None:
    """After a mode change: the access ACL's owner, mask (or owning group) and other entries follow the
    new bits (posix_acl_chmod)."""
    key = keys.xattr(attr.ino, ACCESS)
    raw = tr.get(key)
    if raw is None:
        return
    entries = decode(raw)
    for tag, shift in ((USER_OBJ, 6), (MASK if _find(entries, MASK) else GROUP_OBJ, 3), (OTHER, 0)):
        entry = _find(entries, tag)
        assert entry is not None
        entry.perm = attr.mode >> shift & _PERMS
    tr.set(key, encode(entries))


def inherit(tr: Transaction, keys: FsKeys, attr: InodeAttr, parent_default: bytes | None) -> None:
    """Give a new inode the ACLs its parent's default ACL calls for (posix_acl_create); ``attr.mode`` is
    the mode asked for, narrowed here to what the inherited ACL allows.

    The kernel has applied the umask already (FUSE does unless FUSE_DONT_MASK is negotiated, which
    pyfuse3 does not), even where POSIX says a default ACL replaces it."""
    if parent_default is None or attr.is_symlink:
        return
    entries = decode(parent_default)
    if attr.is_dir:
        tr.set(keys.xattr(attr.ino, DEFAULT), parent_default)
    mode = attr.mode & 0o777
    group = _find(entries, MASK) or _find(entries, GROUP_OBJ)
    for entry, shift in ((_find(entries, USER_OBJ), 6), (group, 3), (_find(entries, OTHER), 0)):
        assert entry is not None
        entry.perm &= mode >> shift & _PERMS
        mode &= ~(_PERMS << shift) | entry.perm << shift
    attr.mode = attr.mode & ~0o777 | mode
    if not _is_minimal(entries):
        tr.set(keys.xattr(attr.ino, ACCESS), encode(entries))
