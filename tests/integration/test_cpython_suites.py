"""CPython's own filesystem test suites, run with cwd and TMPDIR on the mount and on a local directory:
every test that passes locally must pass on the mount, except the documented differences below."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITES = ["test_os", "test_shutil", "test_tempfile", "test_fileio", "test_posix"]

# Tests that pass on a local directory and fail on the mount because of a deliberate, documented limit
# of fusefs (or of FUSE itself).  Each entry: test id → reason.  Keep this empty unless a difference is
# understood and accepted; a bug is not a limit.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _have_test_package() -> bool:
    res = subprocess.run([sys.executable, "-c", "import test.support, test.libregrtest"],
                         capture_output=True)
    return res.returncode == 0


def run_suites(where: Path, report: Path) -> tuple[dict[str, str], str, float]:
    """Run SUITES with cwd and TMPDIR in ``where``; test id → 'pass'|'skip'|'fail'|'error'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TMPDIR"] = str(where)
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "test", "--tempdir", str(where), "--junit-xml", str(report), *SUITES],
        cwd=where, env=env, capture_output=True, text=True, timeout=900,
    )
    elapsed = time.monotonic() - t0
    output = res.stdout + res.stderr
    outcomes: dict[str, str] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            kinds = {child.tag for child in case}
            outcome = ("error" if "error" in kinds else "fail" if "failure" in kinds
                       else "skip" if "skipped" in kinds else "pass")
            outcomes[case.get("name", "?")] = outcome
    return outcomes, output, elapsed


@pytest.mark.slow
def test_cpython_fs_suites_pass_on_mount(mnt: Path, tmp_path: Path) -> None:
    if not _have_test_package():
        pytest.skip(f"{sys.executable} has no test package (Lib/test): CPython's suites cannot run")
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    local, local_out, local_time = run_suites(local_dir, tmp_path / "local.xml")
    assert local, f"no results from the local run:\n{local_out[-4000:]}"
    mounted, mount_out, mount_time = run_suites(mnt, tmp_path / "mount.xml")
    count = lambda results, kind: sum(1 for o in results.values() if o == kind)  # noqa: E731
    print(f"local run {local_time:.1f} s: {count(local, 'pass')} passed, {count(local, 'skip')} skipped; "
          f"mount run {mount_time:.1f} s: {count(mounted, 'pass')} passed, {count(mounted, 'skip')} skipped")
    assert count(local, "pass") > 500, f"the local run passed too few tests:\n{local_out[-4000:]}"
    regressions = {
        name: mounted.get(name, "missing")
        for name, outcome in local.items()
        if outcome == "pass" and mounted.get(name) != "pass" and name not in KNOWN_DIFFERENCES
    }
    only_on_mount = sorted(n for n, o in mounted.items() if o == "pass" and local.get(n) != "pass")
    if only_on_mount:
        print("passing on the mount only:", only_on_mount)
    stale = sorted(n for n in KNOWN_DIFFERENCES if mounted.get(n) == "pass")
    if stale:
        print("allow-listed but passing now (remove from KNOWN_DIFFERENCES):", stale)
    assert not regressions, (
        f"{len(regressions)} tests pass locally but not on the mount:\n"
        + "\n".join(f"  {n}: {o}" for n, o in sorted(regressions.items()))
        + f"\n--- output of the mount run (tail) ---\n{mount_out[-6000:]}"
    )
