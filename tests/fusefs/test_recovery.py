"""Recovery of dead mounts, without a mount (fusefs/recovery.py, metadata/sessions.py).

Two read-write sessions in one process on one store shared as FoundationDB shares it (each the daemon's
whole composition, real store and chunk files): a live session's leftovers are never touched; one whose
pid is gone is recovered at once; one whose heartbeat expired is recovered; an open waits for recovery
of its chunks; a mount that finds its own session claimed registers anew; a clean shutdown removes only
its own session and orphans.  Recovery on real mounts: tests/data/test_sessions.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import trio
from conftest import CHUNK, Harness

from blocks import ChecksumTable
from fusefs.filesystem import Filesystem
from metadata import filedata, sessions
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord


def _new_file(fs: Harness, mount: Filesystem, name: bytes) -> int:
    ino = fs.run(mount.meta.ns.reserve_ids, "inode", 1)
    fs.run(mount.meta.ns.create, ROOT_INODE, name, ino, 0o100644, ROOT_CALLER)
    return ino


def _chunk(fs: Harness, mount: Filesystem, ino: int, index: int, data: bytes, *, dirty: bool) -> ChunkRecord:
    """A chunk as a writer leaves it: its record (marked dirty, or clean with right checksums), its file."""
    record = ChunkRecord(fs.run(mount.meta.ns.reserve_ids, "chunk", 1), 0)
    table = ChecksumTable(CHUNK)
    if dirty:
        fs.run(filedata.mark_dirty, fs.keys, ino, index, record, mount.meta.session)
    fs.blocks.write(0, record.chunk_id, 0, data, table)
    if not dirty:
        record.checksums = table.to_bytes()
        fs.run(filedata.put_chunk, fs.keys, ino, index, record)
    return record


def _leave_work(fs: Harness, mount: Filesystem) -> dict:
    """What a mount has in progress: a chunk being written, one written past the recorded size, an
    unlinked file it holds open."""
    ino = _new_file(fs, mount, b"f")
    data = os.urandom(10_000)

    def recorded_size(tr) -> None:
        attr = mount.meta.ns.attr_for_update(tr, ino)
        attr.size, attr.chunked = len(data), True
        mount.meta.ns.write_back(tr, attr, ROOT_CALLER)

    fs.run(recorded_size)
    written = _chunk(fs, mount, ino, 0, data, dirty=True)
    beyond = _chunk(fs, mount, ino, 1, b"beyond", dirty=True)
    orphan = _new_file(fs, mount, b"g")
    orphan_chunk = _chunk(fs, mount, orphan, 0, b"gone", dirty=False)
    fs.run(mount.meta.ns.unlink, ROOT_INODE, b"g", ROOT_CALLER)
    return {
        "ino": ino,
        "data": data,
        "chunk": written,
        "beyond": beyond,
        "orphan": orphan,
        "orphan_chunk": orphan_chunk,
    }


def _untouched(fs: Harness, mount: Filesystem, work: dict) -> None:
    assert fs.run(filedata.dirty_marks, fs.keys) == [(work["ino"], i, mount.meta.session) for i in (0, 1)]
    assert fs.run(mount.meta.ns.orphans) == [work["orphan"]]
    assert os.path.exists(fs.blocks.path(0, work["orphan_chunk"].chunk_id))
    assert not fs.run(sessions.list_sessions, fs.keys)[mount.meta.session].claimed_by


def _recovered(fs: Harness, work: dict) -> None:
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


def _rewrite_session(fs: Harness, session_id: bytes, **changes) -> None:
    session = fs.run(sessions.list_sessions, fs.keys)[session_id]
    for name, value in changes.items():
        setattr(session, name, value)
    fs.run(sessions.register, fs.keys, session)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_session_is_never_recovered_a_dead_pid_at_once(shared: Harness) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.start("/mnt/a")
        await b.start("/mnt/b")
        work = _leave_work(shared, a)
        await b.recovery.run_pass()
        _untouched(shared, a, work)
        # A's daemon died on this host: its pid is gone, so B need not wait for the heartbeat.
        _rewrite_session(shared, a.meta.session, pid=_dead_pid())
        await b.recovery.run_pass()
        _recovered(shared, work)
        assert set(shared.run(sessions.list_sessions, shared.keys)) == {b.meta.session}

    trio.run(main)


def test_a_file_opened_during_recovery_waits_for_its_chunks(shared: Harness) -> None:
    """Recovery runs beside requests: an open that comes first waits, and then reads the right bytes
    (with the stale checksum table it would fail with a checksum error)."""
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.start("/mnt/a")
        work = _leave_work(shared, a)
        _rewrite_session(shared, a.meta.session, pid=_dead_pid())
        await b.start("/mnt/b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.recovery.run_pass)  # starts only once the open below waits
            open_file = await b.open_files.open(work["ino"])
            assert await open_file.read(0, len(work["data"])) == work["data"]
        _recovered(shared, work)

    trio.run(main)


def test_an_expired_heartbeat_is_recovered(shared: Harness) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.start("/mnt/a")
        await b.start("/mnt/b")
        work = _leave_work(shared, a)
        # A runs on another host: only its heartbeat tells whether it lives.
        _rewrite_session(shared, a.meta.session, host="elsewhere", boot_id="other", pid=_dead_pid())
        await b.recovery.run_pass()
        _untouched(shared, a, work)
        # Its heartbeat, 61 s old with the default 60 s timeout.
        heartbeat = shared.run(sessions.list_sessions, shared.keys)[a.meta.session].heartbeat_ns
        _rewrite_session(shared, a.meta.session, heartbeat_ns=heartbeat - 61_000_000_000)
        await b.recovery.run_pass()
        _recovered(shared, work)

    trio.run(main)


def test_a_mount_whose_session_was_claimed_registers_anew(shared: Harness, caplog) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.start("/mnt/a")
        await b.start("/mnt/b")
        first = a.meta.session
        before = shared.run(sessions.list_sessions, shared.keys)[first].heartbeat_ns
        await a.mount_session.renew()
        assert shared.run(sessions.list_sessions, shared.keys)[first].heartbeat_ns >= before
        assert a.meta.session == first
        assert shared.run(sessions.claim, shared.keys, first, b.meta.session, 0)  # A stalled; B took it
        with caplog.at_level(logging.ERROR):
            await a.mount_session.renew()
        assert a.meta.session != first
        known = shared.run(sessions.list_sessions, shared.keys)
        assert known[first].claimed_by == b.meta.session
        assert known[a.meta.session].mountpoint == "/mnt/a" and not known[a.meta.session].claimed_by
        assert f"this mount's session {first.hex()} was taken for dead" in caplog.text

    trio.run(main)


def test_a_clean_shutdown_removes_the_session_and_only_its_own_orphans(shared: Harness) -> None:
    a, b = shared.mount(), shared.mount()

    async def main() -> None:
        await a.start("/mnt/a")
        await b.start("/mnt/b")
        work = _leave_work(shared, a)
        await b.shutdown()
        assert set(shared.run(sessions.list_sessions, shared.keys)) == {a.meta.session}
        assert shared.run(a.meta.ns.orphans) == [work["orphan"]], "B's unmount reclaimed A's open file"
        await a.shutdown()
        assert shared.run(sessions.list_sessions, shared.keys) == {}
        assert shared.run(a.meta.ns.orphans) == []

    trio.run(main)
