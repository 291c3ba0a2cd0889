"""Provenance records (metadata/provenance.py) in a real store, with retry chaos off and on: one record
per handle however often it is rewritten, written in the data flush's own transaction, found by inode,
path and user, and trimmed by the time of their first write."""

from __future__ import annotations

import pytest
from conftest import ROOT, commit_unknown_once

from metadata import content, provenance
from metadata.model import ROOT_INODE, FSError, now_ns
from metadata.provenance import Access


def _access(ino: int, uid: int, handle: int, opened: int, written: int = 0) -> Access:
    first_written = written or opened + 5
    return Access(ino, uid, 4242, "cat", opened, opened + 5, 10, 0, b"session1", handle, first_written)


def test_a_handle_has_one_record_however_often_it_is_written(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    access = _access(ino, 1000, 7, opened=100)
    fs.run(lambda tr: provenance.record(tr, fs.keys, access))
    access.bytes_read, access.closed_ns = 99, 200
    with commit_unknown_once(fs.store):
        fs.run(lambda tr: provenance.record(tr, fs.keys, access))
    assert fs.run(lambda tr: provenance.of_inode(tr, fs.keys, ino, 10)) == [access]
    assert fs.run(lambda tr: provenance.of_user(tr, fs.keys, 1000, 0, 10)) == [access]
    assert fs.run(lambda tr: provenance.of_user(tr, fs.keys, 1000, 101, 10)) == []
    assert fs.run(lambda tr: provenance.of_path(tr, fs.keys, b"/f", 10)) == (ino, [access])
    with pytest.raises(FSError):
        fs.run(lambda tr: provenance.of_path(tr, fs.keys, b"/nope", 10))


def test_the_flush_writes_the_record_in_its_transaction(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    access = _access(ino, 0, 1, opened=now_ns())
    flush = content.Flush(ino, 3, 0, 0, b"abc", {}, 0, 0, False, ROOT, access=access)
    with commit_unknown_once(fs.store):
        fs.run(lambda tr: content.flush(tr, fs.ns, flush))
    assert fs.run(lambda tr: provenance.of_inode(tr, fs.keys, ino, 10)) == [access]


def test_records_are_trimmed_by_their_first_write(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    old, new = _access(ino, 1, 1, opened=100, written=150), _access(ino, 2, 2, opened=90, written=500)
    for access in (old, new):
        fs.run(lambda tr, access=access: provenance.record(tr, fs.keys, access))
    assert fs.run(lambda tr: provenance.trim(tr, fs.keys, 300)) == 1
    assert fs.run(lambda tr: provenance.of_inode(tr, fs.keys, ino, 10)) == [new]
    assert fs.run(lambda tr: provenance.of_user(tr, fs.keys, 1, 0, 10)) == []
    assert fs.run(lambda tr: provenance.trim(tr, fs.keys, 300)) == 0
