"""Namespace model: every mutation is retry-safe after CommitUnknownResult.

The store applies the commit but reports ``CommitUnknownResult`` (FoundationDB error 1021), so
``transact`` runs the same transaction function again with ``maybe_committed``: the operation must end
as if it had run once (same result, same state, one change-log record)."""

from __future__ import annotations

import stat

import pytest
from conftest import REG, ROOT, commit_unknown_once

from metadata.model import ROOT_INODE, SetAttrRequest


def retried(fs, operation):
    """Run ``operation`` with its first commit reported as unknown; note how many log records it added."""
    before = len(fs.log())
    with commit_unknown_once(fs.store):
        result = operation()
    fs.records_added = len(fs.log()) - before
    return result


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


def case_write_back(fs):
    attr = fs.make(ROOT_INODE, b"f")
    attr.size = 3
    retried(fs, lambda: fs.write_back(attr, ROOT))
    assert fs.attr(attr.ino).size == 3


CASES = [case_create, case_mkdir, case_link, case_rename, case_rename_over_a_file,
         case_rename_over_a_file_reports_the_removal, case_exchange, case_unlink, case_rmdir, case_setattr,
         case_setxattr, case_removexattr, case_write_back]

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
