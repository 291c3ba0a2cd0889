"""Mount sessions and the recovery of dead mounts (metadata/sessions.py, fusefs/recovery.py).

* Without a mount: two read-write sessions in one process on one store shared as FoundationDB shares
  it (real FuseOperations, store and chunk files): a live session's leftovers are never touched; one
  whose pid is gone is recovered at once; one whose heartbeat expired is recovered; a mount that finds
  its own session claimed registers anew.
* On real mounts: the session is registered while mounted and removed at a clean unmount; after kill -9
  the next mount recovers everything (orphans reclaimed, dirty chunks rebuilt, chunks beyond the size
  dropped with their files, gc then finds nothing); ``fusefs status`` lists sessions, dead ones marked.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from blocks import Access, BlockStore, ChecksumTable
from fusefs.blockdirs import owner_of
from fusefs.operations import FuseOperations
from metadata import filedata, sessions
from metadata.keys import FsKeys
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord, FsConfig
from metadata.namespace import format_filesystem, load_config
from metadata.sqlite_store import SqliteStore
from metadata.urls import open_store

from .conftest import SMALL, wait_for

CHUNK = 65536


# -- two sessions in one process ----------------------------------------------------------------------------
class Shared:
    """One filesystem on one store, mounted (without the kernel) by several read-write sessions."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = SqliteStore(str(tmp_path / "meta.db"), exclusive=False)
        # Several read-write mounts share this store, as on FoundationDB (or the embedded store's shared
        # mode): none of them owns it, so none may take the others for dead without proof.
        self.store.shared = True
        (tmp_path / "blocks").mkdir()
        format_filesystem(
            self.store, FsConfig(name="t", block_dirs=[str(tmp_path / "blocks")], chunk_size_bytes=CHUNK)
        )
        self.config = load_config(self.store, "t")
        self.blocks = BlockStore(
            self.config.block_dirs, CHUNK, owner_of(self.config, self.store), access=Access.CLAIM
        )
        self.keys = FsKeys("t")

    def mount(self) -> FuseOperations:
        return FuseOperations(self.store, self.config, self.blocks)

    def run(self, fn, *args):
        return self.store.transact(lambda tr: fn(tr, *args))

    def close(self) -> None:
        self.blocks.close()
        self.store.close()


@pytest.fixture
def shared(tmp_path: Path):
    fs = Shared(tmp_path)
    yield fs
    fs.close()


def _new_file(fs: Shared, ops: FuseOperations, name: bytes) -> int:
    ino = fs.run(ops.ns.reserve_ids, "inode", 1)
    fs.run(ops.ns.create, ROOT_INODE, name, ino, 0o100644, ROOT_CALLER)
    return ino


def _chunk(fs: Shared, ops: FuseOperations, ino: int, index: int, data: bytes, *, dirty: bool) -> ChunkRecord:
    """A chunk as a writer leaves it: its record (marked dirty, or clean with right checksums), its file."""
    record = ChunkRecord(fs.run(ops.ns.reserve_ids, "chunk", 1), 0)
    table = ChecksumTable(CHUNK)
    if dirty:
        fs.run(filedata.mark_dirty, fs.keys, ino, index, record, ops.ns.session)
    fs.blocks.write(0, record.chunk_id, 0, data, table)
    if not dirty:
        record.checksums = table.to_bytes()
        fs.run(filedata.put_chunk, fs.keys, ino, index, record)
    return record


def _leave_work(fs: Shared, ops: FuseOperations) -> dict:
    """What a mount has in progress: a chunk being written, one written past the recorded size, an
    unlinked file it holds open."""
    ino = _new_file(fs, ops, b"f")
    data = os.urandom(10_000)

    def recorded_size(tr) -> None:
        attr = ops.ns.attr_for_update(tr, ino)
        attr.size, attr.chunked = len(data), True
        ops.ns.write_back(tr, attr, ROOT_CALLER)

    fs.run(recorded_size)
    written = _chunk(fs, ops, ino, 0, data, dirty=True)
    beyond = _chunk(fs, ops, ino, 1, b"beyond", dirty=True)
    orphan = _new_file(fs, ops, b"g")
    orphan_chunk = _chunk(fs, ops, orphan, 0, b"gone", dirty=False)
    fs.run(ops.ns.unlink, ROOT_INODE, b"g", ROOT_CALLER)
    return {
        "ino": ino,
        "data": data,
        "chunk": written,
        "beyond": beyond,
        "orphan": orphan,
        "orphan_chunk": orphan_chunk,
    }


def _untouched(fs: Shared, ops: FuseOperations, work: dict) -> None:
    assert fs.run(filedata.dirty_marks, fs.keys) == [(work["ino"], i, ops.ns.session) for i in (0, 1)]
    assert fs.run(ops.ns.orphans) == [work["orphan"]]
    assert os.path.exists(fs.blocks.path(0, work["orphan_chunk"].chunk_id))
    assert not fs.run(sessions.list_sessions, fs.keys)[ops.ns.session].claimed_by


def _recovered(fs: Shared, work: dict) -> None:
    assert fs.run(filedata.dirty_marks, fs.keys) == []
    records = fs.run(filedata.read_chunks, fs.keys, work["ino"])
    assert list(records) == [0], "the chunk beyond the recorded size was kept"
    assert not os.path.exists(fs.blocks.path(0, work["beyond"].chunk_id))
    record = records[0]
    assert not record.dirty
    table = ChecksumTable(CHUNK, record.checksums)
    assert fs.blocks.read(0, record.chunk_id, 0, len(work["data"]), table) == work["data"]
    assert fs.run(lambda tr: tr.get(fs.keys.attr(work["orphan"]))) is None
    assert fs.run(lambda tr: tr.get_range(*fs.keys.orphans())) == []
    assert not os.path.exists(fs.blocks.path(0, work["orphan_chunk"].chunk_id)), "orphan's chunk file left"


def _rewrite_session(fs: Shared, session_id: bytes, **changes) -> None:
    session = fs.run(sessions.list_sessions, fs.keys)[session_id]
    for name, value in changes.items():
        setattr(session, name, value)
    fs.run(sessions.register, fs.keys, session)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_session_is_never_recovered_a_dead_pid_at_once(shared: Shared) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.recover("/mnt/a")
        await b.recover("/mnt/b")
        work = _leave_work(shared, a)
        await b.recovery.run_pass()
        _untouched(shared, a, work)
        # A's daemon died on this host: its pid is gone, so B need not wait for the heartbeat.
        _rewrite_session(shared, a.ns.session, pid=_dead_pid())
        await b.recovery.run_pass()
        _recovered(shared, work)
        assert set(shared.run(sessions.list_sessions, shared.keys)) == {b.ns.session}

    trio.run(main)


def test_a_file_opened_during_recovery_waits_for_its_chunks(shared: Shared) -> None:
    """Recovery runs beside requests: an open that comes first waits, and then reads the right bytes
    (with the stale checksum table it would fail with a checksum error)."""
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.recover("/mnt/a")
        work = _leave_work(shared, a)
        _rewrite_session(shared, a.ns.session, pid=_dead_pid())
        await b.recover("/mnt/b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.recovery.run_pass)  # starts only once the open below waits
            open_file = await b._open_file(work["ino"])
            assert await open_file.read(0, len(work["data"])) == work["data"]
        _recovered(shared, work)

    trio.run(main)


def test_an_expired_heartbeat_is_recovered(shared: Shared) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.recover("/mnt/a")
        await b.recover("/mnt/b")
        work = _leave_work(shared, a)
        # A runs on another host: only its heartbeat tells whether it lives.
        _rewrite_session(shared, a.ns.session, host="elsewhere", boot_id="other", pid=_dead_pid())
        await b.recovery.run_pass()
        _untouched(shared, a, work)
        # Its heartbeat, 61 s old with the default 60 s timeout.
        heartbeat = shared.run(sessions.list_sessions, shared.keys)[a.ns.session].heartbeat_ns
        _rewrite_session(shared, a.ns.session, heartbeat_ns=heartbeat - 61_000_000_000)
        await b.recovery.run_pass()
        _recovered(shared, work)

    trio.run(main)


def test_a_mount_whose_session_was_claimed_registers_anew(shared: Shared, caplog) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.recover("/mnt/a")
        await b.recover("/mnt/b")
        first = a.ns.session
        before = shared.run(sessions.list_sessions, shared.keys)[first].heartbeat_ns
        await a.renew_session()
        assert shared.run(sessions.list_sessions, shared.keys)[first].heartbeat_ns >= before
        assert a.ns.session == first
        assert shared.run(sessions.claim, shared.keys, first, b.ns.session, 0)  # A stalled; B took it
        with caplog.at_level(logging.ERROR):
            await a.renew_session()
        assert a.ns.session != first
        known = shared.run(sessions.list_sessions, shared.keys)
        assert known[first].claimed_by == b.ns.session
        assert known[a.ns.session].mountpoint == "/mnt/a" and not known[a.ns.session].claimed_by
        assert f"this mount's session {first.hex()} was taken for dead" in caplog.text

    trio.run(main)


def test_a_clean_shutdown_removes_the_session_and_only_its_own_orphans(shared: Shared) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.recover("/mnt/a")
        await b.recover("/mnt/b")
        work = _leave_work(shared, a)
        await b.shutdown()
        assert set(shared.run(sessions.list_sessions, shared.keys)) == {a.ns.session}
        assert shared.run(a.ns.orphans) == [work["orphan"]], "B's unmount reclaimed A's open file"
        await a.shutdown()
        assert shared.run(sessions.list_sessions, shared.keys) == {}
        assert shared.run(a.ns.orphans) == []

    trio.run(main)


# -- real mounts --------------------------------------------------------------------------------------------
def _store_view(data_mounts, mp: Path):
    """(store opened beside the daemon, the filesystem's keys)."""
    m = data_mounts.factory.mounts[mp]
    return open_store(m.store, read_only=True, exclusive=False), FsKeys(m.name)


def _sessions(data_mounts, mp: Path) -> dict[bytes, sessions.Session]:
    store, keys = _store_view(data_mounts, mp)
    try:
        return store.transact(lambda tr: sessions.list_sessions(tr, keys))
    finally:
        store.close()


def test_session_registered_while_mounted_and_removed_at_unmount(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, env={sessions.HEARTBEAT_INTERVAL_ENV: "0.2"})
    pid = data_mounts.factory.mounts[mp].proc.pid
    (only,) = _sessions(data_mounts, mp).values()
    assert (only.pid, only.mountpoint, only.host) == (pid, str(mp), sessions.this_process().host)
    assert only.start_ticks == sessions.process_start_ticks(pid)
    first = only.heartbeat_ns
    assert wait_for(lambda: _sessions(data_mounts, mp)[only.id].heartbeat_ns > first, 30), "no heartbeat"
    data_mounts.unmount(mp)
    assert _sessions(data_mounts, mp) == {}


def test_kill9_then_the_next_mount_recovers_everything(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("strict",))  # strict: each write reaches the daemon at once
    (mp / "held").write_bytes(os.urandom(200_000))
    held = os.open(mp / "held", os.O_RDONLY)
    os.unlink(mp / "held")  # an orphan with four chunks, held open
    big = os.open(mp / "big", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(big, os.urandom(300_000))  # five chunks written and marked dirty, nothing flushed: size 0
    before = _sessions(data_mounts, mp)
    data_mounts.kill(mp)
    for fd in (held, big):
        try:
            os.close(fd)
        except OSError:
            pass
    data_mounts.start(mp)
    data_mounts.wait_for_recovery(mp)
    store, keys = _store_view(data_mounts, mp)
    try:
        assert wait_for(lambda: not store.transact(lambda tr: tr.get_range(*keys.orphans())), 30), (
            "orphan kept"
        )
        assert wait_for(
            lambda: set(store.transact(lambda tr: sessions.list_sessions(tr, keys))).isdisjoint(before), 30
        ), "the dead session's record stays"
    finally:
        store.close()
    assert (mp / "big").read_bytes() == b""
    assert "recovering dead session" in data_mounts.log(mp)
    data_mounts.unmount(mp)
    referenced = data_mounts.referenced_chunks(mp)
    assert referenced == {}, f"chunk records left: {referenced}"
    assert data_mounts.chunk_files(mp) == {}, "chunk files of dropped records left"
    assert "0 unreferenced deleted" in data_mounts.cli(mp, "gc").stdout


def _status(data_mounts, mp: Path) -> str:
    m = data_mounts.factory.mounts[mp]
    res = subprocess.run(
        [sys.executable, "-m", "fusefs", "status", "--store", m.store],
        cwd=m.workdir,
        env=data_mounts.factory._env(m),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and not res.stderr, res
    return res.stdout


def _session_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip().startswith("session ")]
    assert len(lines) == 1, out
    return lines[0]


def test_status_lists_sessions_and_marks_dead_ones(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    pid = data_mounts.factory.mounts[mp].proc.pid
    line = _session_line(_status(data_mounts, mp))
    assert f": {sessions.this_process().host} pid {pid} at {mp}, up " in line, line
    assert line.endswith("s ago") and "(dead" not in line, line
    data_mounts.kill(mp)
    line = _session_line(_status(data_mounts, mp))
    assert f"pid {pid} at {mp}" in line and line.endswith("(dead, will be recovered by the next mount)"), line
    data_mounts.start(mp)
    assert wait_for(lambda: f"pid {pid} " not in _status(data_mounts, mp), 30)


def test_gc_refuses_while_a_session_lives_and_runs_once_it_is_dead(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    m = data_mounts.factory.mounts[mp]
    res = data_mounts.cli(mp, "gc", check=False)
    assert res.returncode == 1, res
    assert res.stderr.startswith(
        f"fusefs: error: {m.name} is mounted ({sessions.this_process().host} "
        f"pid {m.proc.pid} at {mp}, heartbeat "
    ), res.stderr
    assert res.stderr.strip().endswith("unmount every mount to run gc by hand"), res.stderr
    data_mounts.kill(mp)  # dead: its pid is gone
    assert "0 unreferenced deleted" in data_mounts.cli(mp, "gc").stdout
