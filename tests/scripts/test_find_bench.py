"""scripts/find_bench.py in a small size: it builds, queries, mounts, compares with GNU tools and unmounts;
its throughput mode runs too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "scripts" / "find_bench.py"


def run(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_query_mode_answers_like_gnu_tools(tmp_path: Path) -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: cannot mount")
    out = run("query", "--inodes", "2221", "--dir", str(tmp_path / "work"))
    counts = dict(re.findall(r"^(.+?): (\d+) files in [\d.]+ ms$", out, re.M))
    assert counts["fusefs find xattr user.batch=b7"] == counts["GNU getfattr xattr user.batch=b7"] == "100"
    ours, theirs = counts["fusefs find *.parquet under /t3"], counts["GNU find *.parquet under /t3"]
    assert ours == theirs and int(ours) > 0
    assert not os.path.ismount(tmp_path / "work" / "mnt")


def test_throughput_mode() -> None:
    out = run("throughput", "--count", "50", "--rounds", "2")
    for what in ("create", "setxattr"):
        assert re.search(
            rf"^{what}: [\d,]+/s without indexes, [\d,]+/s with, ratio [\d.]+ \(median of 2 rounds of 50, "
            r"store API\)$",
            out,
            re.M,
        ), out
