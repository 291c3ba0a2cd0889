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
    work = tmp_path / "work"
    out = run("query", "--inodes", "2221", "--dir", str(work))
    assert re.search(r"^built 2221 inodes \(2000 files\) in [\d.]+ s$", out, re.M), out
    counts = dict(re.findall(r"^(.+?): (\d+) files in [\d.]+ ms", out, re.M))
    xattr = 'xattr user.meta={"batch": 13}'
    assert counts[f"fusefs find {xattr}"] == counts["fusefs find JSON field meta.batch = 13"] == "100"
    assert counts[f"fusefs find {xattr} under /t3"] == counts[f"GNU getfattr {xattr} under /t3"] == "10"
    for under in ("/t3", "/t3/s0"):
        ours = counts[f"fusefs find *.parquet under {under}"]
        assert ours == counts[f"GNU find *.parquet under {under}"] and int(ours) > 0
    assert not os.path.ismount(work / "mnt")
    # The loaded filesystem is whole: its indexes match its namespace, fsck finds nothing.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    fusefs = [sys.executable, "-c", "import sys; from fusefs.cli import main; sys.exit(main())"]
    store = ["--store", f"sqlite://{work / 'meta.db'}", "--name", "bench"]
    for command in (["index", "check", *store], ["fsck", *store]):
        result = subprocess.run([*fusefs, *command], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    # Asked again without building.
    again = run("query", "--dir", str(work), "--reuse", "--no-mount")
    assert "built" not in again and re.search(r"store rounds\)$", again, re.M)


def test_throughput_mode() -> None:
    out = run("throughput", "--count", "50", "--rounds", "2")
    for what in ("create", "setxattr"):
        assert re.search(
            rf"^{what}: [\d,]+/s without indexes, [\d,]+/s with, ratio [\d.]+ \(median of 2 rounds of 50, "
            r"store API\)$",
            out,
            re.M,
        ), out
