"""Keeps scripts/fuse_roundtrip.py working: both waits mount, answer stats and unmount."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuse_roundtrip.py"


def test_both_waits_answer_and_report_a_figure() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", "300"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    figures = re.findall(r"^(stock|polling) +wait: +([\d.]+) µs per getattr round trip", proc.stdout, re.M)
    assert [wait for wait, _ in figures] == ["stock", "polling"], proc.stdout
    assert all(float(us) > 0 for _, us in figures)
