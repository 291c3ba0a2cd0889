"""Named change-log consumers (metadata/consumers.py): cursors in the store, at-least-once reading with
record ids, trimming held back while a consumer lags (up to the hold), and the missed-records notice
past it; the paths of records (metadata/log_reader.py).  Every test runs with retry chaos off and on."""

from __future__ import annotations

import pytest

from metadata import changelog, consumers, log_reader
from metadata.model import ROOT_INODE, now_ns
from metadata.store import CorruptValue

from conftest import ROOT, Fs

HOUR_NS = 3600 * 1_000_000_000


def _read(fs, name: str, limit: int = 1000) -> consumers.Batch:
    return fs.run(lambda tr: consumers.read(tr, fs.keys, name, limit))


def _join(fs, name: str) -> consumers.Consumer:
    return fs.run(lambda tr: consumers.join(tr, fs.keys, name, now_ns()))


def _ack(fs, name: str, through: bytes) -> None:
    fs.run(lambda tr: consumers.acknowledge(tr, fs.keys, name, through, now_ns()))


def _trim(fs, now: int, retention_h: int = 1, hold_h: int = 10) -> int:
    return fs.run(lambda tr: consumers.trim(tr, fs.keys, now, retention_h * 3600, hold_h * 3600, batch=1000))


def test_a_consumer_resumes_after_its_cursor_and_sees_duplicates_only_before_it(fs):
    _join(fs, "mirror")
    for i in range(4):
        fs.make(ROOT_INODE, b"f%d" % i)
    first = _read(fs, "mirror", limit=3)
    assert [r.name for r in first.records] == [b"f0", b"f1", b"f2"] and first.missed_through is None
    # Not acknowledged (the consumer died): the same records, with the same ids, come again.
    again = _read(fs, "mirror", limit=3)
    assert [r.versionstamp for r in again.records] == [r.versionstamp for r in first.records]
    _ack(fs, "mirror", first.records[1].versionstamp)
    _ack(fs, "mirror", first.records[0].versionstamp)  # an older acknowledgement never moves it back
    rest = _read(fs, "mirror")
    assert [r.name for r in rest.records] == [b"f2", b"f3"]
    assert _join(fs, "mirror").cursor == first.records[1].versionstamp  # joining again keeps the cursor


def test_trimming_waits_for_a_lagging_consumer_up_to_the_hold(fs):
    for i in range(3):
        fs.make(ROOT_INODE, b"f%d" % i)
    _join(fs, "slow")
    records = fs.log()
    _ack(fs, "slow", records[0].versionstamp)
    later = now_ns() + 2 * HOUR_NS  # every record is past the 1 h retention, within the 10 h hold
    assert _trim(fs, later) == 1  # only what the consumer acknowledged
    assert [r.name for r in fs.log()] == [b"f1", b"f2"]
    assert _read(fs, "slow").missed_through is None
    assert _trim(fs, now_ns() + 11 * HOUR_NS) == 2  # past the hold: trimmed all the same
    batch = _read(fs, "slow")
    assert batch.records == [] and batch.missed_through == records[-1].versionstamp
    fs.make(ROOT_INODE, b"after")
    batch = _read(fs, "slow")
    assert [r.name for r in batch.records] == [b"after"] and batch.missed_through is not None
    _ack(fs, "slow", batch.records[0].versionstamp)
    assert _read(fs, "slow") == consumers.Batch([], None)


def test_a_new_consumer_has_missed_nothing_and_a_removed_one_holds_nothing_back(fs):
    fs.make(ROOT_INODE, b"old")
    assert _trim(fs, now_ns() + 2 * HOUR_NS) == 1  # no consumer: the retention alone
    fs.make(ROOT_INODE, b"kept")
    _join(fs, "late")
    batch = _read(fs, "late")
    assert [r.name for r in batch.records] == [b"kept"] and batch.missed_through is None
    statuses = fs.run(lambda tr: consumers.status(tr, fs.keys))
    assert [(s.consumer.name, s.unread, s.missed_through) for s in statuses] == [("late", 1, None)]
    assert statuses[0].oldest_unread_ns == batch.records[0].time_ns
    assert _trim(fs, now_ns() + 2 * HOUR_NS) == 0
    fs.run(lambda tr: consumers.remove(tr, fs.keys, "late"))
    assert _trim(fs, now_ns() + 2 * HOUR_NS) == 1
    with pytest.raises(consumers.UnknownConsumer, match="late"):
        _read(fs, "late")
    with pytest.raises(consumers.UnknownConsumer):
        _ack(fs, "late", batch.records[0].versionstamp)
    with pytest.raises(consumers.UnknownConsumer):
        fs.run(lambda tr: consumers.remove(tr, fs.keys, "late"))


def test_the_slowest_consumer_holds_trimming(fs):
    for i in range(4):
        fs.make(ROOT_INODE, b"f%d" % i)
    _join(fs, "fast")
    _join(fs, "slow")
    records = fs.log()
    _ack(fs, "fast", records[-1].versionstamp)
    _ack(fs, "slow", records[1].versionstamp)
    assert _trim(fs, now_ns() + 2 * HOUR_NS) == 2
    assert [r.name for r in _read(fs, "slow").records] == [b"f2", b"f3"]


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 65, "new\nline"])
def test_bad_consumer_names_are_refused(fs, name):
    with pytest.raises(ValueError, match="invalid consumer name"):
        _join(fs, name)


def test_a_damaged_cursor_is_reported(fs):
    _join(fs, "c")
    fs.raw_set(fs.keys.log_consumer("c"), b"\xc1")
    with pytest.raises(CorruptValue, match="log consumer 'c'"):
        _read(fs, "c")


@pytest.mark.parametrize("indexed", [False, True], ids=["plain", "search-index"])
def test_records_carry_the_paths_of_the_reading_snapshot(store, indexed):

    fs = Fs(store, search_index=indexed)
    top = fs.mkdir(ROOT_INODE, b"top")
    sub = fs.mkdir(top.ino, b"sub")
    file = fs.make(sub.ino, b"f")
    fs.rename(sub.ino, b"f", top.ino, b"g", ROOT)
    fs.setxattr(file.ino, b"user.k", b"v", ROOT)
    records = fs.log()
    pages = fs.run(lambda tr: log_reader.read_page(tr, fs.keys, None, None, 100, indexed))
    paths = [(p.path, p.new_path) for p in pages.paths]
    assert [r.op for r in records] == ["mkdir", "mkdir", "create", "rename", "setxattr"]
    assert paths == [
        (b"/top", None),
        (b"/top/sub", None),
        (b"/top/sub/f", None),
        (b"/top/sub/f", b"/top/g"),
        (None, None),
    ]
    assert pages.paths[-1].inode_paths == ([b"/top/g"] if indexed else None)
    fs.rename(ROOT_INODE, b"top", ROOT_INODE, b"moved", ROOT)  # paths are those of the reading snapshot
    pages = fs.run(lambda tr: log_reader.read_page(tr, fs.keys, None, None, 100, indexed))
    assert pages.paths[2].path == b"/moved/sub/f"


def test_trim_without_consumers_marks_what_it_trimmed(fs):
    fs.make(ROOT_INODE, b"a")
    fs.make(ROOT_INODE, b"b")
    stamps = [r.versionstamp for r in fs.log()]
    assert fs.run(lambda tr: changelog.trimmed_through(tr, fs.keys)) == changelog.NO_RECORD
    assert fs.run(lambda tr: changelog.trim_log(tr, fs.keys, now_ns() + 1, batch=1)) == 1
    assert fs.run(lambda tr: changelog.trimmed_through(tr, fs.keys)) == stamps[0]
