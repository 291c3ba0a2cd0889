"""Operation records (metadata/idempotency.py): written only where a commit's outcome can be unknown,
trimmed after their minutes, and a record that cannot be read or a result that cannot be recorded is
an error, never a silent second application."""

from __future__ import annotations

import pytest
from conftest import ROOT, commit_unknown_once

from metadata import content
from metadata.idempotency import _NS_PER_MINUTE, apply_once, idempotent, trim_operations
from metadata.model import ROOT_INODE, now_ns, pack
from metadata.namespace import Namespace
from metadata.store import CorruptValue, Transaction


def operation_records(fs):
    return fs.raw_range(fs.keys.operations_before(2**62))


def flush_of(ino: int, data: bytes) -> content.Flush:
    return content.Flush(ino, len(data), 0, 0, data, {}, 0, stored_size=0, stored_chunked=False, caller=ROOT)


def test_no_records_where_the_commit_outcome_is_certain(fs):
    """The embedded store's commits are applied or rolled back, never unknown: no extra keys there."""
    ino = fs.make(ROOT_INODE, b"f").ino
    fs.run(lambda tr: content.flush(tr, fs.ns, flush_of(ino, b"abc")))
    fs.unlink(ROOT_INODE, b"f", ROOT)
    assert operation_records(fs) == []


def test_records_are_kept_for_minutes_then_trimmed(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    with commit_unknown_once(fs.store):
        fs.run(lambda tr: content.flush(tr, fs.ns, flush_of(ino, b"abc")))
    assert len(operation_records(fs)) == 1
    fs.run(lambda tr: trim_operations(tr, fs.keys))
    assert len(operation_records(fs)) == 1
    fs.run(lambda tr: trim_operations(tr, fs.keys, keep_minutes=-1))  # "now" is past the record
    assert operation_records(fs) == []


def retry_reading(fs, raw: bytes) -> object:
    """``apply_once`` in a retry that finds ``raw`` as the record of its earlier attempt."""

    def attempt(tr: Transaction) -> object:
        tr.operation_id, tr.maybe_committed, tr.commit_outcome_certain = b"op", True, False
        tr.set(fs.keys.operation(now_ns() // _NS_PER_MINUTE, b"op", 0), raw)
        return apply_once(tr, fs.keys, lambda: pytest.fail("applied again despite its record"))

    return fs.run(attempt)


@pytest.mark.parametrize(
    "raw",
    [b"\xc1", pack(["attr", 2]), pack(["unknown", 1]), pack(7)],
    ids=["not-msgpack", "short", "unknown-kind", "not-a-list"],
)
def test_a_corrupt_record_is_reported(fs, raw):
    with pytest.raises(CorruptValue, match="operation record"):
        retry_reading(fs, raw)


def test_a_recorded_result_is_returned(fs):
    assert retry_reading(fs, pack(["int", 42])) == 42


@idempotent
def _returns_text(tr: Transaction, ns: Namespace) -> str:
    tr.set(ns.keys.config(), b"changed")
    return "text"


def test_a_result_that_cannot_be_recorded_is_refused(fs):
    before = fs.dump()
    with pytest.raises(TypeError, match="cannot record a str"), commit_unknown_once(fs.store):
        fs.run(lambda tr: _returns_text(tr, fs.ns))
    assert fs.dump() == before
