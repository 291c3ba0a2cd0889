"""Running the ``fusefs`` command as a user would: ``python -m fusefs`` in a subprocess, with its data
directory ($XDG_DATA_HOME) in the test's temporary directory so nothing outside it is touched."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fusefs_cli_helpers import mounted_type

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def one_line_error(self) -> str:
        """The single ``fusefs: error: ...`` line, after checking that nothing else was printed."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.stderr}"
        assert lines[0].startswith("fusefs: error: "), lines[0]
        return lines[0].removeprefix("fusefs: error: ")


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.data_dir = home / "xdg" / "fusefs"
        self.env = dict(os.environ)
        self.env["XDG_DATA_HOME"] = str(home / "xdg")
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.pop("FUSEFS_CHAOS_CONFLICT_RATE", None)
        self.env["COLUMNS"] = "1000"  # no wrapping inside the long paths of help texts
        self.daemons: list[int] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fusefs", *args]

    def __call__(self, *args: str, timeout: float = 90) -> Result:
        done = subprocess.run(
            self.command(*args),
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        # Remember background daemons so that teardown can stop them whatever the test did.
        self.daemons += [int(pid) for pid in re.findall(r"\(pid (\d+),", done.stdout)]
        return Result(done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.home,
            env=self.env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    @property
    def default_url(self) -> str:
        return f"sqlite://{self.data_dir}/meta.db"


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    yield runner
    for pid in runner.daemons:
        _stop(pid)


@pytest.fixture(scope="module")
def module_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A ``cli`` for what a module's tests share (made once, only read by the tests)."""
    runner = Cli(tmp_path_factory.mktemp("shared"))
    yield runner
    for pid in runner.daemons:
        _stop(pid)


def _stop(pid: int) -> None:
    # Daemons are reparented to PID 1, which may leave them zombies for a while: those count as gone.
    from fusefs.daemon_records import wait_for_exit

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for_exit(pid, 10):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    """An empty directory that is always unmounted (lazily, whatever state it is in) at teardown."""
    path = tmp_path / "mnt"
    path.mkdir()
    try:
        yield path
    finally:
        while mounted_type(path) is not None:
            subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
            if mounted_type(path) is not None:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)
                break


@pytest.fixture
def fuse_mountpoint(mountpoint: Path) -> Path:
    """``mountpoint``, for tests that really mount: skipped, visibly, where FUSE is unavailable."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: FUSE is unavailable on this machine")
    return mountpoint
