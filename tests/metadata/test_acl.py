"""POSIX ACLs in the namespace model: validation of the xattr format, the mode kept in step on setxattr
and chmod, default ACL inheritance on create (metadata/acl.py)."""

from __future__ import annotations

import errno
import stat
import struct

import pytest
from conftest import DIR, REG, ROOT, USER

from metadata import acl
from metadata.acl import GROUP, GROUP_OBJ, MASK, OTHER, USER_OBJ, Entry
from metadata.model import ROOT_INODE, SetAttrRequest

ACCESS, DEFAULT = acl.ACCESS, acl.DEFAULT


def _acl(*entries: tuple[int, int] | tuple[int, int, int]) -> bytes:
    return acl.encode([Entry(*entry) for entry in entries])


NAMED = _acl((USER_OBJ, 6), (GROUP_OBJ, 4), (GROUP, 7, 2000), (MASK, 5), (OTHER, 0))
MINIMAL = _acl((USER_OBJ, 7), (GROUP_OBJ, 5), (OTHER, 1))


def test_setting_an_access_acl_sets_the_mode(fs):
    ino = fs.make(ROOT_INODE, b"f", REG).ino
    fs.setxattr(ino, ACCESS, NAMED, ROOT)
    assert stat.S_IMODE(fs.attr(ino).mode) == 0o650  # owner, mask, other
    assert fs.getxattr(ino, ACCESS) == NAMED
    fs.setxattr(ino, ACCESS, MINIMAL, ROOT)  # says nothing the mode bits do not: not stored
    assert stat.S_IMODE(fs.attr(ino).mode) == 0o751
    fs.fails(errno.ENODATA, "getxattr", ino, ACCESS)
    assert ACCESS not in fs.listxattr(ino)


def test_an_access_acl_set_by_a_non_member_clears_setgid(fs):
    ino = fs.make(ROOT_INODE, b"f", stat.S_IFREG | stat.S_ISGID | 0o755).ino
    fs.setattr(ino, SetAttrRequest(uid=USER.uid), ROOT)
    fs.setattr(ino, SetAttrRequest(mode=stat.S_ISGID | 0o755), ROOT)
    fs.setxattr(ino, ACCESS, NAMED, USER)  # USER is not in group 0
    assert fs.attr(ino).mode & stat.S_ISGID == 0


def test_chmod_rewrites_the_mask_or_the_owning_group(fs):
    ino = fs.make(ROOT_INODE, b"f", REG).ino
    fs.setxattr(ino, ACCESS, NAMED, ROOT)
    fs.setattr(ino, SetAttrRequest(mode=0o714), ROOT)
    assert fs.getxattr(ino, ACCESS) == _acl(
        (USER_OBJ, 7), (GROUP_OBJ, 4), (GROUP, 7, 2000), (MASK, 1), (OTHER, 4)
    )
    # Without a mask (only reachable by storing one directly), the owning group's entry follows.
    no_mask = _acl((USER_OBJ, 6), (GROUP_OBJ, 4), (OTHER, 0))
    fs.raw_set(fs.keys.xattr(ino, ACCESS), no_mask)
    fs.setattr(ino, SetAttrRequest(mode=0o762), ROOT)
    assert fs.getxattr(ino, ACCESS) == _acl((USER_OBJ, 7), (GROUP_OBJ, 6), (OTHER, 2))


def test_default_acl_inheritance(fs):
    parent = fs.mkdir(ROOT_INODE, b"d").ino
    default = _acl((USER_OBJ, 7), (GROUP_OBJ, 7), (GROUP, 6, 2000), (MASK, 7), (OTHER, 5))
    fs.setxattr(parent, DEFAULT, default, ROOT)
    f = fs.make(parent, b"f", stat.S_IFREG | 0o640)
    assert stat.S_IMODE(f.mode) == 0o640
    assert fs.getxattr(f.ino, ACCESS) == _acl(
        (USER_OBJ, 6), (GROUP_OBJ, 7), (GROUP, 6, 2000), (MASK, 4), (OTHER, 0)
    )
    fs.fails(errno.ENODATA, "getxattr", f.ino, DEFAULT)
    d = fs.mkdir(parent, b"sub", 0o777)
    assert stat.S_IMODE(d.mode) == 0o775
    assert fs.getxattr(d.ino, DEFAULT) == default
    minimal_default = _acl((USER_OBJ, 7), (GROUP_OBJ, 5), (OTHER, 0))
    fs.setxattr(parent, DEFAULT, minimal_default, ROOT)  # a default ACL is kept even when minimal
    g = fs.make(parent, b"g", stat.S_IFREG | 0o666)
    assert stat.S_IMODE(g.mode) == 0o640
    fs.fails(errno.ENODATA, "getxattr", g.ino, ACCESS)
    link = fs.make(parent, b"l", stat.S_IFLNK | 0o777, target=b"g")
    assert stat.S_IMODE(link.mode) == 0o777 and fs.listxattr(link.ino) == []


def test_a_default_acl_only_on_directories(fs):
    ino = fs.make(ROOT_INODE, b"f", REG).ino
    fs.fails(errno.EACCES, "setxattr", ino, DEFAULT, MINIMAL, ROOT)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        struct.pack("<I", 2) + b"\0" * 7,  # a partial entry
        _acl((USER_OBJ, 7), (OTHER, 0)),  # no owning group
        _acl((USER_OBJ, 7), (GROUP_OBJ, 7), (GROUP, 7, 5), (OTHER, 0)),  # a named entry needs a mask
        _acl((GROUP_OBJ, 7), (USER_OBJ, 7), (OTHER, 0)),  # out of order
        _acl((USER_OBJ, 7), (GROUP_OBJ, 7), (GROUP, 7, 5), (GROUP, 6, 5), (MASK, 7), (OTHER, 0)),  # twice
        _acl((USER_OBJ, 8), (GROUP_OBJ, 7), (OTHER, 0)),  # a permission beyond rwx
        _acl((USER_OBJ, 7), (GROUP_OBJ, 7), (0x40, 7), (OTHER, 0)),  # an unknown tag
    ],
    ids=["empty", "partial", "no-group", "no-mask", "order", "duplicate", "perm", "tag"],
)
def test_malformed_acls_are_refused(fs, value):
    ino = fs.mkdir(ROOT_INODE, b"d").ino
    fs.fails(errno.EINVAL, "setxattr", ino, ACCESS, value, ROOT)
    fs.fails(errno.EINVAL, "setxattr", ino, DEFAULT, value, ROOT)


def test_an_unknown_acl_version_is_not_supported(fs):
    ino = fs.make(ROOT_INODE, b"f", REG).ino
    fs.fails(errno.EOPNOTSUPP, "setxattr", ino, ACCESS, struct.pack("<I", 1) + MINIMAL[4:], ROOT)


def test_removing_acls(fs):
    d = fs.mkdir(ROOT_INODE, b"d", 0o750).ino
    fs.fails(errno.ENODATA, "removexattr", d, ACCESS, ROOT)
    fs.setxattr(d, ACCESS, NAMED, ROOT)
    fs.setxattr(d, DEFAULT, NAMED, ROOT)
    fs.removexattr(d, ACCESS, ROOT)
    fs.removexattr(d, DEFAULT, ROOT)
    assert fs.listxattr(d) == [] and stat.S_IMODE(fs.attr(d).mode) == 0o650
    assert fs.attr(d).mode & stat.S_IFDIR == DIR & stat.S_IFDIR
