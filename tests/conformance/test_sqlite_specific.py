"""Guarantees of the embedded store that FoundationDB has no counterpart for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from metadata.emulation import StoreEmulation
from metadata.sqlite_store import SqliteStore
from metadata.store import StoreLocked, decode_int64, encode_int64

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_chaos_conflicts_still_count_exactly(tmp_path: Path) -> None:
    store = SqliteStore(
        str(tmp_path / "chaos.sqlite"), emulation=StoreEmulation(chaos_conflict_rate=0.5), chaos_seed=1234
    )
    attempts: list[int] = []
    lock = threading.Lock()

    def increment(tr):  # type: ignore[no-untyped-def]
        with lock:
            attempts.append(1)
        tr.set(b"counter", encode_int64(decode_int64(tr.get(b"counter")) + 1))

    def worker() -> None:
        for _ in range(100):
            store.transact(increment)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert decode_int64(store.transact(lambda tr: tr.get(b"counter"))) == 200
        assert len(attempts) > 300  # about half the commits were refused and retried
    finally:
        store.close()


def test_second_writer_is_refused_but_readers_are_not(tmp_path: Path) -> None:
    path = str(tmp_path / "owned.sqlite")
    owner = SqliteStore(path)
    try:
        owner.transact(lambda tr: tr.set(b"k", b"v"))
        with pytest.raises(StoreLocked, match=r"in use by another process \(pid \d+\)"):
            SqliteStore(path)
        reader = SqliteStore(path, read_only=True)
        try:
            assert reader.transact(lambda tr: tr.get(b"k")) == b"v"
        finally:
            reader.close()
    finally:
        owner.close()
    SqliteStore(path).close()  # the lock went with the owner


_WRITER = textwrap.dedent(
    """
    import sys, time
    from metadata.sqlite_store import SqliteStore
    store = SqliteStore(sys.argv[1])
    store.transact(lambda tr: tr.set(b"durable", b"yes"))
    print("committed", flush=True)
    time.sleep(60)
    """
)


def test_commit_survives_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.sqlite")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    store = SqliteStore(path)  # the dead owner's lock is gone
    try:
        assert store.transact(lambda tr: tr.get(b"durable")) == b"yes"
    finally:
        store.close()
