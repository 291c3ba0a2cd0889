"""Provenance (mkfs --provenance, mount -o provenance): a record per open and close with uid, pid,
command name, times and bytes read and written, for two different users, through ``fusefs provenance``
by path and by user; off by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def provenance(mounted, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "fusefs", "provenance", "--store", mounted.store, "--name", mounted.name, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def records(mounted, *args: str) -> list[dict]:
    result = provenance(mounted, "--json", *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def fs(mount_fs):
    if mount_fs.target != "fusefs":
        pytest.skip("provenance is fusefs' own")
    mnt = mount_fs(options=("allow_other",), mkfs=("--provenance",))
    return mnt, mount_fs.mounts[mnt]


@pytest.mark.chaos
def test_reads_and_writes_of_two_users_are_recorded(fs, unpriv_user):
    mnt, mounted = fs
    started = time.time_ns()
    path = mnt / "shared.txt"
    path.write_bytes(b"x" * 5000)  # root, through this python
    path.chmod(0o666)
    unpriv_user.run(["cat", str(path)], check=True)
    unpriv_user.run(["sh", "-c", f"printf abc >> {path}"], check=True)
    found = records(mounted, str(path))  # a path in the mount
    by_command = [(r["uid"], r["command"], r["bytes_read"], r["bytes_written"]) for r in found]
    python = os.path.basename(sys.executable)[:15]
    assert by_command == [
        (0, python, 0, 5000),
        (unpriv_user.uid, "cat", 5000, 0),
        (unpriv_user.uid, "sh", 0, 3),
    ], found
    assert all(started <= r["opened_ns"] <= r["closed_ns"] <= time.time_ns() for r in found)
    assert len({r["ino"] for r in found}) == 1 and all(r["pid"] > 0 for r in found)
    assert records(mounted, "/shared.txt") == found  # a path from the filesystem's root
    assert records(mounted, "--uid", str(unpriv_user.uid), "--since", "1h") == found[1:]
    assert records(mounted, "--uid", str(unpriv_user.uid), "--since", "2099-01-01T00:00") == []
    text = provenance(mounted, str(path)).stdout.splitlines()
    assert len(text) == 3 and 'command="cat" read=5000 written=0' in text[1]


def test_bad_provenance_queries_are_one_line_errors(fs):
    mnt, mounted = fs
    for args, status, message in (
        ((), 2, "give either PATH or --uid N"),
        (("/x", "--uid", "0"), 2, "give either PATH or --uid N"),
        (("/x",), 1, "/x: No such file or directory"),
        (("/x", "--since", "1h"), 2, "--since goes with --uid"),
        (("--uid", "0", "--since", "soon"), 2, "invalid time 'soon'"),
        (("--uid", "0", "--limit", "0"), 2, "--limit must be 1 or more"),
    ):
        result = provenance(mounted, *args)
        assert result.returncode == status, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("fusefs: error: ") and message in lines[0], lines


def test_provenance_is_off_by_default_and_a_mount_option_turns_it_on(mount_fs):
    if mount_fs.target != "fusefs":
        pytest.skip("provenance is fusefs' own")
    mnt = mount_fs()
    mounted = mount_fs.mounts[mnt]
    (mnt / "f").write_bytes(b"data")
    assert records(mounted, "/f") == []
    mount_fs.remount(mnt, options=("provenance",))
    assert (mnt / "f").read_bytes() == b"data"
    (found,) = records(mounted, "/f")
    assert (found["bytes_read"], found["bytes_written"], found["uid"]) == (4, 0, 0)
