"""scripts/feature_bench.py in a small size: both modes mount, run, print their table and unmount."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "scripts" / "feature_bench.py"


def run(tmp_path: Path, *args: str) -> str:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: cannot mount")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--dir", str(tmp_path / "work")],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any("feature-bench" in line or str(tmp_path) in line for line in open("/proc/mounts"))
    return result.stdout


def test_costs_prints_every_workload_for_every_configuration(tmp_path: Path) -> None:
    out = run(tmp_path, "costs", "--files", "20", "--rounds", "1")
    assert "| workload (20 files, median of 1 rounds) | plain | trash | quota | acl |" in out
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", out, re.M)
    assert [row[0] for row in rows] == [
        "create (files/s)",
        "4 KiB files written (files/s)",
        "unlink (files/s)",
        "rm -rf of the 4 KiB files (files/s)",
    ]


def test_clone_compares_with_cp(tmp_path: Path) -> None:
    out = run(tmp_path, "clone", "--files", "30", "--big-mib", "1")
    assert "tree: 30 x 4 KiB files and 2 x 1 MiB (53 inodes, 2 MiB)" in out
    for tool in ("fusefs clone", "cp -a"):
        assert re.search(rf"^{tool}: [\d.]+ s, [\d,]+ inodes/s, [\d,.]+ MiB/s$", out, re.M), out
