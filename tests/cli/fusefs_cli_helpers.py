"""Helpers of the command-line tests (a module with a unique name: tests/ has several conftest.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def mounted_type(path: Path) -> str | None:
    """The filesystem type /proc/mounts gives for ``path`` (the topmost mount), or None."""
    wanted = os.path.realpath(path)
    found = None
    with open("/proc/mounts") as table:
        for line in table:
            fields = line.split()
            if re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]) == wanted:
                found = fields[2]
    return found
