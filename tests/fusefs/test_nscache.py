"""The daemon's namespace cache (fusefs/nscache.py) as a data structure: what it answers, for how long,
and what it refuses to trust.  Its notes are built by the namespace's real transaction functions on a real
embedded store; only the clock is the test's, so that "for how long" needs no sleeping."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fusefs.nscache import NamespaceCache
from metadata.changelog import LogRecord
from metadata.model import ROOT_INODE, Caller, FsConfig, InodeAttr
from metadata.namespace import Namespace, format_filesystem
from metadata.sqlite_store import SqliteStore
from metadata.written import Written

ROOT = Caller(uid=0, gid=0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ns_store(tmp_path: Path):
    store = SqliteStore(str(tmp_path / "meta.db"), create=True)
    config = FsConfig(name="t")
    format_filesystem(store, config)
    yield Namespace(config), store
    store.close()


def noted(store: SqliteStore, fn) -> tuple[object, Written]:
    """``fn(tr)`` in a committed transaction, with the notes it took."""
    notes = Written()

    def body(tr):
        tr.written = notes
        return fn(tr)

    return store.transact(body), notes


def learned(cache: NamespaceCache, store: SqliteStore, fn) -> None:
    """``fn(tr)`` committed, and its notes applied to ``cache`` at time 1000 in its current epoch."""
    _, notes = noted(store, fn)
    cache.apply(notes, 1000.0, cache.epoch)


def record(ino: int, parent: int | None = None, name: bytes | None = None) -> LogRecord:
    return LogRecord(b"\0" * 10, 0, "create", 0, ino, parent, name, None, None, b"other")


def test_a_fact_is_answered_for_the_timeout_then_no_more(ns_store) -> None:
    ns, store = ns_store
    clock = Clock()
    cache = NamespaceCache(1.0, clock)
    attr, notes = noted(store, lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, stat.S_IFREG | 0o644, ROOT))
    cache.apply(notes, clock(), cache.epoch)
    cached = cache.attr(100)
    assert cached is not None and cached.size == 0 and cached.mode == attr.mode
    assert cache.entry(ROOT_INODE, b"f") == (True, 100)
    root = cache.attr(ROOT_INODE)
    assert root is not None and root.mtime_ns == attr.ctime_ns  # the directory as the create left it
    clock.now += 1.0
    assert cache.attr(100) is None
    assert cache.entry(ROOT_INODE, b"f") == (False, None)
    assert cache.hint(ROOT_INODE, b"f") == 100  # a hint outlives its freshness: it is verified when used


def test_answers_are_copies(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(1.0, Clock())
    learned(cache, store, lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, stat.S_IFREG | 0o644, ROOT))
    first = cache.attr(100)
    assert first is not None
    first.size = 12345
    again = cache.attr(100)
    assert again is not None and again.size == 0


def test_a_directory_created_here_knows_every_name_in_it(ns_store) -> None:
    ns, store = ns_store
    clock = Clock()
    cache = NamespaceCache(1.0, clock)
    _, notes = noted(store, lambda tr: ns.create(tr, ROOT_INODE, b"d", 100, stat.S_IFDIR | 0o755, ROOT))
    cache.apply(notes, clock(), cache.epoch)
    assert cache.entry(100, b"anything") == (True, None)
    _, notes = noted(store, lambda tr: ns.create(tr, 100, b"x", 101, stat.S_IFREG | 0o644, ROOT))
    clock.now += 0.9
    cache.apply(notes, clock(), cache.epoch)
    assert cache.entry(100, b"x") == (True, 101)
    clock.now += 0.9  # 1.8 s after the mkdir: the create found the directory as the mkdir left it
    assert cache.entry(100, b"other") == (True, None)
    _, notes = noted(store, lambda tr: ns.unlink(tr, 100, b"x", ROOT, lambda ino: False))
    cache.apply(notes, clock(), cache.epoch)
    assert cache.entry(100, b"x") == (True, None)


def test_a_directory_changed_by_someone_else_is_no_longer_complete(ns_store) -> None:
    ns, store = ns_store
    clock = Clock()
    cache = NamespaceCache(60.0, clock)
    _, notes = noted(store, lambda tr: ns.create(tr, ROOT_INODE, b"d", 100, stat.S_IFDIR | 0o755, ROOT))
    cache.apply(notes, clock(), cache.epoch)
    # Another mount creates a name: its change-log record has not arrived, but this mount's next
    # transaction finds the directory's times changed.
    store.transact(lambda tr: ns.create(tr, 100, b"theirs", 102, stat.S_IFREG | 0o644, ROOT))
    _, notes = noted(store, lambda tr: ns.getattr(tr, 100))
    cache.apply(notes, clock(), cache.epoch)
    assert cache.entry(100, b"theirs") == (False, None)
    assert cache.entry(100, b"missing") == (False, None)


def test_notes_taken_across_another_mounts_change_are_not_trusted(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(60.0, Clock())
    _, notes = noted(store, lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, stat.S_IFREG | 0o644, ROOT))
    epoch = cache.epoch
    cache.forget(record(100, ROOT_INODE, b"f"))  # arrives while the transaction ran
    cache.apply(notes, 1000.0, epoch)
    assert cache.attr(100) is None
    assert cache.entry(ROOT_INODE, b"f") == (False, None)


def test_another_mounts_change_drops_the_inode_its_directory_and_the_entry(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(60.0, Clock())
    learned(cache, store, lambda tr: ns.create(tr, ROOT_INODE, b"d", 100, stat.S_IFDIR | 0o755, ROOT))
    learned(cache, store, lambda tr: ns.create(tr, 100, b"f", 101, stat.S_IFREG | 0o644, ROOT))
    cache.forget(record(101, 100, b"f"))
    assert cache.attr(101) is None and cache.attr(100) is None
    assert cache.entry(100, b"f") == (False, None)
    assert cache.entry(100, b"g") == (False, None)  # no longer known complete
    assert cache.attr(ROOT_INODE) is not None  # untouched


def test_an_older_state_never_replaces_a_newer_one(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(60.0, Clock())
    _, old = noted(store, lambda tr: ns.create(tr, ROOT_INODE, b"a", 100, stat.S_IFREG | 0o644, ROOT))
    _, new = noted(store, lambda tr: ns.create(tr, ROOT_INODE, b"b", 101, stat.S_IFREG | 0o644, ROOT))
    cache.apply(new, 1000.0, cache.epoch)
    cache.apply(old, 1000.0, cache.epoch)  # the earlier commit's notes arrive last
    root = cache.attr(ROOT_INODE)
    created_b = cache.attr(101)
    assert root is not None and created_b is not None and root.mtime_ns == created_b.ctime_ns


def test_deleted_inodes_are_forgotten(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(60.0, Clock())
    learned(cache, store, lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, stat.S_IFREG | 0o644, ROOT))
    learned(cache, store, lambda tr: ns.unlink(tr, ROOT_INODE, b"f", ROOT, lambda ino: False))
    assert cache.attr(100) is None
    assert cache.entry(ROOT_INODE, b"f") == (True, None)


def test_strict_answers_nothing_but_keeps_hints(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(0.0, Clock())
    learned(cache, store, lambda tr: ns.create(tr, ROOT_INODE, b"d", 100, stat.S_IFDIR | 0o755, ROOT))
    assert cache.attr(100) is None
    assert cache.entry(100, b"x") == (False, None)
    assert cache.hint(ROOT_INODE, b"d") == 100


def test_another_mounts_changes_leave_hints_never_answers() -> None:
    """A strict mount (timeout 0) gets a hint from each name another mount's change gives an inode: its
    first lookup of that name reads the entry and the inode in one round trip (verified there)."""
    cache = NamespaceCache(0.0, Clock())
    cache.forget(record(101, 100, b"f"))  # created by another mount
    assert cache.hint(100, b"f") == 101
    assert cache.entry(100, b"f") == (False, None) and cache.lookup(100, b"f") == (False, None)
    renamed = LogRecord(b"\0" * 10, 0, "rename", 0, 101, 100, b"f", 102, b"g", b"other")
    cache.forget(renamed)
    assert (cache.hint(100, b"f"), cache.hint(102, b"g")) == (None, 101)
    cache.forget(LogRecord(b"\0" * 10, 0, "unlink", 0, 101, 102, b"g", None, None, b"other"))
    assert cache.hint(102, b"g") is None
    cache.forget(LogRecord(b"\0" * 10, 0, "setxattr", 0, 103, None, b"user.x", None, None, b"other"))
    assert cache.hint(103, b"user.x") is None  # an xattr name is no entry
    owner = NamespaceCache(60.0, Clock(), hints=False)  # the sole owner of an embedded store: no hints
    owner.forget(record(101, 100, b"f"))
    assert owner.hint(100, b"f") is None


def test_a_commit_of_unknown_outcome_empties_the_cache(ns_store) -> None:
    ns, store = ns_store
    cache = NamespaceCache(60.0, Clock())
    learned(cache, store, lambda tr: ns.create(tr, ROOT_INODE, b"f", 100, stat.S_IFREG | 0o644, ROOT))
    observation = cache.observe()
    observation.attempt()
    observation.failed(uncertain=True)
    assert cache.attr(100) is None and cache.hint(ROOT_INODE, b"f") is None


def test_sizes_stay_bounded() -> None:
    cache = NamespaceCache(60.0, Clock())
    notes = Written()
    for ino in range(100, 100 + 30_000):
        notes.attrs[ino] = InodeAttr(ino, stat.S_IFREG | 0o644, 1, 0, 0)
    cache.apply(notes, 1000.0, cache.epoch)
    assert cache.attr(100) is None  # evicted: the oldest
    assert cache.attr(100 + 29_999) is not None
