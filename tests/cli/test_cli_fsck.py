"""``fusefs fsck``: a filesystem built through the store API, damaged on purpose through the store API
in each way fsck knows, checked (report, exit 1, nothing changed) and repaired through the command line."""

from __future__ import annotations

import os
import stat

import pytest
from fsck_tree import BIG, Tree, build

from blocks.layout import chunk_path
from metadata.keys import FsKeys
from metadata.model import ROOT_INODE, InodeAttr, pack
from metadata.namespace import Namespace, load_config
from metadata.sqlite_store import SqliteStore


@pytest.fixture
def fs(cli, tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    made = cli("mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), "--chunk-size", "64K", "fs")
    assert made.returncode == 0, made.stderr
    return url, str(tmp_path / "meta.db"), build(str(tmp_path / "meta.db"), "fs")


def _damage(db: str, change) -> None:
    store = SqliteStore(db)
    try:
        store.transact(lambda tr: change(tr, FsKeys("fs")))
    finally:
        store.close()


def _read(db: str, read):
    store = SqliteStore(db, read_only=True, exclusive=False)
    try:
        return store.transact(lambda tr: read(tr, FsKeys("fs"), Namespace(load_config(store, "fs"))))
    finally:
        store.close()


def _records(db: str):
    """Every record of the filesystem: what a check must leave as it was."""
    return _read(db, lambda tr, keys, ns: tr.get_range(*keys.whole_filesystem()))


def _set_attr(tr, keys, ino, **values):
    attr = InodeAttr.decode(ino, tr.get(keys.attr(ino)))
    for name, value in values.items():
        setattr(attr, name, value)
    tr.set(keys.attr(ino), attr.encode())


def _chunk_path(tmp_path, chunk_id):
    return chunk_path(str(tmp_path / "blocks"), chunk_id)


def test_a_clean_filesystem_exits_0(cli, fs):
    url, _, _ = fs
    result = cli("fsck", "--store", url, "--name", "fs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "fsck: fs: clean\n"
    assert result.stderr == ""


# (damage, class heading in the report, repaired by --repair)
def _dangling(tr, keys, t: Tree):
    tr.set(keys.entry(t.dir, b"ghost"), pack([999_999, stat.S_IFREG]))


def _unreachable(tr, keys, t: Tree):
    tr.clear(keys.entry(ROOT_INODE, b"big"))


def _links(tr, keys, t: Tree):
    _set_attr(tr, keys, t.small, nlink=7)


def _dir_links(tr, keys, t: Tree):
    _set_attr(tr, keys, t.dir, nlink=9)


def _parent(tr, keys, t: Tree):
    _set_attr(tr, keys, t.sub, parent=t.big)


def _inline(tr, keys, t: Tree):
    tr.set(keys.inline_piece(t.small, 1), b"bytes past the end")


def _counters(tr, keys, t: Tree):
    tr.add(keys.counter("inodes", 3), 5)
    tr.add(keys.counter("bytes", 0), -100)


def _owner(tr, keys, t: Tree):
    tr.clear(keys.chunk_owner(t.chunk_ids[1]))


def _damaged(tr, keys, t: Tree):
    tr.set(keys.attr(t.small), b"\xc1 not msgpack")


def _damaged_entry(tr, keys, t: Tree):
    tr.set(keys.entry(t.dir, b"small"), pack("not an entry"))


DAMAGE = {
    "dangling": (_dangling, "entries pointing at missing inodes: 1", True),
    "unreachable": (_unreachable, "inodes no entry or orphan record refers to: 1", True),
    "links": (_links, "wrong link counts: 1", True),
    "dir-links": (_dir_links, "wrong directory link counts: 1", True),
    "parent": (_parent, "wrong directory parent pointers: 1", True),
    "inline": (_inline, "inline data disagreeing with the size: 1", True),
    "counters": (_counters, "usage counters disagreeing with the sum: 2", True),
    "owner": (_owner, "chunk records of missing inodes or without their owner key: 1", True),
    "damaged-attr": (_damaged, "damaged values: 1", False),
    "damaged-entry": (_damaged_entry, "damaged values: 1", False),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_damage_is_reported_then_repaired(cli, fs, kind):
    url, db, tree = fs
    damage, heading, repairable = DAMAGE[kind]
    _damage(db, lambda tr, keys: damage(tr, keys, tree))

    damaged = _records(db)
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert heading in checked.stdout.splitlines()
    assert checked.stdout.endswith("problem(s) found\n")
    assert _records(db) == damaged  # the check changed nothing

    repaired = cli("fsck", "--store", url, "--name", "fs", "--repair")
    assert "Traceback" not in repaired.stderr
    after = cli("fsck", "--store", url, "--name", "fs")
    if repairable:
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert f"repairing {heading}" in repaired.stdout.splitlines()
        assert after.returncode == 0 and after.stdout == "fsck: fs: clean\n", after.stdout
    else:
        assert repaired.returncode == 1
        assert f"could not repair: {heading}" in repaired.stdout.splitlines()
        assert after.returncode == 1


def test_repair_gives_an_unreachable_file_a_name_in_lost_found(cli, fs):
    url, db, tree = fs
    _damage(db, lambda tr, keys: _unreachable(tr, keys, tree))
    assert cli("fsck", "--store", url, "--name", "fs", "--repair").returncode == 0

    def look(tr, keys, ns):
        lost = ns.lookup(tr, ROOT_INODE, b"lost+found")
        return lost, ns.lookup(tr, lost.ino, f"#{tree.big}".encode())

    lost, big = _read(db, look)
    assert lost.is_dir and stat.S_IMODE(lost.mode) == 0o700 and lost.nlink == 2
    assert big.ino == tree.big and big.nlink == 1 and big.size == len(BIG)


def test_an_unreachable_directory_goes_to_lost_found_with_its_contents(cli, fs):
    url, db, tree = fs
    _damage(db, lambda tr, keys: tr.clear(keys.entry(ROOT_INODE, b"dir")))
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert "inodes no entry or orphan record refers to: 1" in checked.stdout
    assert "wrong directory link counts: 1" in checked.stdout  # the root lost a subdirectory
    assert cli("fsck", "--store", url, "--name", "fs", "--repair").returncode == 0
    assert cli("fsck", "--store", url, "--name", "fs").returncode == 0

    def look(tr, keys, ns):
        lost = ns.lookup(tr, ROOT_INODE, b"lost+found")
        moved = ns.lookup(tr, lost.ino, f"#{tree.dir}".encode())
        return lost, moved, ns.lookup(tr, moved.ino, b"small")

    lost, moved, small = _read(db, look)
    assert moved.parent == lost.ino and lost.nlink == 3 and small.ino == tree.small


def test_a_missing_chunk_file_is_reported_and_never_repaired_away(cli, fs, tmp_path):
    url, db, tree = fs
    os.unlink(_chunk_path(tmp_path, tree.chunk_ids[0]))
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert checked.returncode == 1
    assert "chunk records whose chunk file is missing: 1" in checked.stdout
    repaired = cli("fsck", "--store", url, "--name", "fs", "--repair")
    assert repaired.returncode == 1
    assert "could not repair: chunk records whose chunk file is missing: 1" in repaired.stdout
    assert _read(db, lambda tr, keys, ns: tr.get(keys.chunk(tree.big, 0))) is not None


def test_a_chunk_file_failing_its_checksum_is_reported_and_kept(cli, fs, tmp_path):
    url, _, tree = fs
    path = _chunk_path(tmp_path, tree.chunk_ids[1])
    with open(path, "r+b") as file:
        file.seek(5000)
        file.write(b"rot")
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert "chunk files failing their checksums: 1" in checked.stdout
    assert cli("fsck", "--store", url, "--name", "fs", "--repair").returncode == 1
    assert os.path.exists(path)


def test_an_unowned_chunk_file_is_reported_and_deleted_by_repair(cli, fs, tmp_path):
    url, _, tree = fs
    path = _chunk_path(tmp_path, tree.chunk_ids[2])
    stray = _chunk_path(tmp_path, tree.chunk_ids[2] + 100)
    os.makedirs(os.path.dirname(stray), exist_ok=True)
    with open(path, "rb") as source, open(stray, "wb") as copy:
        copy.write(source.read())
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert "chunk files no record owns: 1" in checked.stdout
    assert cli("fsck", "--store", url, "--name", "fs", "--repair").returncode == 0
    assert not os.path.exists(stray) and os.path.exists(path)


def test_usage_and_unknown_filesystem_errors_are_one_line(cli, fs):
    url, _, _ = fs
    bad = cli("fsck", "--store", url, "--name", "fs", "--bogus")
    assert bad.returncode == 2 and "unrecognized arguments" in bad.one_line_error()
    unknown = cli("fsck", "--store", url, "--name", "nope")
    assert unknown.returncode == 1 and "no filesystem named 'nope'" in unknown.one_line_error()
    helped = cli("fsck", "--help")
    assert helped.returncode == 0 and "--repair" in helped.stdout


def test_a_mounted_filesystem_is_checked_read_only_and_repair_is_refused(cli, fs, fuse_mountpoint):
    url, db, tree = fs
    _damage(db, lambda tr, keys: _links(tr, keys, tree))
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    (fuse_mountpoint / "new").write_bytes(b"x" * 100)
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "wrong link counts: 1" in checked.stdout
    refused = cli("fsck", "--store", url, "--name", "fs", "--repair")
    assert refused.returncode == 1
    assert "fs is mounted" in refused.one_line_error() and "--repair" in refused.one_line_error()
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert cli("fsck", "--store", url, "--name", "fs", "--repair").returncode == 0
    assert cli("fsck", "--store", url, "--name", "fs").returncode == 0


def test_repair_refuses_a_lost_found_that_is_not_a_directory(cli, fs):
    url, db, tree = fs
    _damage(db, lambda tr, keys: _unreachable(tr, keys, tree))
    _damage(
        db, lambda tr, keys: tr.set(keys.entry(ROOT_INODE, b"lost+found"), pack([tree.link, stat.S_IFLNK]))
    )
    repaired = cli("fsck", "--store", url, "--name", "fs", "--repair")
    assert repaired.returncode == 1
    assert "/lost+found is not a directory" in repaired.one_line_error()


def test_damaged_search_index_records_are_reported_and_rebuilt(cli, fs):
    url, db, tree = fs
    assert cli("index", "enable", "--store", url, "--name", "fs").returncode == 0

    def damage(tr, keys):
        tr.clear(keys.name_index(b"small", tree.dir))  # a record missing
        tr.set(keys.extension_index(b"gone.txt", tree.dir), tree.small.to_bytes(8, "little"))  # one too many

    _damage(db, damage)
    heading = "search index records disagreeing with the entries and xattrs: 2"
    checked = cli("fsck", "--store", url, "--name", "fs")
    assert checked.returncode == 1 and heading in checked.stdout.splitlines(), checked.stdout
    repaired = cli("fsck", "--store", url, "--name", "fs", "--repair")
    assert repaired.returncode == 0 and f"repairing {heading}" in repaired.stdout.splitlines()
    assert cli("fsck", "--store", url, "--name", "fs").stdout == "fsck: fs: clean\n"
    assert cli("index", "check", "--store", url, "--name", "fs").returncode == 0
