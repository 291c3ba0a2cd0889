#!/usr/bin/env python3
"""Per-operation latency and multi-process scaling on a shared store, against the store's own floor.

By default the store is the embedded one in shared mode with FoundationDB's latency emulated
(``FUSEFS_STORE_LATENCY``: a delay per read round and per commit; the defaults reproduce what a
single-process FoundationDB 8.0 gave on this machine type: a read transaction 0.56 ms, a read+write
transaction 1.47 ms).  ``--store fdb://...`` measures a real cluster instead.  In one run:

  floor      a 1-key read transaction and a 1-key read+write transaction, through the same store
  create     open(O_CREAT) + close of a new file, one process, median        target <= 1.3 x read+write
  stat       stat of dir/file on a ``-o strict`` mount (5 requests)          target <= 1.3 x 2 reads
             (and of names another mount made while it was mounted: its change log gave hints)
  tar -x     of this Python's stdlib (Lib/ without test/)                    target <= 3 x embedded store
  scaling    creates and 4 KiB files written by 8 processes vs 1            target >= 5 x
             (with the daemon's CPU time per file: far steadier than rates on a loaded machine)

    python scripts/latency_bench.py [--store URL] [--latency READ_MS,COMMIT_MS] [--files N] [--no-tar]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench.workloads import source_tarball  # noqa: E402
from metadata.emulation import LATENCY_ENV, StoreEmulation  # noqa: E402
from metadata.store import Store, Transaction  # noqa: E402
from metadata.urls import open_store  # noqa: E402

DEFAULT_LATENCY = "0.56,0.91"
FLOOR_SAMPLES = 200
PROCESSES = 8
MOUNT_TIMEOUT_S = 60.0
#: Long enough for a mount to read the change log after another mount's changes (it polls each second).
LOG_FOLLOW_S = 2.5


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(fn: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


# -- the store's floor ---------------------------------------------------------------------------------
def floor_ms(store: Store) -> tuple[float, float]:
    """Median (read transaction, read+write transaction) in ms, measured through ``store.transact``."""
    key = b"\xfe-latency-bench-" + uuid.uuid4().bytes

    def read(tr: Transaction) -> bytes | None:
        return tr.get(key)

    def read_write(tr: Transaction) -> None:
        value = tr.get(key) or b"0"
        tr.set(key, str(int(value) + 1).encode())

    try:
        reads = _timed(lambda: store.transact(read), FLOOR_SAMPLES)
        writes = _timed(lambda: store.transact(read_write), FLOOR_SAMPLES)
    finally:
        store.transact(lambda tr: tr.clear(key))
    return _median_ms(reads), _median_ms(writes)


# -- mounts ------------------------------------------------------------------------------------------
def _fusefs(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fusefs", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise SystemExit(f"fusefs {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")


def daemon_cpu_s(pid: int) -> float:
    """CPU time used so far by every thread of process ``pid`` (the scheduler's ns count, not ticks)."""
    total_ns = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            with open(f"/proc/{pid}/task/{thread}/schedstat") as stats:
                total_ns += int(stats.read().split()[0])
    return total_ns / 1e9


@contextlib.contextmanager
def mounted(
    store: str, name: str, options: list[str], env: dict[str, str], work: Path
) -> Iterator[tuple[Path, int]]:
    """The mountpoint of a daemon serving ``name``, and the daemon's pid."""
    mountpoint = Path(tempfile.mkdtemp(prefix="latency-", dir=work))
    log = work / f"{mountpoint.name}.log"
    argv = [sys.executable, "-m", "fusefs", "mount", "--store", store, "--name", name, "--foreground"]
    if options:
        argv += ["-o", ",".join(options)]
    with open(log, "w") as out:
        daemon = subprocess.Popen([*argv, str(mountpoint)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while os.stat(mountpoint).st_dev == os.stat(work).st_dev:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mount failed, see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield mountpoint, daemon.pid
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        daemon.wait(timeout=60)


# -- workloads ---------------------------------------------------------------------------------------
def create_latency_ms(directory: Path, count: int) -> float:
    directory.mkdir()
    names = iter(range(count))

    def create() -> None:
        os.close(os.open(directory / f"f{next(names)}", os.O_CREAT | os.O_WRONLY, 0o644))

    return _median_ms(_timed(create, count))


def stat_latency_ms(directory: Path, count: int) -> float:
    names = iter(range(count))
    return _median_ms(_timed(lambda: os.stat(directory / f"f{next(names)}"), count))


def _create_files(directory: str, count: int, payload: bytes) -> None:
    os.mkdir(directory)
    for i in range(count):
        fd = os.open(os.path.join(directory, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            if payload:
                os.write(fd, payload)
        finally:
            os.close(fd)


def files_per_s(base: Path, processes: int, count: int, payload: bytes) -> float:
    """Files made per second by ``processes`` processes making ``count`` files each in its own dir."""
    base.mkdir()
    dirs = [str(base / f"p{n}") for n in range(processes)]
    workers = [multiprocessing.Process(target=_create_files, args=(d, count, payload)) for d in dirs]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if any(worker.exitcode for worker in workers):
        raise SystemExit("a worker process failed")
    return processes * count / elapsed


def tar_seconds(mountpoint: Path, tarball: Path) -> float:
    target = mountpoint / f"tar-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    start = time.perf_counter()
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(target)], check=True)
    return time.perf_counter() - start


# -- the run -----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="a FoundationDB store URL (default: the emulated embedded store)")
    parser.add_argument("--latency", default=DEFAULT_LATENCY, help="READ_MS,COMMIT_MS for the emulation")
    parser.add_argument("--files", type=int, default=300, help="files per latency phase and per process")
    parser.add_argument("--no-tar", action="store_true", help="skip tar -x (the slowest phase)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (mounts, and the mount's kernel settings)")
    work = Path(tempfile.mkdtemp(prefix="fusefs-latency-", dir="/var/tmp"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    name = f"latency-{uuid.uuid4().hex[:8]}"
    if args.store:
        store_url, options, label = args.store, [], args.store
    else:
        store_url, options = f"sqlite://{work / 'meta.db'}", ["shared"]
        env[LATENCY_ENV] = args.latency
        label = f"embedded store, shared mode, emulated latency {args.latency} ms (read, commit)"
    (work / "blocks").mkdir()
    _fusefs("mkfs", "--store", store_url, "--blocks", str(work / "blocks"), name, env=env)
    rows: list[tuple[str, str, str, bool | None]] = []
    with mounted(store_url, name, options, env, work) as (mp, daemon):
        # The floor through the same store and emulation as the mounts, from this process.
        store = open_store(store_url, shared=True, emulation=StoreEmulation.from_env(env))
        try:
            read_ms, write_ms = floor_ms(store)
        finally:
            store.close()
        rows.append(("read transaction (floor)", f"{read_ms:.2f} ms", "", None))
        rows.append(("read+write transaction (floor)", f"{write_ms:.2f} ms", "", None))
        create_ms = create_latency_ms(mp / "latency", args.files)
        rows.append(("create", f"{create_ms:.2f} ms", f"<= {1.3 * write_ms:.2f}", create_ms <= 1.3 * write_ms))
        with mounted(store_url, name, [*options, "strict"], env, work) as (strict_mp, _):
            stat_ms = stat_latency_ms(strict_mp / "latency", args.files)
            # Names made by the other mount while this one follows the change log: hints from its records.
            _create_files(str(mp / "logged"), args.files, b"")
            time.sleep(LOG_FOLLOW_S)
            logged_stat_ms = stat_latency_ms(strict_mp / "logged", args.files)
        rows.append(("stat, uncached", f"{stat_ms:.2f} ms", f"<= {2.6 * read_ms:.2f}", stat_ms <= 2.6 * read_ms))
        rows.append(("stat, uncached, names logged while mounted", f"{logged_stat_ms:.2f} ms", "", None))
        for label_, payload in (("creates", b""), ("4 KiB files written", os.urandom(4096))):
            cpu_before = daemon_cpu_s(daemon)
            one = files_per_s(mp / f"one-{len(payload)}", 1, args.files, payload)
            cpu_one_us = (daemon_cpu_s(daemon) - cpu_before) / args.files * 1e6
            cpu_before = daemon_cpu_s(daemon)
            many = files_per_s(mp / f"many-{len(payload)}", PROCESSES, args.files, payload)
            cpu_many_us = (daemon_cpu_s(daemon) - cpu_before) / (PROCESSES * args.files) * 1e6
            one_row = f"{one:.0f}/s, daemon CPU {cpu_one_us:.0f} µs each"
            rows.append((f"{label_}, 1 process", one_row, "", None))
            rows.append(
                (
                    f"{label_}, {PROCESSES} processes",
                    f"{many:.0f}/s = {many / one:.1f} x, daemon CPU {cpu_many_us:.0f} µs each",
                    ">= 5 x",
                    many >= 5 * one,
                )
            )
        if not args.no_tar:
            tarball, _ = source_tarball(Path.home() / ".cache" / "fusefs-bench", "quick")
            shared_s = tar_seconds(mp, tarball)
    if not args.no_tar:
        local_name = f"{name}-sole"
        sole_env = {k: v for k, v in env.items() if k != LATENCY_ENV}
        sole_store = f"sqlite://{work / 'sole.db'}"
        (work / "sole-blocks").mkdir()
        _fusefs("mkfs", "--store", sole_store, "--blocks", str(work / "sole-blocks"), local_name, env=sole_env)
        with mounted(sole_store, local_name, [], sole_env, work) as (sole_mp, _):
            sole_s = tar_seconds(sole_mp, tarball)
        ok = shared_s <= 3 * sole_s
        rows.append(("tar -x", f"{shared_s:.2f} s vs {sole_s:.2f} s embedded", "<= 3 x", ok))
    print(f"\n{label}\n")
    print("| measure | result | target | met |\n|---|---:|---:|:-:|")
    for measure, result, target, met in rows:
        print(f"| {measure} | {result} | {target} | {'' if met is None else 'yes' if met else 'no'} |")
    subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
