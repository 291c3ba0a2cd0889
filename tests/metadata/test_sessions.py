"""Mount sessions (metadata/sessions.py) and the recovery transactions (metadata/recovery.py), against
the embedded store without a mount: registering, heartbeats, claims (one of two racing claimants wins),
the liveness rules, which sessions a mount recovers, and records that name their session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metadata import filedata, recovery, sessions
from metadata.keys import FsKeys
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord, FsConfig, now_ns
from metadata.namespace import Namespace, format_filesystem
from metadata.sessions import Process, Session
from metadata.sqlite_store import SqliteStore
from metadata.store import TransactionConflict

KEYS = FsKeys("s")
S = 1_000_000_000
HERE = sessions.this_process()
A, B, C = b"session-a", b"session-b", b"session-c"


def _session(session_id: bytes, *, process: Process = HERE, heartbeat_ns: int | None = None) -> Session:
    session = Session.start(session_id, process, f"/mnt/{session_id.decode()}", "test", now_ns())
    if heartbeat_ns is not None:
        session.heartbeat_ns = heartbeat_ns
    return session


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _sessions(store) -> dict[bytes, Session]:
    return store.transact(lambda tr: sessions.list_sessions(tr, KEYS))


# -- records ---------------------------------------------------------------------------------------------
def test_register_heartbeat_unregister(store) -> None:
    session = _session(A, heartbeat_ns=1)
    store.transact(lambda tr: sessions.register(tr, KEYS, session))
    assert _sessions(store) == {A: session}
    assert store.transact(lambda tr: sessions.heartbeat(tr, KEYS, A, 5 * S))
    assert _sessions(store)[A].heartbeat_ns == 5 * S
    store.transact(lambda tr: sessions.unregister(tr, KEYS, A))
    assert _sessions(store) == {}
    assert not store.transact(lambda tr: sessions.heartbeat(tr, KEYS, A, 6 * S)), "heartbeat of no record"
    assert _sessions(store) == {}, "a heartbeat must not bring a removed session back"


def test_a_claimed_session_loses_its_heartbeat(store) -> None:
    store.transact(lambda tr: sessions.register(tr, KEYS, _session(A)))
    assert store.transact(lambda tr: sessions.claim(tr, KEYS, A, B, now_ns()))
    assert not store.transact(lambda tr: sessions.heartbeat(tr, KEYS, A, now_ns()))
    assert _sessions(store)[A].claimed_by == B


def test_corrupt_session_record_is_reported(store) -> None:
    store.transact(lambda tr: tr.set(KEYS.session(A), b"\x93\x01"))
    with pytest.raises(Exception, match="corrupt session record"):
        _sessions(store)


# -- claims ----------------------------------------------------------------------------------------------
def test_claim_release_and_stand_in(store) -> None:
    store.transact(lambda tr: sessions.register(tr, KEYS, _session(A)))
    assert store.transact(lambda tr: sessions.claim(tr, KEYS, A, B, now_ns()))
    assert store.transact(lambda tr: sessions.claim(tr, KEYS, A, B, now_ns())), "a claimant's own retry"
    assert not store.transact(lambda tr: sessions.claim(tr, KEYS, A, C, now_ns())), "claimed by another"
    assert store.transact(lambda tr: sessions.claim(tr, KEYS, A, C, now_ns(), B)), "take-over from dead B"
    store.transact(lambda tr: sessions.release(tr, KEYS, A, B))
    assert _sessions(store)[A].claimed_by == C, "a claimant that lost the claim must not remove it"
    store.transact(lambda tr: sessions.release(tr, KEYS, A, C))
    assert _sessions(store) == {}
    # A session with leftovers but no record gets a stand-in record that holds the claim.
    assert store.transact(lambda tr: sessions.claim(tr, KEYS, b"", B, now_ns()))
    stand_in = _sessions(store)[b""]
    assert stand_in.is_stand_in and stand_in.claimed_by == B


def test_two_claimants_race_one_wins(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "race.db"))
    try:
        store.transact(lambda tr: sessions.register(tr, KEYS, _session(A)))
        first, second = store.begin(), store.begin()
        assert sessions.claim(first, KEYS, A, B, now_ns())
        assert sessions.claim(second, KEYS, A, C, now_ns())
        first.commit()
        with pytest.raises(TransactionConflict):
            second.commit()
        second.cancel()
        # Its retry sees the winner's claim.
        assert not store.transact(lambda tr: sessions.claim(tr, KEYS, A, C, now_ns()))
        assert _sessions(store)[A].claimed_by == B
    finally:
        store.close()


# -- liveness --------------------------------------------------------------------------------------------
def _dead(session: Session, **kwargs) -> bool:
    return sessions.is_dead(session, now_ns=now_ns(), timeout_s=60, here=HERE, **kwargs)


def test_this_process_is_alive() -> None:
    assert HERE.pid == os.getpid() and HERE.start_ticks > 0 and HERE.host
    assert not _dead(_session(A))


def test_a_dead_pid_on_this_host_is_dead_at_once() -> None:
    gone = Process(HERE.host, HERE.boot_id, _dead_pid(), HERE.start_ticks)
    assert _dead(_session(A, process=gone))


def test_a_reused_pid_is_dead() -> None:
    reused = Process(HERE.host, HERE.boot_id, HERE.pid, HERE.start_ticks - 1)
    assert _dead(_session(A, process=reused))


def test_another_host_is_alive_until_its_heartbeat_expires() -> None:
    elsewhere = Process("another-host", "another-boot", _dead_pid(), 1)
    assert not _dead(_session(A, process=elsewhere, heartbeat_ns=now_ns() - 59 * S))
    assert _dead(_session(A, process=elsewhere, heartbeat_ns=now_ns() - 61 * S))
    # Another boot of a host of the same name: the pid says nothing, only the heartbeat counts.
    rebooted = Process(HERE.host, "another-boot", _dead_pid(), 1)
    assert not _dead(_session(A, process=rebooted))


def test_expired_heartbeat_on_this_host_is_dead() -> None:
    assert _dead(_session(A, heartbeat_ns=now_ns() - 61 * S))


def test_process_start_ticks_of_a_dead_process_is_none() -> None:
    assert sessions.process_start_ticks(_dead_pid()) is None
    assert sessions.process_start_ticks(os.getpid()) == HERE.start_ticks


def test_seconds_from_env(monkeypatch, caplog) -> None:
    monkeypatch.setenv("FUSEFS_TEST_SECONDS", "0.25")
    assert sessions.seconds_from_env("FUSEFS_TEST_SECONDS", 5) == 0.25
    monkeypatch.setenv("FUSEFS_TEST_SECONDS", "-1")
    assert sessions.seconds_from_env("FUSEFS_TEST_SECONDS", 5) == 5
    assert "FUSEFS_TEST_SECONDS='-1' is not a positive number of seconds" in caplog.text


# -- which sessions a mount recovers ---------------------------------------------------------------------
def _to_recover(known: dict[bytes, Session], leftovers=(), *, sole_owner: bool = False):
    return sessions.to_recover(
        known, leftovers, C, sole_owner=sole_owner, now_ns=now_ns(), timeout_s=60, here=HERE
    )


def test_live_sessions_are_never_recovered() -> None:
    live = _session(A)
    gone = _session(B, process=Process(HERE.host, HERE.boot_id, _dead_pid(), 1))
    own = _session(C)
    assert _to_recover({A: live, B: gone, C: own}, [A, B, C]) == [(B, b"")]
    assert sessions.live_sessions({A: live, B: gone}, now_ns=now_ns(), timeout_s=60, here=HERE) == [live]


def test_sole_owner_recovers_every_other_session() -> None:
    assert _to_recover({A: _session(A), C: _session(C)}, [A, b""], sole_owner=True) == [(b"", b""), (A, b"")]


def test_leftovers_without_a_record_are_recovered() -> None:
    assert _to_recover({}, [b"", A]) == [(b"", b""), (A, b"")]


def test_a_claim_by_a_live_mount_is_left_alone_one_by_a_dead_mount_taken_over() -> None:
    claimed_by_live = _session(A)
    claimed_by_live.claimed_by = B
    assert _to_recover({A: claimed_by_live, B: _session(B)}) == []
    assert _to_recover({A: claimed_by_live}) == [(A, B)], "claimant B has no record: dead"
    claimed_by_us = _session(A)
    claimed_by_us.claimed_by = C
    assert _to_recover({A: claimed_by_us, C: _session(C)}) == [(A, C)]


# -- records name their session --------------------------------------------------------------------------
@pytest.fixture
def ns(store) -> Namespace:
    config = FsConfig(name="s", block_dirs=["/nonexistent"], chunk_size_bytes=65536)
    format_filesystem(store, config)
    return Namespace(config, session=A)


def _orphan(store, ns: Namespace, name: bytes) -> int:
    ino = store.transact(lambda tr: ns.reserve_ids(tr, "inode", 1))
    store.transact(lambda tr: ns.create(tr, ROOT_INODE, name, ino, 0o100644, ROOT_CALLER))
    store.transact(lambda tr: ns.unlink(tr, ROOT_INODE, name, ROOT_CALLER))
    return ino


def test_orphans_and_dirty_marks_name_their_session(store, ns: Namespace) -> None:
    ino = _orphan(store, ns, b"f")
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, ino, 0, ChunkRecord(7, 0), A))
    # Records from before sessions: a bare time as orphan record, an empty dirty mark.
    old = _orphan(store, ns, b"old")
    store.transact(lambda tr: tr.set(ns.keys.orphan(old), b"\x05"))
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, old, 0, ChunkRecord(8, 0)))
    found = store.transact(lambda tr: recovery.leftovers(tr, ns.keys))
    assert {session: (left.dirty, left.orphans) for session, left in found.items()} == {
        A: ({ino: [0]}, [ino]),
        b"": ({old: [0]}, [old]),
    }
    assert store.transact(lambda tr: ns.orphans(tr, A)) == [ino]
    assert store.transact(lambda tr: ns.orphans(tr, b"")) == [old]


def test_reclaim_of_a_session_skips_another_sessions_orphans(store, ns: Namespace) -> None:
    ino = _orphan(store, ns, b"f")
    assert store.transact(lambda tr: ns.reclaim(tr, ino, session=B)) == []
    assert store.transact(lambda tr: ns.orphans(tr)) == [ino], "B's recovery took A's orphan"
    store.transact(lambda tr: ns.reclaim(tr, ino, session=A))
    assert store.transact(lambda tr: ns.orphans(tr)) == []
    assert store.transact(lambda tr: tr.get(ns.keys.attr(ino))) is None


def test_rebuild_chunk_only_while_the_dead_session_owns_the_mark(store, ns: Namespace) -> None:
    ino = _orphan(store, ns, b"f")
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, ino, 0, ChunkRecord(7, 0, b"old"), A))
    # A live mount B marked it since: the chunk is B's.
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, ino, 0, ChunkRecord(7, 0, b"old"), B))
    assert store.transact(lambda tr: recovery.dirty_chunk(tr, ns.keys, ino, 0, A)) is None
    assert not store.transact(lambda tr: recovery.rebuild_chunk(tr, ns.keys, ino, 0, A, 7, b"new", C))
    assert store.transact(lambda tr: tr.get(ns.keys.dirty_chunk(ino, 0))) == B
    # B died too: its mark is rebuilt, once.
    assert store.transact(lambda tr: recovery.dirty_chunk(tr, ns.keys, ino, 0, B)) == ChunkRecord(
        7, 0, b"old", True
    )
    assert store.transact(lambda tr: recovery.rebuild_chunk(tr, ns.keys, ino, 0, B, 7, b"new", C))
    assert store.transact(lambda tr: filedata.read_chunks(tr, ns.keys, ino)) == {0: ChunkRecord(7, 0, b"new")}
    assert store.transact(lambda tr: tr.get(ns.keys.dirty_chunk(ino, 0))) is None
    assert not store.transact(lambda tr: recovery.rebuild_chunk(tr, ns.keys, ino, 0, B, 7, b"new", C))


def test_rebuild_of_a_replaced_chunk_clears_the_stale_mark(store, ns: Namespace) -> None:
    ino = _orphan(store, ns, b"f")
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, ino, 0, ChunkRecord(7, 0), A))
    assert not store.transact(lambda tr: recovery.rebuild_chunk(tr, ns.keys, ino, 0, A, 99, b"x", C))
    assert store.transact(lambda tr: tr.get(ns.keys.dirty_chunk(ino, 0))) is None
    assert store.transact(lambda tr: filedata.read_chunks(tr, ns.keys, ino))[0].chunk_id == 7


def test_drop_chunks_beyond_size(store, ns: Namespace) -> None:
    ino = _orphan(store, ns, b"f")  # size 0, stored inline: every chunk record is beyond its size
    for index in range(3):
        store.transact(lambda tr, i=index: filedata.put_chunk(tr, ns.keys, ino, i, ChunkRecord(10 + i, 0)))
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, ino, 2, ChunkRecord(12, 0), B))
    assert store.transact(lambda tr: recovery.drop_chunks_beyond_size(tr, ns.keys, ino, 65536, C)) == [], (
        "dropped while a writer has a chunk of the file marked"
    )
    store.transact(lambda tr: tr.clear(ns.keys.dirty_chunk(ino, 2)))
    dropped = store.transact(lambda tr: recovery.drop_chunks_beyond_size(tr, ns.keys, ino, 65536, C))
    assert sorted(record.chunk_id for record in dropped) == [10, 11, 12]
    assert store.transact(lambda tr: filedata.read_chunks(tr, ns.keys, ino)) == {}
    assert not any(
        store.transact(lambda tr, i=i: filedata.chunk_is_live(tr, ns.keys, i)) for i in (10, 11, 12)
    )
    assert store.transact(lambda tr: recovery.drop_chunks_beyond_size(tr, ns.keys, ino, 65536, C)) == []


def test_a_mark_without_its_chunk_record_is_cleared(store, ns: Namespace) -> None:
    """A truncation drops chunk records but leaves their marks: recovery clears such marks."""
    ino = _orphan(store, ns, b"f")
    store.transact(lambda tr: filedata.mark_dirty(tr, ns.keys, ino, 3, ChunkRecord(7, 0), A))
    store.transact(lambda tr: filedata.drop_chunks_from(tr, ns.keys, ino, 0))
    assert store.transact(lambda tr: recovery.dirty_chunk(tr, ns.keys, ino, 3, A)) is None
    assert store.transact(lambda tr: filedata.dirty_marks(tr, ns.keys)) == []
