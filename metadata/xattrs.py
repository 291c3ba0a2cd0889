"""Extended attributes as transaction functions.

Linux rules (xattr(7)): names carry a namespace prefix (user., trusted., security., system.) and
something after it (a bare prefix is EINVAL, as on ext4); names are at most 255 bytes (ERANGE) and values
at most 64 KiB (E2BIG); user.* attributes exist only on regular files and directories (EPERM
elsewhere).  Of system.*, only the POSIX ACLs exist (metadata/acl.py keeps them in step with the mode)."""

from __future__ import annotations

import errno

from metadata import acl
from metadata.keys import FsKeys
from metadata.model import FSError, InodeAttr, now_ns
from metadata.store import Transaction

XATTR_NAME_MAX_BYTES = 255
XATTR_SIZE_MAX_BYTES = 65536
_NAMESPACES = (b"user.", b"trusted.", b"security.")


def _check_name(name: bytes, attr: InodeAttr | None = None) -> None:
    if len(name) > XATTR_NAME_MAX_BYTES:
        raise FSError(errno.ERANGE)
    if name in _NAMESPACES:  # nothing after the prefix: EINVAL, as from Linux's own handlers
        raise FSError(errno.EINVAL)
    if not name.startswith(_NAMESPACES) and not acl.is_acl(name):
        raise FSError(errno.EOPNOTSUPP)
    if attr is not None and name.startswith(b"user.") and not (attr.is_reg or attr.is_dir):
        raise FSError(errno.EPERM)


def get(tr: Transaction, keys: FsKeys, ino: int, name: bytes) -> bytes:
    _check_name(name)
    value = tr.get(keys.xattr(ino, name), snapshot=True)
    if value is None:
        raise FSError(errno.ENODATA)
    return value


def names(tr: Transaction, keys: FsKeys, ino: int) -> list[bytes]:
    begin, end = keys.xattrs(ino)
    return [keys.xattr_name(key) for key, _ in tr.iter_range(begin, end, snapshot=True)]


def set(tr: Transaction, keys: FsKeys, attr: InodeAttr, name: bytes, value: bytes) -> None:
    """Create or replace (XATTR_CREATE/XATTR_REPLACE are checked by the caller with ``get``)."""
    _check_name(name, attr)
    if len(value) > XATTR_SIZE_MAX_BYTES:
        raise FSError(errno.E2BIG)
    tr.set(keys.xattr(attr.ino, name), value)
    attr.ctime_ns = now_ns()


def remove(tr: Transaction, keys: FsKeys, attr: InodeAttr, name: bytes) -> None:
    _check_name(name)
    key = keys.xattr(attr.ino, name)
    if tr.get(key) is None:
        raise FSError(errno.ENODATA)
    tr.clear(key)
    attr.ctime_ns = now_ns()
