"""Namespace model: every mutation is retry-safe after CommitUnknownResult.

The store applies the commit but reports ``CommitUnknownResult`` (FoundationDB error 1021), so
``transact`` runs the same transaction function again with ``maybe_committed``: the operation must end
as if it had run once (same result, same state, one change-log record)."""

from __future__ import annotations

import stat

import pytest
from conftest import REG, ROOT, commit_unknown_once

from metadata import content, filedata
from metadata.idempotency import _PIECE_BYTES
from metadata.model import ROOT_INODE, ChunkRecord, FsConfig, SetAttrRequest
from metadata.namespace import format_filesystem, load_config


def retried(fs, operation):
    """Run ``operation`` with its first commit reported as unknown; note how many log records it added."""
    before = len(fs.log())
    with commit_unknown_once(fs.store):
        result = operation()
    fs.records_added = len(fs.log()) - before
    return result


def put_chunks(fs, ino, count, first_id=100):
    """Chunk records of ``ino`` (no files: the store is what these tests look at)."""

    def put(tr):
        for index in range(count):
            filedata.put_chunk(tr, fs.keys, ino, index, ChunkRecord(first_id + index, 0))

    fs.run(put)


def case_create(fs):
    ino = fs.new_ino()
    attr = retried(fs, lambda: fs.create(ROOT_INODE, b"n", ino, REG, ROOT))
    assert attr.ino == ino == fs.lookup(ROOT_INODE, b"n").ino
    assert fs.statfs()[0] == 2


def case_mkdir(fs):
    ino = fs.new_ino()
    retried(fs, lambda: fs.create(ROOT_INODE, b"d", ino, stat.S_IFDIR | 0o755, ROOT))
    assert fs.attr(ROOT_INODE).nlink == 3


def case_link(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    assert retried(fs, lambda: fs.link(ino, ROOT_INODE, b"g", ROOT)).nlink == 2


def case_rename(fs):
    ino = fs.mkdir(ROOT_INODE, b"d").ino
    fs.make(ino, b"f")
    assert retried(fs, lambda: fs.rename(ino, b"f", ROOT_INODE, b"g", ROOT)) is None
    assert fs.listing(ROOT_INODE) == [b"d", b"g"]


def case_rename_over_a_file(fs):
    made = fs.tree("f", "g")
    retried(fs, lambda: fs.rename(ROOT_INODE, b"f", ROOT_INODE, b"g", ROOT))
    assert fs.lookup(ROOT_INODE, b"g").ino == made["f"]
    assert fs.orphans() == [made["g"]]


def case_rename_over_a_file_reports_the_removal(fs):
    made = fs.tree("f", "g")
    removal = retried(fs, lambda: fs.rename(ROOT_INODE, b"f", ROOT_INODE, b"g", ROOT))
    assert removal is not None and removal.attr.ino == made["g"] and removal.is_orphan


def case_exchange(fs):
    made = fs.tree("f", "d/")
    retried(fs, lambda: fs.rename(ROOT_INODE, b"f", ROOT_INODE, b"d", ROOT, exchange=True))
    assert fs.lookup(ROOT_INODE, b"d").ino == made["f"]


def case_unlink(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    assert retried(fs, lambda: fs.unlink(ROOT_INODE, b"f", ROOT)).is_orphan
    assert fs.orphans() == [ino]


def case_rmdir(fs):
    fs.mkdir(ROOT_INODE, b"d")
    assert retried(fs, lambda: fs.rmdir(ROOT_INODE, b"d", ROOT)).is_orphan
    assert fs.attr(ROOT_INODE).nlink == 2


def case_setattr(fs):
    ino = fs.make(ROOT_INODE, b"f", stat.S_IFREG | 0o6755).ino
    attr = retried(fs, lambda: fs.setattr(ino, SetAttrRequest(uid=5, size=10), ROOT))
    assert (attr.uid, attr.size, stat.S_IMODE(attr.mode)) == (5, 10, 0o755)
    assert fs.statfs()[1] == 10


def case_setxattr(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    retried(fs, lambda: fs.setxattr(ino, b"user.a", b"v", ROOT))
    assert fs.getxattr(ino, b"user.a") == b"v"


def case_removexattr(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    fs.setxattr(ino, b"user.a", b"v", ROOT)
    retried(fs, lambda: fs.removexattr(ino, b"user.a", ROOT))
    assert fs.listxattr(ino) == []


def case_flush(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    change = content.Flush(ino, 3, 0, 0, b"abc", {}, 0, stored_size=0, stored_chunked=False, caller=ROOT)
    retried(fs, lambda: fs.run(lambda tr: content.flush(tr, fs.ns, change)))
    assert fs.attr(ino).size == 3
    assert fs.statfs()[1] == 3


def case_unlink_deleting_the_file(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    put_chunks(fs, ino, 3)
    removal = retried(fs, lambda: fs.unlink(ROOT_INODE, b"f", ROOT, lambda ino: False))
    assert not removal.is_orphan
    assert sorted(record.chunk_id for record in removal.freed_chunks) == [100, 101, 102]
    assert fs.statfs()[0] == 1


CASES = [case_create, case_mkdir, case_link, case_rename, case_rename_over_a_file,
         case_rename_over_a_file_reports_the_removal, case_exchange, case_unlink, case_rmdir, case_setattr,
         case_setxattr, case_removexattr, case_flush, case_unlink_deleting_the_file]

def cases():
    return [pytest.param(case, id=case.__name__.removeprefix("case_")) for case in CASES]


@pytest.mark.parametrize("case", cases())
def test_mutation_is_retry_safe_after_commit_unknown_result(fs, case):
    case(fs)
    fs.check_tree()


@pytest.mark.parametrize("case", cases())
def test_mutation_retried_after_commit_unknown_result_logs_one_record(fs, case):
    case(fs)
    assert fs.records_added == 1


# -- operations that log nothing ------------------------------------------------------------------------
def test_reserve_ids_retried_reserves_one_range(fs):
    start = fs.reserve_ids("inode", 1) + 1
    assert retried(fs, lambda: fs.reserve_ids("inode", 10)) == start
    assert fs.reserve_ids("inode", 1) == start + 10


def test_format_retried_reports_success(store):
    with commit_unknown_once(store):
        format_filesystem(store, FsConfig("other"))
    assert load_config(store, "other").name == "other"


def test_reclaim_retried_returns_the_chunks_to_delete(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    put_chunks(fs, ino, 2)
    fs.unlink(ROOT_INODE, b"f", ROOT)
    chunks = retried(fs, lambda: fs.reclaim(ino))
    assert sorted(record.chunk_id for record in chunks) == [100, 101]
    assert fs.orphans() == []
    assert fs.statfs()[0] == 1


def test_a_result_larger_than_a_value_is_recorded_in_pieces(fs):
    """The freed chunks of a huge file do not fit in one value: the record is split, and read whole."""
    ino = fs.make(ROOT_INODE, b"f").ino
    count = _PIECE_BYTES // 4  # a chunk takes at least 5 bytes in the record
    put_chunks(fs, ino, count)
    removal = retried(fs, lambda: fs.unlink(ROOT_INODE, b"f", ROOT, lambda ino: False))
    assert [record.chunk_id for record in removal.freed_chunks] == list(range(100, 100 + count))
    assert len(fs.raw_range(fs.keys.operations_before(2**62))) > 1
