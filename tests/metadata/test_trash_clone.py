"""The trash's transaction hooks (metadata/trash.py), chunk reference counts (metadata/filedata.py) and
clones (metadata/clone.py) on a real store, with and without retry chaos, and retried after an unknown
commit result."""

from __future__ import annotations

import errno
import stat

import pytest
from conftest import Fs, commit_unknown_once

from metadata import clone, filedata, trash
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord
from metadata.namespace import Namespace

ROOT = ROOT_CALLER


@pytest.fixture
def tfs(store) -> Fs:
    fs = Fs(store, "trashy", trash_days=2)
    trash.make_trash_dir(store, fs.ns)
    return fs


def _trash_ino(fs: Fs) -> int:
    ino = fs.run(lambda tr: trash.trash_dir(tr, fs.ns))
    assert ino is not None
    return ino


def _chunked(fs: Fs, parent: int, name: bytes, chunk_ids: list[int]) -> int:
    ino = fs.make(parent, name).ino

    def fill(tr) -> None:
        attr = fs.ns.attr_for_update(tr, ino)
        attr.chunked, attr.size = True, len(chunk_ids) * 4096
        tr.set(fs.keys.attr(ino), attr.encode())
        for index, chunk_id in enumerate(chunk_ids):
            filedata.put_chunk(tr, fs.keys, ino, index, ChunkRecord(chunk_id, 0, b"crc"))

    fs.run(fill)
    return ino


def test_trash_dir_is_roots_and_private(tfs) -> None:
    attr = tfs.lookup(ROOT_INODE, trash.TRASH_NAME)
    assert attr.mode == stat.S_IFDIR | 0o700 and attr.uid == 0
    trash.make_trash_dir(tfs.store, tfs.ns)  # a second time: nothing happens
    assert tfs.listing(ROOT_INODE) == [trash.TRASH_NAME]


def test_unlink_moves_the_last_name_into_the_trash(tfs) -> None:
    ino = tfs.make(ROOT_INODE, b"f").ino
    removal = tfs.unlink(ROOT_INODE, b"f", ROOT)
    assert not removal.is_orphan and removal.freed_chunks is None
    (name,) = tfs.listing(_trash_ino(tfs))
    assert name.endswith(f"-{ROOT_INODE}-f".encode())
    assert tfs.attr(ino).nlink == 1
    entries, complete = tfs.run(lambda tr: trash.entries(tr, tfs.ns, None, 10))
    assert complete and [(e.name, e.parent, e.original_name) for e in entries] == [(name, ROOT_INODE, b"f")]
    # Removing it from the trash deletes it, record and all.
    tfs.unlink(_trash_ino(tfs), name, ROOT, still_open=lambda ino: False)
    tfs.fails(errno.ENOENT, "getattr", ino)
    assert tfs.raw_range(tfs.keys.trash_records()) == []


def test_a_hard_linked_file_loses_a_name_without_going_to_the_trash(tfs) -> None:
    ino = tfs.make(ROOT_INODE, b"f").ino
    tfs.link(ino, ROOT_INODE, b"g", ROOT)
    tfs.unlink(ROOT_INODE, b"f", ROOT)
    assert tfs.listing(_trash_ino(tfs)) == []
    assert tfs.attr(ino).nlink == 1


def test_rmdir_and_rename_over_go_to_the_trash(tfs) -> None:
    made = tfs.tree("d/", "d/e/", "x", "y")
    tfs.rmdir(made["d"], b"e", ROOT)
    tfs.rename(ROOT_INODE, b"x", ROOT_INODE, b"y", ROOT)
    trash_ino = _trash_ino(tfs)
    names = tfs.listing(trash_ino)
    assert [name.rsplit(b"-", 1)[1] for name in names] == [b"e", b"y"]
    assert tfs.attr(made["d/e"]).parent == trash_ino
    assert tfs.attr(trash_ino).nlink == 3
    assert tfs.run(lambda tr: trash.children(tr, tfs.ns, made["d"])) == [made["d/e"]]
    tfs.check_tree()


def test_the_trash_itself_cannot_be_removed(tfs) -> None:
    tfs.fails(errno.EBUSY, "rmdir", ROOT_INODE, trash.TRASH_NAME, ROOT)


def test_no_trash_without_trash_days(fs) -> None:
    trash.make_trash_dir(fs.store, fs.ns)  # even with a /.trash, nothing goes there when the trash is off
    fs.make(ROOT_INODE, b"f")
    removal = fs.unlink(ROOT_INODE, b"f", ROOT, still_open=lambda ino: False)
    assert removal.freed_chunks == []
    assert fs.listing(_trash_ino(fs)) == []


def test_unlink_into_the_trash_is_retry_safe(tfs) -> None:
    tfs.make(ROOT_INODE, b"f")
    with commit_unknown_once(tfs.store):
        tfs.unlink(ROOT_INODE, b"f", ROOT)
    assert len(tfs.listing(_trash_ino(tfs))) == 1
    assert len(tfs.raw_range(tfs.keys.trash_records())) == 1


# -- shared chunks --------------------------------------------------------------------------------------
def test_a_shared_chunk_is_freed_by_its_last_reference_only(fs) -> None:
    a = _chunked(fs, ROOT_INODE, b"a", [500, 501])
    b = fs.new_ino()
    fs.run(lambda tr: clone.copy_inode(tr, fs.ns, a, b, ROOT_INODE, b"b", ROOT))
    assert fs.run(lambda tr: filedata.references(tr, fs.keys, 500)) == 2
    assert fs.run(lambda tr: filedata.mark_dirty(tr, fs.keys, b, 0, ChunkRecord(500, 0))) is False
    assert fs.raw_range(fs.keys.dirty_chunks()) == []  # a shared chunk is never marked for writing
    removal = fs.unlink(ROOT_INODE, b"a", ROOT, still_open=lambda ino: False)
    assert removal.freed_chunks == []  # b still refers to both
    assert fs.run(lambda tr: filedata.references(tr, fs.keys, 500)) == 1
    assert fs.raw_get(fs.keys.chunk_owner(500)) is not None
    removal = fs.unlink(ROOT_INODE, b"b", ROOT, still_open=lambda ino: False)
    assert sorted(record.chunk_id for record in removal.freed_chunks) == [500, 501]
    assert fs.raw_get(fs.keys.chunk_owner(500)) is None
    assert fs.raw_range(fs.keys.all_chunk_refs()) == []


def test_unshare_puts_a_private_copy_in_place(fs) -> None:
    a = _chunked(fs, ROOT_INODE, b"a", [600])
    b = fs.new_ino()
    fs.run(lambda tr: clone.copy_inode(tr, fs.ns, a, b, ROOT_INODE, b"b", ROOT))
    copy = ChunkRecord(601, 0)
    assert fs.run(lambda tr: filedata.unshare(tr, fs.keys, b, 0, 600, copy, b"s")) is True
    assert fs.run(lambda tr: filedata.read_chunks(tr, fs.keys, b))[0].chunk_id == 601
    assert fs.run(lambda tr: filedata.references(tr, fs.keys, 600)) == 1
    assert fs.raw_get(fs.keys.dirty_chunk(b, 0)) == b"s"
    # The record there is no longer the shared chunk's (a racing writer replaced it): nothing changes.
    before = fs.dump()
    assert fs.run(lambda tr: filedata.unshare(tr, fs.keys, b, 0, 600, ChunkRecord(602, 0), b"s")) is False
    assert fs.dump() == before


def _versioned(fs: Fs, name: bytes, chunk_id: int, version: int) -> int:
    """A one-chunk file whose chunk is object ``chunk_id``.``version`` of a data tier."""
    ino = _chunked(fs, ROOT_INODE, name, [chunk_id])
    record = ChunkRecord(chunk_id, 0, b"crc", version=version)
    fs.run(lambda tr: filedata.put_chunk(tr, fs.keys, ino, 0, record))
    return ino


def test_a_clone_keeps_the_object_version(fs) -> None:
    a = _versioned(fs, b"a", 630, 77)
    b = fs.new_ino()
    fs.run(lambda tr: clone.copy_inode(tr, fs.ns, a, b, ROOT_INODE, b"b", ROOT))
    assert fs.run(lambda tr: filedata.read_chunks(tr, fs.keys, b))[0].version == 77
    assert fs.run(lambda tr: filedata.live_versions(tr, fs.config.name, [630])) == {(630, 77)}


def test_unshare_of_another_hosts_chunk_releases_its_last_reference(fs) -> None:
    a = _versioned(fs, b"a", 640, 5)
    copy = ChunkRecord(641, 0, b"crc", version=6)
    assert fs.run(lambda tr: filedata.unshare(tr, fs.keys, a, 0, 640, copy, b"s")) is True
    assert fs.raw_get(fs.keys.chunk_owner(640)) is None  # its object and file are garbage now
    assert fs.run(lambda tr: filedata.live_versions(tr, fs.config.name, [640, 641])) == {(641, 6)}


def test_live_versions_keep_a_shared_chunk_whose_owner_let_go(fs) -> None:
    a = _versioned(fs, b"a", 650, 9)
    b = fs.new_ino()
    fs.run(lambda tr: clone.copy_inode(tr, fs.ns, a, b, ROOT_INODE, b"b", ROOT))
    fs.unlink(ROOT_INODE, b"a", ROOT, still_open=lambda ino: False)  # the owner key still names a
    assert fs.run(lambda tr: filedata.live_versions(tr, fs.config.name, [650])) == {(650, 0)}
    fs.unlink(ROOT_INODE, b"b", ROOT, still_open=lambda ino: False)
    assert fs.run(lambda tr: filedata.live_versions(tr, fs.config.name, [650])) == set()


def test_clone_copies_inline_data_xattrs_and_counts(fs) -> None:
    from metadata.filedata import read_inline, write_inline

    a = fs.make(ROOT_INODE, b"a").ino
    data = bytes(range(256)) * 70  # several inline pieces

    def fill(tr) -> None:
        attr = fs.ns.attr_for_update(tr, a)
        attr.size = len(data)
        tr.set(fs.keys.attr(a), attr.encode())
        write_inline(tr, fs.keys, a, data)
        fs.ns.count_bytes(tr, attr, len(data))

    fs.run(fill)
    fs.setxattr(a, b"user.k", b"v", ROOT)
    b = fs.new_ino()
    with commit_unknown_once(fs.store):
        fs.run(lambda tr: clone.copy_inode(tr, fs.ns, a, b, ROOT_INODE, b"b", ROOT))
    assert fs.run(lambda tr: read_inline(tr, fs.keys, b, len(data))) == data
    assert fs.getxattr(b, b"user.k") == b"v"
    assert fs.statfs() == (3, 2 * len(data))
    assert fs.attr(b).mode == fs.attr(a).mode


def test_clone_waits_for_a_file_being_written(fs) -> None:
    a = _chunked(fs, ROOT_INODE, b"a", [700])
    fs.run(lambda tr: filedata.mark_dirty(tr, fs.keys, a, 0, ChunkRecord(700, 0), b"writer"))
    fs.fails(errno.EBUSY, "run", lambda tr: clone.copy_inode(tr, fs.ns, a, 9999, ROOT_INODE, b"b", ROOT))


def test_clone_of_a_tree_appears_whole_under_its_name(fs) -> None:
    made = fs.tree("src/", "src/sub/", "src/sub/f", "src/g")
    copied = clone.clone(fs.store, fs.ns, made["src"], ROOT_INODE, b"dst", ROOT)
    assert copied == 4
    assert fs.listing(ROOT_INODE) == [b"dst", b"src"]  # no hidden name left
    dst = fs.lookup(ROOT_INODE, b"dst").ino
    assert fs.listing(dst) == [b"g", b"sub"]
    assert fs.listing(fs.lookup(dst, b"sub").ino) == [b"f"]
    fs.check_tree()
    with pytest.raises(Exception) as into_itself:
        clone.clone(fs.store, fs.ns, made["src"], made["src/sub"], b"loop", ROOT)
    assert getattr(into_itself.value, "errno", None) == errno.EINVAL


def test_dump_and_load_keep_chunk_references_and_trash_records(tfs, tmp_path) -> None:
    from metadata import dump
    from metadata.sqlite_store import SqliteStore

    a = _chunked(tfs, ROOT_INODE, b"a", [800])
    tfs.run(lambda tr: clone.copy_inode(tr, tfs.ns, a, tfs.new_ino(), ROOT_INODE, b"b", ROOT))
    tfs.unlink(ROOT_INODE, b"b", ROOT)  # into the trash
    lines = list(dump.dump(tfs.store, "trashy"))
    other = SqliteStore(str(tmp_path / "other.db"))
    try:
        config = dump.load(other, "trashy", lines)
        assert config.trash_days == 2
        loaded = Fs.__new__(Fs)
        loaded.store, loaded.config = other, config
        loaded.ns = Namespace(config)
        loaded.keys = loaded.ns.keys
        for key_range in (tfs.keys.all_chunk_refs(), tfs.keys.trash_records()):
            assert loaded.raw_range(key_range) == tfs.raw_range(key_range) != []
    finally:
        other.close()
