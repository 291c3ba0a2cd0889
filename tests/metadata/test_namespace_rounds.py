"""Store round trips per namespace operation, counted on the embedded store's latency emulation (each
read round there stands for one FoundationDB network round trip): an operation must not cost more than
its semantics need, and the hints a mount passes (the inode a name named when last seen) save one."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from metadata import acl
from metadata.emulation import StoreEmulation
from metadata.model import ROOT_INODE, Caller, FsConfig, SetAttrRequest
from metadata.namespace import Namespace, format_filesystem
from metadata.sqlite_store import SqliteStore
from metadata.store import Transaction

ROOT = Caller(uid=0, gid=0)
FILE = stat.S_IFREG | 0o644


@pytest.fixture
def counted(tmp_path: Path):
    store = SqliteStore(
        str(tmp_path / "meta.db"), shared=True, emulation=StoreEmulation(read_delay_s=0.00001)
    )
    config = FsConfig(name="t")
    format_filesystem(store, config)
    ns = Namespace(config)

    def rounds(fn: Callable[[Transaction], object]) -> int:
        before = store.emulated_read_rounds
        store.transact(fn)
        return store.emulated_read_rounds - before

    yield ns, rounds
    store.close()


def _never_open(ino: int) -> bool:
    return False


def test_create_is_one_round(counted) -> None:
    ns, rounds = counted
    assert rounds(lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, FILE, ROOT)) == 1
    assert rounds(lambda tr: ns.create(tr, ROOT_INODE, b"d", 101, stat.S_IFDIR | 0o755, ROOT)) == 1


def test_lookup_is_one_round_with_a_right_hint_and_two_otherwise(counted) -> None:
    ns, rounds = counted
    rounds(lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, FILE, ROOT))
    rounds(lambda tr: ns.create(tr, ROOT_INODE, b"g", 101, FILE, ROOT))
    assert rounds(lambda tr: ns.lookup(tr, ROOT_INODE, b"f")) == 2
    assert rounds(lambda tr: ns.lookup(tr, ROOT_INODE, b"f", 100)) == 1
    found = {}
    assert rounds(lambda tr: found.setdefault("ino", ns.lookup(tr, ROOT_INODE, b"f", 101).ino)) == 2
    assert found["ino"] == 100  # a wrong hint costs a round, never a wrong answer


def test_unlink_and_rename_with_hints_read_the_inodes_with_the_entries(counted) -> None:
    ns, rounds = counted
    for ino, name in ((100, b"a"), (101, b"b"), (102, b"c")):
        rounds(lambda tr, ino=ino, name=name: ns.create(tr, ROOT_INODE, name, ino, FILE, ROOT))
    rounds(lambda tr: ns.create(tr, ROOT_INODE, b"d", 103, stat.S_IFDIR | 0o755, ROOT))
    # The inode's chunk records are a range read of their own.
    assert rounds(lambda tr: ns.unlink(tr, ROOT_INODE, b"a", ROOT, _never_open)) == 3
    assert rounds(lambda tr: ns.unlink(tr, ROOT_INODE, b"b", ROOT, _never_open, 101)) == 2
    assert rounds(lambda tr: ns.rename(tr, ROOT_INODE, b"c", 103, b"c2", ROOT)) == 2
    assert rounds(lambda tr: ns.rename(tr, 103, b"c2", ROOT_INODE, b"c", ROOT, hints=(102, None))) == 1


@pytest.mark.parametrize("search_index", [False, True], ids=["plain", "indexed"])
def test_setxattr_and_removexattr_are_one_round_with_or_without_indexes(tmp_path: Path, search_index) -> None:
    """The value an xattr change replaces (for ENODATA, and for the search indexes' records) is read with
    the inode, in the same round."""
    emulation = StoreEmulation(read_delay_s=0.00001)
    store = SqliteStore(str(tmp_path / "meta.db"), shared=True, emulation=emulation)
    try:
        config = FsConfig(name="t", search_index=search_index)
        format_filesystem(store, config)
        ns = Namespace(config)
        store.transact(lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, FILE, ROOT))
        for change in (
            lambda tr: ns.setxattr(tr, 100, b"user.j", b'{"a": 1}', ROOT),
            lambda tr: ns.setxattr(tr, 100, b"user.j", b'{"a": 2}', ROOT),
            lambda tr: ns.removexattr(tr, 100, b"user.j", ROOT),
        ):
            before = store.emulated_read_rounds
            store.transact(change)
            assert store.emulated_read_rounds - before == 1
    finally:
        store.close()


def test_chmod_reads_the_access_acl_with_the_attributes(counted) -> None:
    ns, rounds = counted
    rounds(lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, FILE, ROOT))
    assert rounds(lambda tr: ns.setattr(tr, 100, SetAttrRequest(mode=0o600), ROOT)) == 1
    entries = [
        acl.Entry(acl.USER_OBJ, 0o6, 0),
        acl.Entry(acl.USER, 0o6, 1000),
        acl.Entry(acl.GROUP_OBJ, 0o4, 0),
        acl.Entry(acl.MASK, 0o6, 0),
        acl.Entry(acl.OTHER, 0o4, 0),
    ]
    rounds(lambda tr: ns.setxattr(tr, 100, acl.ACCESS, acl.encode(entries), ROOT))
    assert rounds(lambda tr: ns.setattr(tr, 100, SetAttrRequest(mode=0o750), ROOT)) == 1
    stored: dict[str, list[acl.Entry]] = {}
    rounds(lambda tr: stored.setdefault("acl", acl.decode(ns.getxattr(tr, 100, acl.ACCESS))))
    perms = {entry.tag: entry.perm for entry in stored["acl"]}
    assert (perms[acl.USER_OBJ], perms[acl.MASK], perms[acl.OTHER]) == (0o7, 0o5, 0o0)  # the new bits
    assert rounds(lambda tr: ns.setattr(tr, 100, SetAttrRequest(uid=1000), ROOT)) == 1
