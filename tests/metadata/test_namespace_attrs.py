"""Namespace model: setattr (mode, owner and the set-id rules, size, times), setgid directories, xattrs."""

from __future__ import annotations

import errno
import stat

import pytest
from conftest import DIR, OTHER, REG, ROOT, USER

from metadata.model import ROOT_INODE, SetAttrRequest

SUID_SGID_GX = stat.S_ISUID | stat.S_ISGID | 0o755


def test_chmod_keeps_the_type_bits(fs):
    made = fs.tree("f", "d/")
    for ino, kind in ((made["f"], stat.S_IFREG), (made["d"], stat.S_IFDIR)):
        # A mode carrying other type bits changes only the permission bits.
        attr = fs.setattr(ino, SetAttrRequest(mode=stat.S_IFLNK | 0o4711), ROOT)
        assert attr.mode == kind | 0o4711 == fs.attr(ino).mode


@pytest.mark.parametrize(
    ("kind", "start", "change", "expected"),
    [
        (REG, SUID_SGID_GX, {"uid": 5}, 0o755),
        (REG, SUID_SGID_GX, {"gid": 5}, 0o755),
        # setgid without group-execute is mandatory locking, not set-group-ID: it stays.
        (REG, stat.S_ISUID | stat.S_ISGID | 0o745, {"uid": 5}, stat.S_ISGID | 0o745),
        (DIR, SUID_SGID_GX, {"uid": 5, "gid": 5}, SUID_SGID_GX),
        # No owner change: nothing to clear.
        (REG, SUID_SGID_GX, {"uid": 0, "gid": 0}, SUID_SGID_GX),
    ],
    ids=["reg-uid", "reg-gid", "reg-gid-not-exec", "dir", "same-owner"],
)
def test_chown_clears_set_id_bits_of_non_directories(fs, kind, start, change, expected):
    attr = fs.make(ROOT_INODE, b"x", stat.S_IFMT(kind) | start)
    changed = fs.setattr(attr.ino, SetAttrRequest(**change), ROOT)
    assert stat.S_IMODE(changed.mode) == expected
    assert (changed.uid, changed.gid) == (change.get("uid", 0), change.get("gid", 0))
    assert stat.S_IFMT(changed.mode) == stat.S_IFMT(kind)


@pytest.mark.parametrize(
    ("caller", "file_gid", "keeps"),
    [(OTHER, 2000, False), (USER, 2000, True), (USER, 1000, True), (ROOT, 2000, True)],
    ids=["non-member", "supplementary-member", "primary-member", "root"],
)
def test_chmod_setgid_needs_group_membership(fs, caller, file_gid, keeps):
    ino = fs.make(ROOT_INODE, b"f").ino
    fs.setattr(ino, SetAttrRequest(uid=caller.uid, gid=file_gid), ROOT)
    attr = fs.setattr(ino, SetAttrRequest(mode=0o2755), caller)
    assert stat.S_IMODE(attr.mode) == (0o2755 if keeps else 0o755)


def test_setattr_size_and_times(fs):
    made = fs.tree("f", "d/")
    ino = made["f"]
    fs.make(ROOT_INODE, b"l", stat.S_IFLNK | 0o777, target=b"f")
    before = fs.attr(ino)
    grown = fs.setattr(ino, SetAttrRequest(size=12345), ROOT)
    assert grown.size == 12345 and grown.mtime_ns > before.mtime_ns and grown.ctime_ns > before.ctime_ns
    same = fs.setattr(ino, SetAttrRequest(size=12345), ROOT)
    assert same.mtime_ns == grown.mtime_ns and same.ctime_ns > grown.ctime_ns
    timed = fs.setattr(ino, SetAttrRequest(atime_ns=1_000_000_123, mtime_ns=2_000_000_456), ROOT)
    assert (timed.atime_ns, timed.mtime_ns) == (1_000_000_123, 2_000_000_456)
    assert timed.ctime_ns > same.ctime_ns
    assert fs.attr(ino) == timed
    explicit = fs.setattr(ino, SetAttrRequest(ctime_ns=42), ROOT)
    assert explicit.ctime_ns == 42
    fs.fails(errno.EISDIR, "setattr", made["d"], SetAttrRequest(size=0), ROOT)
    fs.fails(errno.EINVAL, "setattr", fs.lookup(ROOT_INODE, b"l").ino, SetAttrRequest(size=0), ROOT)
    fs.fails(errno.ENOENT, "setattr", 999_999, SetAttrRequest(mode=0o600), ROOT)


@pytest.mark.parametrize(
    "request_",
    [SetAttrRequest(), SetAttrRequest(mode=0o600), SetAttrRequest(uid=7), SetAttrRequest(atime_ns=5)],
    ids=["nothing", "mode", "uid", "atime"],
)
def test_setattr_always_bumps_ctime(fs, request_):
    attr = fs.make(ROOT_INODE, b"f")
    assert fs.setattr(attr.ino, request_, ROOT).ctime_ns > attr.ctime_ns


def test_setgid_directory_inheritance(fs):
    shared = fs.mkdir(ROOT_INODE, b"shared", 0o2775)
    fs.setattr(shared.ino, SetAttrRequest(gid=2000), ROOT)
    sub = fs.mkdir(shared.ino, b"sub", 0o755, OTHER)
    assert sub.gid == 2000 and sub.mode & stat.S_ISGID
    deeper = fs.make(sub.ino, b"file", REG, OTHER)
    assert deeper.gid == 2000
    plain = fs.make(shared.ino, b"plain", REG, OTHER)
    assert plain.gid == 2000 and not plain.mode & stat.S_ISGID
    # A setgid file made by a caller outside the inherited group loses the bit; a member keeps it.
    outsider = fs.make(shared.ino, b"outsider", stat.S_IFREG | 0o2755, OTHER)
    assert outsider.gid == 2000 and stat.S_IMODE(outsider.mode) == 0o755
    member = fs.make(shared.ino, b"member", stat.S_IFREG | 0o2755, USER)
    assert stat.S_IMODE(member.mode) == 0o2755
    # Outside a setgid directory the caller's own group applies.
    elsewhere = fs.make(ROOT_INODE, b"elsewhere", stat.S_IFREG | 0o2755, OTHER)
    assert elsewhere.gid == OTHER.gid and stat.S_IMODE(elsewhere.mode) == 0o2755
    assert not fs.mkdir(ROOT_INODE, b"nodir", 0o755, OTHER).mode & stat.S_ISGID


# -- extended attributes ------------------------------------------------------------------------------


def test_xattr_set_get_list_remove(fs):
    made = fs.tree("f", "d/")
    ino = made["f"]
    before = fs.attr(ino).ctime_ns
    fs.setxattr(ino, b"user.b", b"2", ROOT)
    fs.setxattr(ino, b"user.a", b"1", ROOT)
    fs.setxattr(ino, b"trusted.t", b"", ROOT)
    fs.setxattr(ino, b"security.s", b"\0\xff", ROOT)
    assert fs.attr(ino).ctime_ns > before
    assert fs.getxattr(ino, b"user.a") == b"1"
    assert fs.getxattr(ino, b"trusted.t") == b""
    assert fs.listxattr(ino) == [b"security.s", b"trusted.t", b"user.a", b"user.b"]
    fs.setxattr(ino, b"user.a", b"replaced", ROOT)
    assert fs.getxattr(ino, b"user.a") == b"replaced"
    fs.removexattr(ino, b"user.a", ROOT)
    fs.fails(errno.ENODATA, "getxattr", ino, b"user.a")
    fs.fails(errno.ENODATA, "removexattr", ino, b"user.a", ROOT)
    assert fs.listxattr(ino) == [b"security.s", b"trusted.t", b"user.b"]
    fs.setxattr(made["d"], b"user.on-dir", b"v", ROOT)
    assert fs.listxattr(made["d"]) == [b"user.on-dir"]
    assert fs.listxattr(ino) == [b"security.s", b"trusted.t", b"user.b"]
    fs.fails(errno.ENOENT, "getxattr", 999_999, b"user.a")
    fs.fails(errno.ENOENT, "setxattr", 999_999, b"user.a", b"", ROOT)


def test_xattr_limits(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    longest = b"user." + b"n" * 250
    fs.setxattr(ino, longest, b"v", ROOT)
    assert fs.getxattr(ino, longest) == b"v"
    too_long = longest + b"n"
    for method, args in (("setxattr", (ino, too_long, b"v", ROOT)), ("getxattr", (ino, too_long)),
                         ("removexattr", (ino, too_long, ROOT))):
        fs.fails(errno.ERANGE, method, *args)
    fs.setxattr(ino, b"user.big", b"v" * 65536, ROOT)
    assert fs.getxattr(ino, b"user.big") == b"v" * 65536
    fs.fails(errno.E2BIG, "setxattr", ino, b"user.bigger", b"v" * 65537, ROOT)


@pytest.mark.parametrize("name", [b"nospace", b"user", b"system.other", b"other.x", b"User.x"])
def test_xattr_names_need_a_known_namespace(fs, name):
    ino = fs.make(ROOT_INODE, b"f").ino
    fs.fails(errno.EOPNOTSUPP, "setxattr", ino, name, b"v", ROOT)
    fs.fails(errno.EOPNOTSUPP, "getxattr", ino, name)


@pytest.mark.parametrize("name", [b"user.", b"trusted.", b"security."])
def test_a_bare_namespace_prefix_is_an_invalid_name(fs, name):
    """As on ext4: the name after the prefix is empty (EINVAL), the namespace itself is supported."""
    ino = fs.make(ROOT_INODE, b"f").ino
    fs.fails(errno.EINVAL, "setxattr", ino, name, b"v", ROOT)
    fs.fails(errno.EINVAL, "getxattr", ino, name)
    fs.fails(errno.EINVAL, "removexattr", ino, name, ROOT)


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        (stat.S_IFLNK | 0o777, {"target": b"t"}),
        (stat.S_IFIFO | 0o644, {}),
        (stat.S_IFCHR | 0o644, {"rdev": 1}),
    ],
    ids=["symlink", "fifo", "chr"],
)
def test_user_xattrs_only_on_files_and_directories(fs, mode, extra):
    ino = fs.make(ROOT_INODE, b"node", mode, **extra).ino
    fs.fails(errno.EPERM, "setxattr", ino, b"user.x", b"v", ROOT)
    fs.setxattr(ino, b"trusted.x", b"v", ROOT)
    assert fs.listxattr(ino) == [b"trusted.x"]
