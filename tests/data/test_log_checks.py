"""The mount fixtures' check of the daemon's log: an ERROR record the test did not declare fails it, one
it declared with ``expect_errors`` does not (the fixture's own test: a corrupt chunk file makes the
daemon log ERRORs for the read it answers EIO, with or without a data tier)."""

from __future__ import annotations

import errno
import os

import pytest

from .conftest import SMALL


def _read_a_corrupt_chunk(data_mounts):
    mp = data_mounts.mount(**SMALL)
    (mp / "f").write_bytes(os.urandom(2 * 65536))
    data_mounts.unmount(mp)
    max(data_mounts.chunk_files(mp).items())[1].write_bytes(os.urandom(65536))
    data_mounts.start(mp)
    fd = os.open(mp / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as caught:
            os.pread(fd, 100, 65536)
    finally:
        os.close(fd)
    assert caught.value.errno == errno.EIO
    data_mounts.unmount(mp)  # the log is checked here
    return data_mounts.factory.problems


def test_an_undeclared_error_record_fails_the_test(data_mounts):
    problems = _read_a_corrupt_chunk(data_mounts)
    assert len(problems) == 1, problems
    assert "unexpected ERROR record(s)" in problems[0] and "checksum mismatch" in problems[0], problems[0]
    problems.clear()  # this test expected the failure it checks


def test_a_declared_error_record_does_not(data_mounts):
    data_mounts.expect_errors(r"checksum mismatch in chunk \d+")
    assert _read_a_corrupt_chunk(data_mounts) == []
