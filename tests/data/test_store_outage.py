"""A mount rides through a store outage (the embedded store's ``FUSEFS_STORE_FAULT_FILE``: while the file
exists every commit fails retryably, as FoundationDB's do during a recovery): operations wait and then
succeed; past ``FUSEFS_STORE_PATIENCE_S`` they fail with EIO and the mount stays up."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import wait_for

REPO = Path(__file__).resolve().parents[2]


def _fusefs(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "fusefs", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


#: Longer than one transaction's 5 s timeout, which used to end an operation with ETIMEDOUT.
OUTAGE_S = 6.5


def _outage_mount(data_mounts, tmp_path: Path, **env: str) -> tuple[Path, Path]:
    fault = tmp_path / "store-fault"
    mp = data_mounts.mount(options=("shared",), env={"FUSEFS_STORE_FAULT_FILE": str(fault), **env})
    data_mounts.store_path(mp)  # skips on FoundationDB, which has no fault switch
    return mp, fault


def test_operations_wait_out_an_outage_and_succeed(data_mounts, tmp_path: Path) -> None:
    mp, fault = _outage_mount(data_mounts, tmp_path)
    fault.touch()
    done: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(mp / "f", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b"written during the outage")
            os.close(fd)
            done.append("file")
            os.mkdir(mp / "d")
            done.append("dir")
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(OUTAGE_S)  # a lower bound on the outage: longer under load changes nothing
    assert done == [] and failures == []  # nothing got through while the store was down
    fault.unlink()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert failures == []
    assert done == ["file", "dir"]
    assert (mp / "f").read_bytes() == b"written during the outage"
    assert (mp / "d").is_dir()
    log = data_mounts.log(mp)
    assert "embedded store emulation on: commits fail while" in log
    assert "still retrying" in log and "answers again" in log
    # fusefs stats counts the ride: failed commits retried, and transact calls started again.
    stats = json.loads(_fusefs("stats", "--once", "--json", "--interval", "0.1", str(mp)))
    assert stats["retries"] > 0 and stats["outage_retries"] > 0


def test_past_its_patience_an_operation_fails_with_eio_and_the_mount_stays_up(
    data_mounts, tmp_path: Path
) -> None:
    data_mounts.expect_errors(r"answered EIO: store .* still failing after")
    data_mounts.expect_errors(r"background service \w+ failed \(StoreOutage: ")
    mp, fault = _outage_mount(data_mounts, tmp_path, FUSEFS_STORE_PATIENCE_S="2")
    (mp / "before").write_bytes(b"kept")
    fault.touch()
    with pytest.raises(OSError) as caught:
        os.mkdir(mp / "d")
    assert caught.value.errno == errno.EIO
    fault.unlink()
    # Up and serving once the store answers again (a retry of what failed included).
    assert wait_for(lambda: (mp / "before").read_bytes() == b"kept", timeout=30)
    os.mkdir(mp / "d")
    (mp / "d" / "after").write_bytes(b"ok")
    assert (mp / "d" / "after").read_bytes() == b"ok"
    assert "giving up" in data_mounts.log(mp)
