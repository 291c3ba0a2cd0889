"""Namespace model: rename (replace, RENAME_NOREPLACE, RENAME_EXCHANGE, loops) and its link accounting."""

from __future__ import annotations

import errno
import random
import sys
import threading

import pytest
from conftest import ROOT

from metadata.model import ROOT_INODE, FSError
from metadata.store import StoreError, TransactionConflict


def test_rename_within_and_across_directories(fs):
    made = fs.tree("a/", "b/", "a/f", "a/sub/", "a/sub/x")
    assert fs.rename(made["a"], b"f", made["a"], b"g", ROOT) is None
    assert fs.listing(made["a"]) == [b"g", b"sub"]
    fs.rename(made["a"], b"sub", made["b"], b"sub2", ROOT)
    assert fs.attr(made["a/sub"]).parent == made["b"]
    assert fs.lookup(made["b"], b"sub2").ino == made["a/sub"]
    assert fs.listing(made["a/sub"]) == [b"x"]
    fs.fails(errno.ENOENT, "rename", made["a"], b"sub", made["b"], b"y", ROOT)
    fs.check_tree()


def test_rename_replaces_a_file(fs):
    made = fs.tree("d/", "d/src", "dst")
    removal = fs.rename(made["d"], b"src", ROOT_INODE, b"dst", ROOT)
    assert removal.attr.ino == made["dst"] and removal.is_orphan
    assert fs.lookup(ROOT_INODE, b"dst").ino == made["d/src"]
    assert fs.listing(made["d"]) == []
    assert fs.orphans() == [made["dst"]]
    fs.check_tree()


def test_rename_replaces_a_file_with_other_links(fs):
    made = fs.tree("src", "dst")
    fs.link(made["dst"], ROOT_INODE, b"dst2", ROOT)
    removal = fs.rename(ROOT_INODE, b"src", ROOT_INODE, b"dst", ROOT)
    assert not removal.is_orphan and removal.attr.nlink == 1
    assert fs.orphans() == []
    fs.check_tree()


def test_rename_replaces_an_empty_directory(fs):
    made = fs.tree("a/", "a/moved/", "a/moved/inside", "b/", "b/target/")
    removal = fs.rename(made["a"], b"moved", made["b"], b"target", ROOT)
    assert removal.attr.ino == made["b/target"] and removal.is_orphan
    assert fs.lookup(made["b"], b"target").ino == made["a/moved"]
    assert (fs.attr(made["a"]).nlink, fs.attr(made["b"]).nlink) == (2, 3)
    fs.check_tree()


def test_rename_type_mismatches_and_nonempty_targets(fs):
    made = fs.tree("d/", "full/", "full/x", "e/", "f")
    fs.fails(errno.ENOTEMPTY, "rename", ROOT_INODE, b"d", ROOT_INODE, b"full", ROOT)
    fs.fails(errno.ENOTDIR, "rename", ROOT_INODE, b"d", ROOT_INODE, b"f", ROOT)
    fs.fails(errno.EISDIR, "rename", ROOT_INODE, b"f", ROOT_INODE, b"e", ROOT)
    fs.fails(errno.ENOTDIR, "rename", made["f"], b"x", ROOT_INODE, b"y", ROOT)
    fs.fails(errno.ENOTDIR, "rename", ROOT_INODE, b"f", made["f"], b"y", ROOT)
    fs.fails(errno.ENAMETOOLONG, "rename", ROOT_INODE, b"f", ROOT_INODE, b"n" * 256, ROOT)


def test_rename_into_its_own_subtree_is_einval(fs):
    made = fs.tree("a/", "a/b/", "a/b/c/")
    fs.fails(errno.EINVAL, "rename", ROOT_INODE, b"a", made["a"], b"a", ROOT)
    fs.fails(errno.EINVAL, "rename", ROOT_INODE, b"a", made["a/b"], b"a", ROOT)
    fs.fails(errno.EINVAL, "rename", ROOT_INODE, b"a", made["a/b/c"], b"a", ROOT)
    fs.fails(errno.EINVAL, "rename", made["a"], b"b", made["a/b/c"], b"b", ROOT)
    # Moving the deepest one up is fine.
    fs.rename(made["a/b"], b"c", ROOT_INODE, b"c", ROOT)
    assert fs.depth(made["a/b/c"]) == 1
    fs.check_tree()


def test_rename_noreplace(fs):
    made = fs.tree("a", "b")
    fs.fails(errno.EEXIST, "rename", ROOT_INODE, b"a", ROOT_INODE, b"b", ROOT, noreplace=True)
    fs.rename(ROOT_INODE, b"a", ROOT_INODE, b"c", ROOT, noreplace=True)
    assert fs.lookup(ROOT_INODE, b"c").ino == made["a"]


def test_exchange_file_and_directory_across_parents(fs):
    made = fs.tree("p/", "q/", "p/file", "q/dir/", "q/dir/inside")
    assert fs.rename(made["p"], b"file", made["q"], b"dir", ROOT, exchange=True) is None
    assert fs.lookup(made["p"], b"file").ino == made["q/dir"]
    assert fs.lookup(made["q"], b"dir").ino == made["p/file"]
    assert fs.attr(made["q/dir"]).parent == made["p"]
    assert (fs.attr(made["p"]).nlink, fs.attr(made["q"]).nlink) == (3, 2)
    assert fs.listing(made["q/dir"]) == [b"inside"]
    assert fs.orphans() == []
    fs.check_tree()


def test_exchange_two_directories_across_parents(fs):
    made = fs.tree("p/", "q/", "p/x/", "q/y/")
    fs.rename(made["p"], b"x", made["q"], b"y", ROOT, exchange=True)
    assert fs.attr(made["p/x"]).parent == made["q"]
    assert fs.attr(made["q/y"]).parent == made["p"]
    fs.check_tree()


def test_exchange_errors(fs):
    made = fs.tree("a/", "a/b/", "f")
    fs.fails(errno.ENOENT, "rename", ROOT_INODE, b"f", ROOT_INODE, b"missing", ROOT, exchange=True)
    # Swapping a directory with an entry inside it would cut a loop.
    fs.fails(errno.EINVAL, "rename", made["a"], b"b", ROOT_INODE, b"a", ROOT, exchange=True)
    fs.fails(errno.EINVAL, "rename", ROOT_INODE, b"a", made["a"], b"b", ROOT, exchange=True)


def test_rename_onto_a_hard_link_of_the_same_file_does_nothing(fs):
    made = fs.tree("d/", "f")
    fs.link(made["f"], made["d"], b"g", ROOT)
    before = fs.dump()
    assert fs.rename(ROOT_INODE, b"f", made["d"], b"g", ROOT) is None
    assert fs.rename(ROOT_INODE, b"f", ROOT_INODE, b"f", ROOT) is None
    assert fs.dump() == before


def test_rename_bumps_ctime_of_the_moved_inode(fs):
    made = fs.tree("f", "d/")
    before = fs.attr(made["f"]).ctime_ns
    fs.rename(ROOT_INODE, b"f", made["d"], b"f", ROOT)
    after = fs.attr(made["f"])
    assert after.ctime_ns > before and after.mtime_ns < after.ctime_ns


def test_nlink_accounting_after_random_moves(fs):
    """Random mkdir/rmdir/rename of directories across parents: the tree stays consistent."""
    rng = random.Random(7)
    dirs = [ROOT_INODE]
    for i in range(30):
        dirs.append(fs.mkdir(rng.choice(dirs), b"d%d" % i).ino)
    for _ in range(60):
        parent = rng.choice(dirs)
        entries = fs.readdir(parent, None, 0)
        if not entries:
            continue
        name, attr = rng.choice(entries)
        target = rng.choice(dirs)
        try:
            if rng.random() < 0.2:
                fs.rmdir(parent, name, ROOT)
                dirs.remove(attr.ino)
            else:
                fs.rename(parent, name, target, name + b"m", ROOT)
        except FSError as error:
            assert error.errno in (errno.EINVAL, errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT)
    fs.check_tree()


def test_concurrent_crossing_renames_never_make_a_loop(fs):
    """Two threads keep moving a into b's subtree and b into a's (and back home): p/a ↔ q/b/b1/a and
    q/b ↔ p/a/a1/b.  Neither rename writes anything the other reads except the ancestors its loop check
    walks, so only a serializable loop check keeps the pair from closing a loop a → b1 → b → a1 → a."""
    made = fs.tree("p/", "p/a/", "p/a/a1/", "q/", "q/b/", "q/b/b1/")
    a, b = made["p/a"], made["q/b"]
    errors: list[BaseException] = []
    outcomes = {"moved": 0, "einval": 0}

    start = threading.Barrier(2)

    def mover(name: bytes, ino: int, home: int, away: int) -> None:
        start.wait()
        try:
            for _ in range(400):
                where = fs.attr(ino).parent
                try:
                    fs.rename(where, name, away if where == home else home, name, ROOT)
                except FSError as error:
                    assert error.errno == errno.EINVAL, error
                    outcomes["einval"] += 1
                    continue
                outcomes["moved"] += 1
                fs.depth(ino, bound=10)
        except (AssertionError, StoreError) as error:
            errors.append(error)

    threads = [threading.Thread(target=mover, args=(b"a", a, made["p"], made["q/b/b1"]), daemon=True),
               threading.Thread(target=mover, args=(b"b", b, made["q"], made["p/a/a1"]), daemon=True)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads inside transactions, not only between them
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(switch_interval)
    assert not any(thread.is_alive() for thread in threads), "a rename never finished (a loop?)"
    assert not errors, errors
    assert outcomes["moved"] > 0 and outcomes["einval"] > 0, outcomes
    for ino in (a, b):
        fs.depth(ino, bound=10)
    fs.check_tree()


@pytest.mark.parametrize(
    ("paths", "first", "second"),
    [
        (("a/", "b/"), ("", "a", "b"), ("", "b", "a")),
        (("a/", "b/", "b/c/"), ("", "a", "b/c"), ("", "b", "a")),
        # Disjoint parents: only the loop checks' reads of a and b overlap the other's writes.
        (("p/", "p/a/", "p/a/a1/", "q/", "q/b/", "q/b/b1/"), ("p", "a", "q/b/b1"), ("q", "b", "p/a/a1")),
    ],
    ids=["a-into-b-and-b-into-a", "a-into-b/c-and-b-into-a", "disjoint-parents"],
)
def test_overlapping_crossing_renames_do_not_both_commit(fs, paths, first, second):
    """Two renames that would each be fine alone but together cut a loop, begun before either commits:
    at most one commits (the other conflicts on the ancestors its loop check read)."""
    made = fs.tree(*paths)
    transactions = [fs.store.begin(), fs.store.begin()]
    for tr, (parent, name, into) in zip(transactions, (first, second)):
        fs.ns.rename(tr, made[parent], name.encode(), made[into], name.encode(), ROOT)
    committed = 0
    for tr in transactions:
        try:
            tr.commit()
            committed += 1
        except TransactionConflict:
            pass
        finally:
            tr.cancel()
    assert committed <= 1
    for path in paths:
        fs.depth(made[path.rstrip("/")], bound=10)
    fs.check_tree()
