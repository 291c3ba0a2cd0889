"""The embedded store's shared mode across PROCESSES: conflicts, versionstamps, watches, the MVCC window
and the lock that keeps sole owners and shared processes apart.  The other process is
``shared_peer.py``, driven line by line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata.sqlite_store import SqliteStore
from metadata.store import RetryableError, StoreLocked, TransactionTooOld, versionstamped_key

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("shared_peer.py")


class Peer:
    def __init__(self, path: str, mode: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), path, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.greeting = self._line()

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str, *args: bytes) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join([command, *(arg.hex() for arg in args)]) + "\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "shared.db")


@pytest.fixture
def peer(path: str) -> Iterator[Peer]:
    SqliteStore(path, shared=True).close()  # create the file before two processes race to
    other = Peer(path, "shared")
    assert other.greeting == "ready"
    yield other
    other.close()


@pytest.fixture
def store(path: str, peer: Peer) -> Iterator[SqliteStore]:
    opened = SqliteStore(path, shared=True)
    yield opened
    opened.close()


def test_shared_mode_takes_foundationdb_paths(store: SqliteStore) -> None:
    assert store.shared and store.blocks_event_loop


def test_write_to_a_key_read_by_another_process_is_a_conflict(store: SqliteStore, peer: Peer) -> None:
    store.transact(lambda tr: tr.set(b"k", b"\x01"))
    assert peer.ask("begin") == "ok"
    assert peer.ask("get", b"k") == "01"
    store.transact(lambda tr: tr.set(b"k", b"\x02"))
    assert peer.ask("set", b"other", b"\x09") == "ok"
    assert peer.ask("commit").startswith("error TransactionConflict")
    assert store.transact(lambda tr: tr.get(b"other")) is None  # nothing of the refused commit landed
    # Run again, it reads the new value and commits.
    assert peer.ask("begin") == "ok"
    assert peer.ask("get", b"k") == "02"
    assert peer.ask("set", b"other", b"\x09") == "ok"
    assert peer.ask("commit") == "ok"
    assert store.transact(lambda tr: tr.get(b"other")) == b"\x09"


def test_conflict_the_other_way_round(store: SqliteStore, peer: Peer) -> None:
    tr = store.begin()
    assert tr.get(b"k") is None
    assert peer.ask("write", b"k", b"\x05") == "ok"
    tr.set(b"mine", b"\x01")
    with pytest.raises(RetryableError, match="wrote what this one read"):
        tr.commit()


def test_blind_writes_and_unrelated_reads_do_not_conflict(store: SqliteStore, peer: Peer) -> None:
    assert peer.ask("begin") == "ok"
    assert peer.ask("get", b"unrelated") == "none"
    assert peer.ask("set", b"k", b"\x01") == "ok"  # written, never read
    store.transact(lambda tr: tr.set(b"k", b"\x02"))
    assert peer.ask("commit") == "ok"
    assert store.transact(lambda tr: tr.get(b"k")) == b"\x01"  # the later commit wins


def test_versionstamps_increase_across_processes(store: SqliteStore, peer: Peer) -> None:
    order = []
    for round_ in range(4):
        for who in ("peer", "main"):
            value = f"{who}{round_}".encode()
            if who == "peer":
                assert peer.ask("begin") == "ok"
                assert peer.ask("stamp", b"log/", value) == "ok"
                assert peer.ask("commit") == "ok"
            else:
                store.transact(lambda tr, v=value: tr.set_versionstamped_key(versionstamped_key(b"log/"), v))
            order.append(value)
    rows = store.transact(lambda tr: tr.get_range(b"log/", b"log0"))
    assert [value for _, value in rows] == order  # key order is commit order
    assert len({key for key, _ in rows}) == len(order)


def test_watch_fires_on_another_process_change(store: SqliteStore, peer: Peer) -> None:
    watch = store.transact(lambda tr: tr.watch(b"watched"))
    assert watch.wait(0.1) is False
    assert peer.ask("write", b"watched", b"\x01") == "ok"
    assert watch.wait(30.0) is True


def test_old_read_version_is_too_old_after_the_window(path: str, peer: Peer) -> None:
    store = SqliteStore(path, shared=True, mvcc_window_s=0.2)
    try:
        tr = store.begin()
        assert tr.get(b"k") is None
        assert peer.ask("write", b"a", b"\x01") == "ok"  # after tr's read version
        time.sleep(0.5)  # a lower bound: past the window whatever the load
        store.transact(lambda t: t.set(b"b", b"\x01"))  # trims the record of "a"
        tr.set(b"c", b"\x01")
        with pytest.raises(TransactionTooOld) as caught:
            tr.commit()
        assert isinstance(caught.value, RetryableError)  # FoundationDB's 1007 is retryable too
        store.transact(lambda t: t.set(b"c", t.get(b"a") or b""))  # a fresh attempt commits
        assert store.transact(lambda t: t.get(b"c")) == b"\x01"
    finally:
        store.close()


def test_sole_owner_refused_beside_shared_processes(path: str, peer: Peer) -> None:
    with pytest.raises(
        StoreLocked, match="is mounted in shared mode by other processes: mount it with -o shared too"
    ):
        SqliteStore(path)
    reader = SqliteStore(path, read_only=True)  # readers are never refused
    reader.close()


def test_shared_process_refused_beside_a_sole_owner(path: str) -> None:
    SqliteStore(path).close()
    owner = Peer(path, "sole")
    try:
        assert owner.greeting == "ready"
        with pytest.raises(
            StoreLocked, match=rf"in use by another process \(pid {owner.proc.pid}\) that owns it alone"
        ):
            SqliteStore(path, shared=True)
        SqliteStore(path, read_only=True).close()
    finally:
        owner.close()
    SqliteStore(path, shared=True).close()  # the lock went with the owner


def test_versions_never_repeat_across_reopens_and_modes(path: str) -> None:
    """A sole owner that committed fewer versions than it reserves, closed, reopened, then shared."""
    values = []
    for shared in (False, False, True, False):
        opened = SqliteStore(path, shared=shared)
        try:
            for _ in range(3):
                value = f"{len(values)}".encode()
                opened.transact(lambda tr, v=value: tr.set_versionstamped_key(versionstamped_key(b"v/"), v))
                values.append(value)
        finally:
            opened.close()
    reader = SqliteStore(path, read_only=True)
    try:
        rows = reader.transact(lambda tr: tr.get_range(b"v/", b"v0"))
    finally:
        reader.close()
    assert [value for _, value in rows] == values
