"""What the optional features cost: the same workloads, in one run, on a plain fusefs and with each feature
on, and the speed of ``fusefs clone`` beside ``cp -a``.

``costs`` mounts one filesystem per configuration (embedded store, sole owner, as the default mount):
``plain``; ``trash`` (``mkfs --trash-days 7``: unlink moves files into /.trash); ``quota`` (a quota on the
directory the workloads run in, with limits never reached); ``acl`` (``-o acl``).  In each it creates
``--files`` empty files, writes as many 4 KiB files, unlinks the empty ones and ``rm -rf``s the written
ones, in turns (see ``costs``), printing the median files per second.

``clone`` builds a tree of ``--files`` 4 KiB files in 20 directories and two 64 MiB files (``--big-mib``)
on a shared mount (``fusefs clone`` needs one while mounted), then times ``fusefs clone`` and ``cp -a`` of
it, printing inodes per second and the tree's bytes per second of each.  Usage (as root):

    python scripts/feature_bench.py costs [--files 2000] [--rounds 3] [--dir DIR]
    python scripts/feature_bench.py clone [--files 2000] [--big-mib 64] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FUSEFS = [sys.executable, "-m", "fusefs"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))
SMALL = b"x" * 4096


def fusefs(*args: str) -> str:
    result = subprocess.run([*FUSEFS, *args], env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"fusefs {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


class Mounted:
    """A new filesystem mounted under ``work/name`` until the ``with`` block ends."""

    def __init__(self, work: Path, name: str, mkfs: tuple[str, ...] = (), options: str = "") -> None:
        self.base = work / name
        self.mountpoint = self.base / "mnt"
        self.store = f"sqlite://{self.base / 'meta.db'}"
        self.name, self.mkfs, self.options = name, mkfs, options

    def __enter__(self) -> Path:
        (self.base / "blocks").mkdir(parents=True)
        self.mountpoint.mkdir()
        fusefs("mkfs", "--store", self.store, "--blocks", str(self.base / "blocks"), *self.mkfs, self.name)
        options = ("-o", self.options) if self.options else ()
        fusefs("mount", "--store", self.store, "--name", self.name, *options, str(self.mountpoint))
        return self.mountpoint

    def __exit__(self, *_: object) -> None:
        fusefs("umount", str(self.mountpoint))


def rate(count: int, action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return count / (time.perf_counter() - start)


def create_empty(directory: Path, count: int) -> None:
    for n in range(count):
        os.close(os.open(directory / f"e{n}", os.O_CREAT | os.O_WRONLY, 0o644))


def write_small(directory: Path, count: int) -> None:
    for n in range(count):
        fd = os.open(directory / f"s{n}", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, SMALL)
        os.close(fd)


def unlink_all(directory: Path, count: int) -> None:
    for n in range(count):
        os.unlink(directory / f"e{n}")


def workloads(directory: Path, count: int, quota: bool) -> dict[str, float]:
    directory.mkdir()
    if quota:
        fusefs("quota", "set", str(directory), "--bytes", "1024G", "--inodes", "100000000")
    (directory / "empty").mkdir()
    (directory / "small").mkdir()
    return {
        "create (files/s)": rate(count, lambda: create_empty(directory / "empty", count)),
        "4 KiB files written (files/s)": rate(count, lambda: write_small(directory / "small", count)),
        "unlink (files/s)": rate(count, lambda: unlink_all(directory / "empty", count)),
        "rm -rf of the 4 KiB files (files/s)": rate(
            count, lambda: subprocess.run(["rm", "-rf", str(directory / "small")], check=True)
        ),
    }


def costs(work: Path, count: int, rounds: int) -> None:
    """Every configuration mounted at once and the workloads run in turns, round after round, so that a
    change in the machine's load hits each alike; the median of the rounds is printed."""
    configurations: dict[str, dict[str, Any]] = {
        "plain": {},
        "trash": {"mkfs": ("--trash-days", "7")},
        "quota": {},
        "acl": {"options": "acl"},
    }
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in configurations}
    with contextlib.ExitStack() as stack:
        mounted = {
            name: stack.enter_context(Mounted(work, name, **kw))
            for name, kw in configurations.items()
        }
        for round_number in range(rounds):
            for name, mountpoint in mounted.items():
                found = workloads(mountpoint / f"round{round_number}", count, quota=name == "quota")
                for workload, value in found.items():
                    figures[name].setdefault(workload, []).append(value)
    names = list(configurations)
    print(f"| workload ({count} files, median of {rounds} rounds) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for workload in figures["plain"]:
        medians = [statistics.median(figures[name][workload]) for name in names]
        print(f"| {workload} | " + " | ".join(f"{value:,.0f}" for value in medians) + " |")


def build_tree(root: Path, count: int, big_mib: int) -> int:
    """The tree ``clone`` copies; returns its bytes."""
    for d in range(20):
        (root / f"d{d}").mkdir(parents=True)
    for n in range(count):
        (root / f"d{n % 20}" / f"f{n}").write_bytes(SMALL)
    chunk = os.urandom(1 << 20)
    for name in ("big1", "big2"):
        with open(root / name, "wb") as f:
            for _ in range(big_mib):
                f.write(chunk)
    return count * len(SMALL) + (2 * big_mib << 20)


def clone(work: Path, count: int, big_mib: int) -> None:
    with Mounted(work, "clone", options="shared") as mountpoint:
        size = build_tree(mountpoint / "src", count, big_mib)
        inodes = count + 20 + 2 + 1
        seconds = {}
        for tool, argv in {
            "fusefs clone": [*FUSEFS, "clone", str(mountpoint / "src"), str(mountpoint / "by-clone")],
            "cp -a": ["cp", "-a", str(mountpoint / "src"), str(mountpoint / "by-cp")],
        }.items():
            start = time.perf_counter()
            subprocess.run(argv, env=ENV, check=True, capture_output=True)
            seconds[tool] = time.perf_counter() - start
    print(f"tree: {count} x 4 KiB files and 2 x {big_mib} MiB ({inodes} inodes, {size / 2**20:.0f} MiB)")
    for tool, elapsed in seconds.items():
        print(
            f"{tool}: {elapsed:.2f} s, {inodes / elapsed:,.0f} inodes/s, {size / elapsed / 2**20:,.1f} MiB/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["costs", "clone"])
    parser.add_argument("--files", type=int, default=2000, help="files per workload (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="costs: rounds of every workload (default 3)")
    parser.add_argument("--big-mib", type=int, default=64, help="clone: size of the two large files (64)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a new one under /var/tmp)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unmount on the way out (``timeout``)
    work = args.dir or Path(tempfile.mkdtemp(prefix="feature-bench-", dir="/var/tmp"))
    try:
        if args.mode == "costs":
            costs(work, args.files, args.rounds)
        else:
            clone(work, args.files, args.big_mib)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
