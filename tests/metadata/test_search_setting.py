"""The search indexes are a per-filesystem choice (``FsConfig.search_index``): without it no namespace
transaction, fsck repair or dump load writes an index record; ``search_setting.enable`` turns it on for
an existing filesystem and indexes what it holds, retry-safe, after which the transactions keep them."""

from __future__ import annotations

import pytest
from conftest import ROOT, Fs, commit_unknown_once

from metadata import fsck, index, search_setting
from metadata.dump import dump, load
from metadata.find import NotIndexed, Query, search
from metadata.keys import FsKeys
from metadata.model import ROOT_INODE, FsConfig, pack, unpack
from metadata.namespace import Namespace, UnknownFilesystem, format_filesystem, load_config


def index_records(fs: Fs, name: str | None = None) -> int:
    keys = FsKeys(name or fs.config.name)
    return sum(len(fs.raw_range(kind_range)) for kind_range in keys.index_ranges().values())


def change_everything(fs: Fs) -> None:
    """Creates, hard links, renames (replacing and exchanging), xattrs short, long and JSON, unlinks."""
    t = fs.tree("d/", "d/a.parquet", "b.csv", "c")
    fs.link(t["d/a.parquet"], ROOT_INODE, b"hard.parquet", ROOT)
    fs.rename(ROOT_INODE, b"b.csv", t["d"], b"b2.csv", ROOT)
    fs.rename(ROOT_INODE, b"c", t["d"], b"b2.csv", ROOT)
    fs.rename(t["d"], b"a.parquet", ROOT_INODE, b"hard.parquet", ROOT, exchange=True)
    fs.setxattr(t["d/a.parquet"], b"user.j", b'{"lr": 0.1, "team": "vision"}', ROOT)
    fs.setxattr(t["d/a.parquet"], b"user.long", b"L" * (index.VALUE_INDEX_MAX_BYTES + 1), ROOT)
    fs.setxattr(t["c"], b"user.k", b"v", ROOT)
    fs.removexattr(t["d/a.parquet"], b"user.long", ROOT)
    fs.unlink(ROOT_INODE, b"hard.parquet", ROOT)


def test_settings_without_the_choice_have_no_indexes(store):
    format_filesystem(store, FsConfig("old"))
    settings = unpack(store.transact(lambda tr: tr.get(FsKeys("old").config())))
    del settings["search_index"]
    store.transact(lambda tr: tr.set(FsKeys("old").config(), pack(settings)))
    assert load_config(store, "old").search_index is False


def test_a_filesystem_without_indexes_writes_no_index_records(store):
    fs = Fs(store)
    change_everything(fs)
    assert index_records(fs) == 0
    assert fs.raw_range(fs.keys.all_entries()) != []  # the changes themselves were made


def test_search_refuses_a_filesystem_without_indexes_until_enable(store):
    fs = Fs(store)
    fs.tree("d/", "d/a.parquet")
    with pytest.raises(NotIndexed) as caught:
        search(store, "test", Query(name=b"a.parquet"))
    assert str(caught.value) == (
        "filesystem 'test' has no search indexes: turn them on with 'fusefs index enable --name test' "
        "(unmounted), or make it with 'fusefs mkfs --search-index'"
    )
    search_setting.enable(store, "test")
    assert [m.path for m in search(store, "test", Query(name=b"a.parquet")).matches] == [b"/d/a.parquet"]


def test_fsck_repairs_and_dump_load_write_no_index_records_without_indexes(store):
    fs = Fs(store)
    t = fs.tree("f", "g")
    fs.run(lambda tr: tr.clear(fs.keys.attr(t["f"])))  # a dangling entry
    fs.run(lambda tr: tr.clear(fs.keys.entry(ROOT_INODE, b"g")))  # an unreachable inode
    findings = fsck.check(fs.store, fs.config).findings
    (dangling,) = [f for f in findings if f.kind == fsck.DANGLING]
    fs.run(dangling.repair)
    fs.run(fsck.reconnect(fs.config, fsck.lost_found(fs.store, fs.config), t["g"]))
    assert fs.raw_range(fs.keys.all_entries()) != [] and index_records(fs) == 0
    lines = list(dump(fs.store, fs.config.name))
    fs.run(lambda tr: tr.clear_range(*fs.keys.whole_filesystem()))  # a copy may not share the id
    assert load(fs.store, "copy", lines).search_index is False
    assert index_records(fs, "copy") == 0


def test_enable_indexes_what_exists_and_the_transactions_keep_them(store):
    fs = Fs(store)
    change_everything(fs)
    config = search_setting.enable(store, fs.config.name)
    assert config.search_index and load_config(store, fs.config.name).search_index
    assert index_records(fs) > 0 and search_setting.check(store, fs.config.name) == []
    # A namespace opened with the new settings (a mount started after enable) keeps them exact.
    fs.ns = Namespace(load_config(store, fs.config.name))
    t = fs.tree("e/", "e/x.json")
    fs.rename(t["e"], b"x.json", ROOT_INODE, b"y.json", ROOT)
    fs.setxattr(t["e/x.json"], b"user.j", b'{"n": 1}', ROOT)
    assert search_setting.check(store, fs.config.name) == []


def test_enable_is_retry_safe_and_can_run_again(store):
    fs = Fs(store)
    change_everything(fs)
    with commit_unknown_once(store):
        search_setting.enable(store, fs.config.name)
    before = fs.raw_range(fs.keys.whole_filesystem())
    search_setting.enable(store, fs.config.name)
    assert fs.raw_range(fs.keys.whole_filesystem()) == before
    assert search_setting.check(store, fs.config.name) == []


def test_enable_of_a_missing_filesystem_fails(store):
    with pytest.raises(UnknownFilesystem, match="no filesystem named 'ghost'"):
        search_setting.enable(store, "ghost")
