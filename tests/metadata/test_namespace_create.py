"""Namespace model: create of every type, names, links, unlink/rmdir, orphans and reclaim, statfs."""

from __future__ import annotations

import errno
import os
import stat

import pytest
from conftest import DIR, OTHER, REG, ROOT, USER

from metadata import filedata
from metadata.model import ROOT_INODE, ChunkRecord, SetAttrRequest
from metadata.namespace import LINK_MAX

DEVICE = os.makedev(8, 1)


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        (stat.S_IFREG | 0o640, {}),
        (stat.S_IFDIR | 0o750, {}),
        (stat.S_IFLNK | 0o777, {"target": b"../some/where"}),
        (stat.S_IFIFO | 0o600, {}),
        (stat.S_IFSOCK | 0o600, {}),
        (stat.S_IFCHR | 0o620, {"rdev": DEVICE}),
        (stat.S_IFBLK | 0o660, {"rdev": DEVICE}),
    ],
    ids=["reg", "dir", "symlink", "fifo", "socket", "chr", "blk"],
)
def test_create_every_type(fs, mode, extra):
    made = fs.make(ROOT_INODE, b"node", mode, USER, **extra)
    found = fs.lookup(ROOT_INODE, b"node")
    assert found == made == fs.attr(made.ino)
    assert found.mode == mode
    assert (found.uid, found.gid) == (USER.uid, USER.gid)
    assert found.nlink == (2 if stat.S_ISDIR(mode) else 1)
    assert found.rdev == extra.get("rdev", 0)
    assert found.parent == (ROOT_INODE if stat.S_ISDIR(mode) else 0)
    assert found.atime_ns == found.mtime_ns == found.ctime_ns > 0
    if stat.S_ISLNK(mode):
        assert fs.readlink(made.ino) == extra["target"]
        assert found.size == len(extra["target"])
    else:
        fs.fails(errno.EINVAL, "readlink", made.ino)
    assert [(name, attr.ino) for name, attr in fs.readdir(ROOT_INODE, None, 10)] == [(b"node", made.ino)]
    fs.check_tree()


def test_create_errors(fs):
    made = fs.tree("d/", "d/f")
    fs.fails(errno.EEXIST, "create", made["d"], b"f", fs.new_ino(), REG, ROOT)
    fs.fails(errno.EEXIST, "create", ROOT_INODE, b"d", fs.new_ino(), DIR, ROOT)
    fs.fails(errno.ENOTDIR, "create", made["d/f"], b"x", fs.new_ino(), REG, ROOT)
    fs.fails(errno.ENOENT, "create", 999_999, b"x", fs.new_ino(), REG, ROOT)
    for bad in (b"", b"a/b", b"a\0b"):
        fs.fails(errno.EINVAL, "create", ROOT_INODE, bad, fs.new_ino(), REG, ROOT)
    fs.fails(errno.ENOENT, "lookup", made["d"], b"missing")
    fs.fails(errno.ENOENT, "getattr", 999_999)


def test_name_length_limits(fs):
    fs.make(ROOT_INODE, b"n" * 255)
    assert fs.lookup(ROOT_INODE, b"n" * 255).is_reg
    fs.fails(errno.ENAMETOOLONG, "create", ROOT_INODE, b"n" * 256, fs.new_ino(), REG, ROOT)
    fs.fails(errno.ENAMETOOLONG, "lookup", ROOT_INODE, b"n" * 256)
    fs.make(ROOT_INODE, b"longlink", stat.S_IFLNK | 0o777, target=b"t" * 4095)
    assert fs.readlink(fs.lookup(ROOT_INODE, b"longlink").ino) == b"t" * 4095
    fs.fails(errno.ENAMETOOLONG, "create", ROOT_INODE, b"toolong", fs.new_ino(), stat.S_IFLNK | 0o777,
             ROOT, target=b"t" * 4096)


def test_create_again_with_the_same_inode_is_a_new_operation(fs):
    """Only a retry of the same transaction (after an unknown commit result) is recognised as the same
    create, by its operation record (test_namespace_retry.py); another create of the name fails."""
    ino = fs.new_ino()
    fs.create(ROOT_INODE, b"f", ino, REG, USER)
    fs.fails(errno.EEXIST, "create", ROOT_INODE, b"f", ino, REG, USER)
    fs.check_tree()


def test_reserved_ids_never_overlap(fs):
    batches = [fs.reserve_ids("inode", 10) for _ in range(5)]
    assert all(b - a >= 10 for a, b in zip(batches, batches[1:]))
    assert batches[0] > ROOT_INODE
    chunk_ids = [fs.reserve_ids("chunk", 3) for _ in range(3)]
    assert chunk_ids == sorted(set(chunk_ids)) and chunk_ids[1] - chunk_ids[0] >= 3


def test_hard_links(fs):
    made = fs.tree("a/", "b/", "a/f")
    linked = fs.link(made["a/f"], made["b"], b"g", USER)
    assert linked.nlink == 2
    assert fs.lookup(made["b"], b"g").ino == made["a/f"]
    fs.fails(errno.EPERM, "link", made["a"], made["b"], b"dirlink", ROOT)
    fs.fails(errno.EEXIST, "link", made["a/f"], made["a"], b"f", ROOT)
    fs.fails(errno.ENOTDIR, "link", made["a/f"], made["a/f"], b"x", ROOT)
    fs.fails(errno.ENAMETOOLONG, "link", made["a/f"], made["b"], b"x" * 256, ROOT)
    removal = fs.unlink(made["a"], b"f", ROOT)
    assert not removal.is_orphan and removal.attr.nlink == 1
    assert fs.attr(made["a/f"]).nlink == 1
    assert fs.orphans() == []
    fs.check_tree()


def test_link_limits(fs):
    made = fs.tree("d/", "f")
    attr = fs.attr(made["f"])
    attr.nlink = LINK_MAX
    fs.raw_set(fs.keys.attr(made["f"]), attr.encode())
    fs.fails(errno.EMLINK, "link", made["f"], made["d"], b"g", ROOT)
    directory = fs.attr(made["d"])
    directory.nlink = LINK_MAX
    fs.raw_set(fs.keys.attr(made["d"]), directory.encode())
    fs.fails(errno.EMLINK, "create", made["d"], b"sub", fs.new_ino(), DIR, ROOT)
    fs.make(made["d"], b"file")  # only subdirectories count against a directory's link limit


def test_unlink_and_rmdir_errors(fs):
    made = fs.tree("d/", "d/sub/", "d/f", "empty/")
    fs.fails(errno.ENOTEMPTY, "rmdir", ROOT_INODE, b"d", ROOT)
    fs.fails(errno.ENOTDIR, "rmdir", made["d"], b"f", ROOT)
    fs.fails(errno.EISDIR, "unlink", made["d"], b"sub", ROOT)
    fs.fails(errno.ENOENT, "unlink", made["d"], b"missing", ROOT)
    fs.fails(errno.ENOENT, "rmdir", made["d"], b"missing", ROOT)
    fs.fails(errno.ENOTDIR, "unlink", made["d/f"], b"x", ROOT)
    removal = fs.rmdir(ROOT_INODE, b"empty", ROOT)
    assert removal.is_orphan and removal.attr.nlink == 0
    # A removed directory (still open somewhere) takes no new entries.
    fs.fails(errno.ENOENT, "create", made["empty"], b"x", fs.new_ino(), REG, ROOT)
    fs.fails(errno.ENOENT, "link", made["d/f"], made["empty"], b"x", ROOT)
    fs.fails(errno.ENOENT, "rename", made["d"], b"f", made["empty"], b"f", ROOT)
    fs.fails(errno.ENOENT, "lookup", ROOT_INODE, b"empty")
    fs.check_tree()


def test_directory_nlink_counts_subdirectories(fs):
    made = fs.tree("a/", "a/x/", "a/y/", "a/f", "b/")
    assert fs.attr(ROOT_INODE).nlink == 4
    assert fs.attr(made["a"]).nlink == 4
    fs.rmdir(made["a"], b"x", ROOT)
    assert fs.attr(made["a"]).nlink == 3
    fs.rename(made["a"], b"y", made["b"], b"y", ROOT)
    assert (fs.attr(made["a"]).nlink, fs.attr(made["b"]).nlink) == (2, 3)
    fs.rename(made["a"], b"f", made["b"], b"f", ROOT)  # files do not count
    assert (fs.attr(made["a"]).nlink, fs.attr(made["b"]).nlink) == (2, 3)
    fs.check_tree()


def test_last_unlink_makes_an_orphan_and_reclaim_clears_everything(fs):
    made = fs.tree("f", "keep")
    ino, keep = made["f"], made["keep"]
    chunk_ids = fs.reserve_ids("chunk", 2)

    def fill(tr, target):
        fs.ns.setxattr(tr, target, b"user.k", b"v", ROOT)
        fs.ns.setattr(tr, target, SetAttrRequest(size=5000), ROOT)
        filedata.write_inline(tr, fs.keys, target, b"x" * 20_000)
        for index in range(2):
            filedata.mark_dirty(tr, fs.keys, target, index, ChunkRecord(chunk_ids + index, 0, b"crc"))

    fs.run(lambda tr: fill(tr, ino))
    assert fs.statfs() == (3, 5000)
    removal = fs.unlink(ROOT_INODE, b"f", ROOT)
    assert removal.is_orphan
    assert fs.orphans() == [ino]
    assert fs.attr(ino).nlink == 0  # still readable while open
    assert fs.statfs() == (3, 5000)
    dropped = fs.reclaim(ino)
    assert sorted(record.chunk_id for record in dropped) == [chunk_ids, chunk_ids + 1]
    assert fs.orphans() == []
    assert fs.statfs() == (2, 0)
    for key_range in (fs.keys.xattrs(ino), fs.keys.inline_pieces(ino), fs.keys.chunks(ino)):
        assert fs.raw_range(key_range) == []
    assert fs.raw_get(fs.keys.attr(ino)) is None
    assert fs.raw_get(fs.keys.orphan(ino)) is None
    assert all(fs.raw_get(fs.keys.chunk_owner(chunk_ids + i)) is None for i in range(2))
    assert fs.reclaim(ino) == []  # a second reclaim (a retry) is harmless
    fs.fails(errno.ENOENT, "getattr", ino)
    assert fs.attr(keep).nlink == 1


def test_reclaim_clears_dirty_chunk_markers(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    chunk_id = fs.reserve_ids("chunk", 1)
    fs.run(lambda tr: filedata.mark_dirty(tr, fs.keys, ino, 0, ChunkRecord(chunk_id, 0)))
    fs.unlink(ROOT_INODE, b"f", ROOT)
    fs.reclaim(ino)
    assert fs.raw_range(fs.keys.dirty_chunks()) == []


def test_reclaim_skips_an_inode_that_has_names(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    assert fs.reclaim(ino) == []
    assert fs.attr(ino).nlink == 1


def test_reclaim_of_several_inodes_in_one_transaction(fs):
    made = fs.tree("a", "b", "keep")
    for name in (b"a", b"b"):
        fs.unlink(ROOT_INODE, name, ROOT)
    # with them: an inode that still has a name, and one already gone
    assert fs.reclaim(made["a"], made["keep"], made["b"], 10**9) == []
    assert fs.orphans() == []
    fs.fails(errno.ENOENT, "getattr", made["a"])
    fs.fails(errno.ENOENT, "getattr", made["b"])
    assert fs.attr(made["keep"]).nlink == 1
    assert fs.statfs()[0] == 2  # root and keep
    fs.check_tree()


def test_replaced_and_removed_directories_become_orphans(fs):
    made = fs.tree("d/", "e/", "f", "g")
    fs.rmdir(ROOT_INODE, b"d", ROOT)
    removal = fs.rename(ROOT_INODE, b"f", ROOT_INODE, b"g", ROOT)
    assert removal.is_orphan and removal.attr.ino == made["g"]
    assert sorted(fs.orphans()) == sorted([made["d"], made["g"]])
    for ino in fs.orphans():
        fs.reclaim(ino)
    assert fs.statfs()[0] == 3
    fs.check_tree()


def test_statfs_counts_inodes(fs):
    assert fs.statfs() == (1, 0)
    made = fs.tree("d/", "d/a", "d/b")
    fs.link(made["d/a"], ROOT_INODE, b"a2", ROOT)
    assert fs.statfs() == (4, 0)
    fs.setattr(made["d/a"], SetAttrRequest(size=100), ROOT)
    fs.setattr(made["d/b"], SetAttrRequest(size=50), ROOT)
    fs.setattr(made["d/b"], SetAttrRequest(size=20), ROOT)
    assert fs.statfs() == (4, 120)
    fs.unlink(made["d"], b"a", ROOT)
    fs.unlink(made["d"], b"b", ROOT)
    assert fs.orphans() == [made["d/b"]]
    fs.reclaim(made["d/b"])
    assert fs.statfs() == (3, 100)


def test_parent_times_change_on_entry_changes(fs):
    made = fs.tree("a/", "b/", "a/f")

    def times(ino):
        attr = fs.attr(ino)
        return attr.mtime_ns, attr.ctime_ns

    def check_bumped(op, *args, dirs):
        before = {d: times(d) for d in dirs}
        getattr(fs, op)(*args)
        for d in dirs:
            mtime, ctime = times(d)
            assert mtime > before[d][0] and ctime > before[d][1], f"{op}: times of directory {d}"
            assert mtime == ctime

    check_bumped("make", made["a"], b"g", dirs=[made["a"]])
    check_bumped("rename", made["a"], b"f", made["b"], b"f", ROOT, dirs=[made["a"], made["b"]])
    check_bumped("rename", made["b"], b"f", made["b"], b"f2", ROOT, dirs=[made["b"]])
    check_bumped("link", made["a/f"], made["a"], b"h", ROOT, dirs=[made["a"]])
    check_bumped("unlink", made["a"], b"h", ROOT, dirs=[made["a"]])
    check_bumped("mkdir", made["a"], b"sub", dirs=[made["a"]])
    check_bumped("rmdir", made["a"], b"sub", ROOT, dirs=[made["a"]])


def test_creates_are_owned_by_the_caller(fs):
    attr = fs.make(ROOT_INODE, b"f", REG, OTHER)
    assert (attr.uid, attr.gid) == (OTHER.uid, OTHER.gid)
