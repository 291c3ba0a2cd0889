"""What the daemon logs when requests fail: one short line per failure, never file data, and at most a
few lines a minute for the same failure, however many requests fail."""

from __future__ import annotations

import errno
import os

from fusefs.boundary import ErrorLogLimit, describe_call

from .conftest import SMALL

MiB = 1 << 20
MARKER = b"file-content-marker "


def test_a_full_block_directory_leaves_a_small_log_without_file_data(data_mounts) -> None:
    """Each failed 1 MiB write used to log its whole buffer (12 MB of log for four failures)."""
    data_mounts.expect_errors(r"answered ENOSPC: no space left in block directories")
    mp = data_mounts.mount(**SMALL, blocks_tmpfs="8m")
    piece = MARKER * (MiB // len(MARKER))
    failures = 0
    fd = os.open(mp / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for _ in range(64):  # 64 MiB into 8 MiB: most writes fail
            try:
                os.write(fd, piece)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                failures += 1
    finally:
        try:
            os.close(fd)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    assert failures >= 20
    log = data_mounts.log(mp)
    assert "file-content-marker" not in log
    assert len(log) < 16 * 1024, f"{len(log)} bytes of daemon log after {failures} failed writes"
    failure_lines = [line for line in log.splitlines() if " ERROR " in line]
    assert failure_lines, log
    # The first few failures of a kind are logged, one short line each; the rest are counted.
    assert all(len(line) < 1000 for line in failure_lines), failure_lines
    assert sum("failed, answered ENOSPC" in line for line in failure_lines) <= 2 * ErrorLogLimit().burst
    assert any("are counted, not logged" in line for line in failure_lines), failure_lines


def test_a_failed_call_is_described_by_numbers_names_and_sizes() -> None:
    assert describe_call("write", ["fh", "off", "buf"], (3, 4096, b"secret" * 1000)) == (
        "write(fh=3, off=4096, buf=<6000 bytes>)"
    )
    assert describe_call(
        "setxattr", ["inode", "name", "value", "ctx"], (7, b"user.evil\n", b"secret value", object())
    ) == ("setxattr(inode=7, name='user.evil\\n', value=<12 bytes>)")
    assert describe_call("rename", ["parent_inode_old", "name_old"], (1, b"\xff")) == (
        "rename(parent_inode_old=1, name_old='\\xff')"
    )


def test_repeated_failures_are_logged_a_few_times_a_window_then_counted() -> None:
    now = [0.0]
    limit = ErrorLogLimit(burst=3, window_s=60.0, clock=lambda: now[0])
    admitted = [limit.admit("write", errno.ENOSPC) for _ in range(10)]
    assert [a.log for a in admitted] == [True] * 3 + [False] * 7
    assert [a.last for a in admitted].index(True) == 2  # the third says that the rest are counted
    assert all(a.unreported == 0 for a in admitted)
    # Another kind of failure has its own window.
    assert limit.admit("write", errno.EIO).log and limit.admit("read", errno.ENOSPC).log
    now[0] = 59.0
    assert not limit.admit("write", errno.ENOSPC).log
    now[0] = 61.0  # a new window: the next failure is logged, with the count of those not logged
    first = limit.admit("write", errno.ENOSPC)
    assert first.log and first.unreported == 8
    assert limit.admit("write", errno.ENOSPC).unreported == 0
