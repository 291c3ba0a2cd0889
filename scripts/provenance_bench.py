"""The cost of provenance (``mount -o provenance``): small files written and read back through two mounts
of the embedded store, one with provenance and one without, in alternating rounds of one run (so that a
loaded machine weighs on both alike); prints files per second of each, the median over the rounds, and
the ratio.  Usage:

    python scripts/provenance_bench.py [--files 2000] [--rounds 5] [--dir /tmp/provenance-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FUSEFS = [sys.executable, "-c", "import sys; from fusefs.cli import main; sys.exit(main())"]
os.environ.setdefault("PYTHONPATH", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAYLOAD = b"x" * 4096


def mount(work: str, name: str, options: list[str], mkfs_options: tuple[str, ...] = ()) -> str:
    """A new filesystem ``name`` in its own embedded store under ``work``, mounted; its mountpoint (also
    used by scripts/find_bench.py)."""
    store = f"sqlite://{work}/{name}.db"
    blocks, mountpoint = os.path.join(work, f"{name}-blocks"), os.path.join(work, name)
    os.makedirs(blocks)
    os.makedirs(mountpoint)
    made = [*FUSEFS, "mkfs", "--store", store, "--blocks", blocks, *mkfs_options, name]
    subprocess.run(made, check=True, capture_output=True)
    log = os.path.join(work, f"{name}.log")
    command = [*FUSEFS, "mount", "--store", store, "--name", name, "--log-file", log, *options, mountpoint]
    subprocess.run(command, check=True, capture_output=True)
    return mountpoint


def write_files(directory: str, files: int) -> float:
    os.makedirs(directory)
    start = time.perf_counter()
    for i in range(files):
        with open(os.path.join(directory, f"f{i}"), "wb") as file:
            file.write(PAYLOAD)
    return files / (time.perf_counter() - start)


def read_files(directory: str, files: int) -> float:
    start = time.perf_counter()
    for i in range(files):
        with open(os.path.join(directory, f"f{i}"), "rb") as file:
            file.read()
    return files / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="work directory (default: a new temporary one)")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="provenance-bench-")
    mounts = {"off": mount(work, "off", []), "on": mount(work, "on", ["-o", "provenance"])}
    results: dict[str, dict[str, list[float]]] = {key: {"write": [], "read": []} for key in mounts}
    try:
        for round_ in range(args.rounds):
            for key, mountpoint in mounts.items():
                directory = os.path.join(mountpoint, f"r{round_}")
                results[key]["write"].append(write_files(directory, args.files))
                results[key]["read"].append(read_files(directory, args.files))
    finally:
        for mountpoint in mounts.values():
            subprocess.run([*FUSEFS, "umount", mountpoint], capture_output=True)
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    for workload in ("write", "read"):
        off = statistics.median(results["off"][workload])
        on = statistics.median(results["on"][workload])
        print(
            f"{args.files} x 4 KiB files {workload} (open, {workload}, close): provenance off {off:,.0f}/s, "
            f"on {on:,.0f}/s, on/off {on / off:.2f} (median of {args.rounds} rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
