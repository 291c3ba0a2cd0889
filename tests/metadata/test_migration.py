"""The migration from format 1 (orphan and dirty-chunk keys with their inode as a tuple integer) to format
2 (every inode in a key is 8 bytes little-endian): records written the way the old code wrote them are
re-keyed in bounded, retry-safe steps (the store's chaos reruns them), once, and the settings record the
new format; a filesystem from a newer fusefs is refused.  Format 3 gains the search indexes, format 4 the
mark of the inodes quotas count."""

from __future__ import annotations

from typing import Any

import fdb.tuple
import pytest

from metadata import filedata, quota
from metadata.find import Query, find, parse_json_condition
from metadata.index import check as check_indexes
from metadata.keys import FORMAT_VERSION, FsKeys
from metadata.migration import format_problem, upgrade
from metadata.model import ROOT_CALLER, ROOT_INODE, FsConfig, pack, unpack
from metadata.namespace import Namespace, UnknownFilesystem, format_filesystem, load_config
from metadata.store import Store, Transaction

ORPHANS = {7: [111, b"session-a"], 2**40 + 3: 222, 513: [333, b""]}  # a bare time: before sessions
DIRTY = {(7, 0): b"session-a", (7, 5): b"", (2**33, 1): b"session-b", (256, 2**20): b"session-a"}


class CountingStore:
    """The store, counting the transactions asked of it (each may run its function several times)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.transactions = 0

    def transact(self, fn: Any) -> Any:
        self.transactions += 1
        return self.store.transact(fn)


def _make_format_1(store: Store, name: str) -> None:
    """A filesystem as the code of format 1 before ids left it: its settings without ``format_version`` and
    ``fs_id``, its orphans and dirty marks keyed ``('o', ino)`` and ``('w', ino, index)`` with integer
    elements."""
    format_filesystem(store, FsConfig(name))
    settings = unpack(store.transact(lambda tr: tr.get(FsKeys(name).config())))
    del settings["format_version"], settings["fs_id"]

    def write(tr: Transaction) -> None:
        tr.set(FsKeys(name).config(), pack(settings))
        for ino, value in ORPHANS.items():
            tr.set(fdb.tuple.pack(("fusefs", name, "o", ino)), pack(value))
        for (ino, index), session in DIRTY.items():
            tr.set(fdb.tuple.pack(("fusefs", name, "w", ino, index)), session)

    store.transact(write)


def _dump(store: Store, name: str) -> dict[bytes, bytes]:
    return dict(store.transact(lambda tr: tr.get_range(*FsKeys(name).whole_filesystem())))


def test_settings_without_a_format_are_format_1_and_new_ones_the_current(store):
    _make_format_1(store, "old")
    assert load_config(store, "old").format_version == 1
    format_filesystem(store, FsConfig("new"))
    assert load_config(store, "new").format_version == FORMAT_VERSION == 4


def test_upgrade_rekeys_every_record_in_bounded_steps(store):
    _make_format_1(store, "old")
    counting = CountingStore(store)
    config = upgrade(counting, "old", "new-id", batch=3)  # type: ignore[arg-type]
    # the id's, then 3 orphans, 3 marks, and the last mark with format 2; then format 4 (its settings
    # predate the search indexes, so they are off: nothing to build; no quota charges to mark: one empty
    # read)
    assert len(ORPHANS) + len(DIRTY) == 7 and counting.transactions == 1 + 3 + 1 + 1
    assert config.format_version == 4 and config.fs_id == "new-id"
    assert load_config(store, "old").format_version == 4
    keys = FsKeys("old")
    sessions = store.transact(lambda tr: Namespace(load_config(store, "old")).orphan_sessions(tr))
    assert sessions == {ino: value[1] if isinstance(value, list) else b"" for ino, value in ORPHANS.items()}
    marks = store.transact(lambda tr: filedata.dirty_marks(tr, keys))
    assert sorted(marks) == sorted((ino, index, session) for (ino, index), session in DIRTY.items())
    assert store.transact(lambda tr: tr.get(keys.orphan(7))) == pack(ORPHANS[7])
    assert store.transact(lambda tr: tr.get_range(*keys.v1_orphans())) == []
    assert store.transact(lambda tr: tr.get_range(*keys.v1_dirty_chunks())) == []


def test_upgrade_runs_once(store):
    _make_format_1(store, "old")
    upgrade(store, "old", "id", batch=2)
    after = _dump(store, "old")
    counting = CountingStore(store)
    assert upgrade(counting, "old", "other", batch=2).fs_id == "id"  # type: ignore[arg-type]
    assert counting.transactions == 1  # the id's: nothing left to migrate
    assert _dump(store, "old") == after


def test_upgrade_of_a_filesystem_with_nothing_to_rekey_records_the_format(store):
    _make_format_1(store, "old")
    store.transact(lambda tr: tr.clear_range(*FsKeys("old").v1_orphans()))
    store.transact(lambda tr: tr.clear_range(*FsKeys("old").v1_dirty_chunks()))
    assert upgrade(store, "old", "id").format_version == FORMAT_VERSION


def test_format_1_keys_of_another_filesystem_are_left_alone(store):
    _make_format_1(store, "old")
    _make_format_1(store, "other")
    before = _dump(store, "other")
    upgrade(store, "old", "id")
    assert _dump(store, "other") == before


def test_upgrade_of_a_missing_filesystem_fails(store):
    with pytest.raises(UnknownFilesystem, match="no filesystem named 'ghost'"):
        upgrade(store, "ghost", "id")


def test_format_problem_names_what_to_do():
    assert format_problem(FsConfig("a")) is None
    assert format_problem(FsConfig("a", format_version=1)) == (
        "filesystem 'a' was made by an older fusefs (format 1): mount it read-write once (without -o ro), "
        "which brings it to the current format"
    )
    assert format_problem(FsConfig("a", format_version=5)) == (
        "filesystem 'a' was made by a newer fusefs (format 5; this one knows formats up to 4): "
        "use that fusefs"
    )


def test_a_newer_format_is_not_touched(store):
    format_filesystem(store, FsConfig("new", format_version=FORMAT_VERSION + 1))
    before = _dump(store, "new")
    assert upgrade(store, "new", "id").format_version == FORMAT_VERSION + 1
    assert _dump(store, "new") == before


def _make_format_2(store: Store, search_index: bool) -> tuple[FsConfig, FsKeys]:
    """A filesystem made before the indexes: its entries and xattrs, no index records, format 2 (with
    the search indexes turned on by ``index enable`` before its first mount, if `search_index`)."""
    format_filesystem(store, FsConfig("two", search_index=True))
    config = load_config(store, "two")
    ns, keys = Namespace(config), FsKeys("two")
    first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", 10))

    def populate(tr: Transaction) -> None:
        ns.create(tr, ROOT_INODE, b"d", first, 0o40755, ROOT_CALLER)
        for n in range(1, 8):
            ns.create(tr, first, b"f%d.parquet" % n, first + n, 0o100644, ROOT_CALLER)
            ns.setxattr(tr, first + n, b"user.j", b'{"n": %d}' % n, ROOT_CALLER)
        for begin, end in keys.index_ranges().values():
            tr.clear_range(begin, end)
        config.format_version = 2
        config.search_index = search_index
        tr.set(keys.config(), config.encode())

    store.transact(populate)
    return config, keys


def _index_records(store: Store, keys: FsKeys) -> list[tuple[bytes, bytes]]:
    return [
        row
        for begin, end in keys.index_ranges().values()
        for row in store.transact(lambda tr, begin=begin, end=end: tr.get_range(begin, end))
    ]


def test_upgrade_from_format_2_builds_the_indexes_in_bounded_steps(store):
    _, keys = _make_format_2(store, search_index=True)
    assert len(check_indexes(store, keys)) == 8 * 3 + 1 + 7 * 2  # every record is missing
    counting = CountingStore(store)
    assert upgrade(counting, "two", "id", batch=3).format_version == 4  # type: ignore[arg-type]
    # The id's, the old suffix records' clear, 8 entries, 7 xattrs, no quota charges to mark, the format.
    assert counting.transactions == 1 + 1 + 3 + 3 + 1 + 1
    assert check_indexes(store, keys) == []
    query = Query(json_fields=[parse_json_condition("j.n >= 6")])
    found = store.transact(lambda tr: find(tr, keys, query))
    assert [m.path for m in found.matches] == [b"/d/f6.parquet", b"/d/f7.parquet"]


def test_upgrade_from_format_2_without_search_indexes_only_records_the_format(store):
    _, keys = _make_format_2(store, search_index=False)
    counting = CountingStore(store)
    config = upgrade(counting, "two", "id", batch=3)  # type: ignore[arg-type]
    assert config.format_version == 4 and not config.search_index
    assert counting.transactions == 1 + 1 + 1  # the id's, no quota charges to mark, the format
    assert _index_records(store, keys) == []


def test_upgrade_from_format_3_replaces_the_suffix_index(store):
    config, keys = _make_format_2(store, search_index=True)
    upgrade(store, "two", "id")
    old_suffix = keys.v3_suffixes()[0][:-1] + b"\x01f1.parquet"[::-1] + b"\x00"

    def as_format_3(tr: Transaction) -> None:
        for kind in ("X", "D"):
            tr.clear_range(*keys.index_ranges()[kind])
        tr.set(old_suffix, b"format 3's record")
        config.format_version, config.fs_id = 3, "id"
        tr.set(keys.config(), config.encode())

    store.transact(as_format_3)
    assert len(check_indexes(store, keys)) == 8 + 1  # the extension and subdirectory records
    assert upgrade(store, "two", "id").format_version == 4
    assert check_indexes(store, keys) == []
    assert store.transact(lambda tr: tr.get_range(*keys.v3_suffixes())) == []


def test_upgrade_from_format_3_marks_the_inodes_quotas_count(store):
    """A filesystem whose quotas were set by format 3: its charged inodes lack the mark that flushes and
    deletes now go by; the upgrade sets it, a bounded batch at a time, and nowhere else."""
    format_filesystem(store, FsConfig("three"))
    config = load_config(store, "three")
    ns, keys = Namespace(config), FsKeys("three")
    first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", 10))

    def populate(tr: Transaction) -> None:
        ns.create(tr, ROOT_INODE, b"q", first, 0o40755, ROOT_CALLER)
        ns.create(tr, ROOT_INODE, b"free", first + 9, 0o100644, ROOT_CALLER)
        for n in range(1, 6):
            ns.create(tr, first, b"f%d" % n, first + n, 0o100644, ROOT_CALLER)
        quota.set_quota(tr, ns, first, 1000, 0)
        for n in range(1, 6):
            attr = ns.getattr(tr, first + n)
            attr.quota_charged = False  # as format 3 wrote it
            tr.set(keys.attr(first + n), attr.encode())
        config.format_version = 3
        tr.set(keys.config(), config.encode())

    store.transact(populate)
    counting = CountingStore(store)
    assert upgrade(counting, "three", "id", batch=2).format_version == 4  # type: ignore[arg-type]
    assert counting.transactions == 1 + 3 + 1  # the id's, 5 charged inodes 2 at a time, the format
    made = [first, *range(first + 1, first + 6), first + 9]
    attrs = store.transact(lambda tr: [ns.getattr(tr, ino) for ino in made])
    assert [attr.ino - first for attr in attrs if attr.quota_charged] == [1, 2, 3, 4, 5]
