"""Speed of ``fusefs find``'s indexes: queries on a large filesystem beside GNU tools on the mount, and the
cost the indexes add to create and setxattr.

``query`` builds a filesystem of ``--inodes`` inodes through the store API (not FUSE): 20 top directories
of 10 subdirectories of files named ``f<n>.parquet``, ``.csv`` or ``.json``, each file with
``user.batch=b<n % (files / 100)>`` (so one value names 100 files).  It times, best of three, an exact
xattr-value query (100 files) and an extension query under one top directory (metadata/find.py, one
transaction each), then mounts the filesystem and times the same questions asked of the mount: GNU
``find -name`` under the directory and ``getfattr -R`` over the mount.

``throughput`` creates files and sets a JSON xattr on each, in transactions of one operation like the
daemon's, on two filesystems of one store, one without search indexes and one with them, in
alternating rounds, and prints operations per second of each and their ratio; with ``--mount``, through
two mounts with syscalls, as a program sees it.  Usage:

    python scripts/find_bench.py query [--inodes 200000] [--dir /tmp/find-bench] [--no-mount]
    python scripts/find_bench.py throughput [--count 5000] [--rounds 5] [--mount]
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metadata.model import ROOT_CALLER, ROOT_INODE, FsConfig, new_fs_id  # noqa: E402
from metadata.namespace import Namespace, format_filesystem, load_config  # noqa: E402
from metadata.sqlite_store import SqliteStore  # noqa: E402

TOPS, SUBDIRS = 20, 10
PER_TRANSACTION = 500
EXTENSIONS = (".parquet", ".csv", ".json")
# The fusefs of this checkout (or of PYTHONPATH).
FUSEFS = [sys.executable, "-c", "import sys; from fusefs.cli import main; sys.exit(main())"]
os.environ.setdefault("PYTHONPATH", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(store: SqliteStore, ns: Namespace, inodes: int) -> int:
    """The tree described above; returns how many files it holds."""
    dirs = TOPS * (1 + SUBDIRS)
    files = inodes - 1 - dirs
    first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", inodes))

    def make_dirs(tr):  # type: ignore[no-untyped-def]
        leaves = []
        for top in range(TOPS):
            top_ino = first + top * (1 + SUBDIRS)
            ns.create(tr, ROOT_INODE, f"t{top}".encode(), top_ino, stat.S_IFDIR | 0o755, ROOT_CALLER)
            for sub in range(SUBDIRS):
                ino = top_ino + 1 + sub
                ns.create(tr, top_ino, f"s{sub}".encode(), ino, stat.S_IFDIR | 0o755, ROOT_CALLER)
                leaves.append(ino)
        return leaves

    leaves = store.transact(make_dirs)
    batches = files // 100
    for start in range(0, files, PER_TRANSACTION):

        def batch(tr, start=start):  # type: ignore[no-untyped-def]
            for n in range(start, min(start + PER_TRANSACTION, files)):
                ino = first + dirs + n
                name = f"f{n}{EXTENSIONS[n % 3]}".encode()
                ns.create(tr, leaves[n % len(leaves)], name, ino, stat.S_IFREG | 0o644, ROOT_CALLER)
                ns.setxattr(tr, ino, b"user.batch", f"b{n % batches}".encode(), ROOT_CALLER)

        store.transact(batch)
    return files


def best_of(runs: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def query(args: argparse.Namespace) -> None:
    from metadata.find import Query, find

    work = args.dir or tempfile.mkdtemp(prefix="find-bench-")
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "meta.db")
    if os.path.exists(db):
        os.remove(db)
    # Made by mkfs, so that its block directory carries the marker a mount checks.
    blocks = os.path.join(work, "blocks")
    os.makedirs(blocks, exist_ok=True)
    subprocess.run(
        [*FUSEFS, "mkfs", "--store", f"sqlite://{db}", "--blocks", blocks, "--search-index", "bench"],
        check=True,
    )
    store = SqliteStore(db)
    ns = Namespace(load_config(store, "bench"))
    began = time.perf_counter()
    files = build(store, ns, args.inodes)
    print(f"built {args.inodes} inodes ({files} files) in {time.perf_counter() - began:.1f} s")
    questions = {
        "xattr user.batch=b7": Query(xattrs=[(b"user.batch", b"b7")]),
        "*.parquet under /t3": Query(name_glob=b"*.parquet", under=b"/t3", limit=10**6),
        "*.parquet under /t3/s0": Query(name_glob=b"*.parquet", under=b"/t3/s0", limit=10**6),
    }
    for label, question in questions.items():
        seconds, found = best_of(3, lambda q=question: store.transact(lambda tr: find(tr, ns.keys, q)))
        print(f"fusefs find {label}: {len(found.matches)} files in {seconds * 1000:.1f} ms")  # type: ignore[attr-defined]
    store.close()
    if not args.no_mount:
        mount_and_compare(work, db)
    if not args.dir:
        shutil.rmtree(work)


def mount_and_compare(work: str, db: str) -> None:
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([*FUSEFS, "mount", "--store", f"sqlite://{db}", "--name", "bench", mnt], check=True)
    try:
        commands = {
            "*.parquet under /t3": ["find", os.path.join(mnt, "t3"), "-name", "*.parquet"],
            "*.parquet under /t3/s0": ["find", os.path.join(mnt, "t3", "s0"), "-name", "*.parquet"],
            "xattr user.batch=b7": ["getfattr", "-R", "--absolute-names", "-n", "user.batch", mnt],
        }
        for label, command in commands.items():
            runs = 1 if label.startswith("xattr") else 3  # a walk of the whole mount: minutes
            seconds, out = best_of(
                runs, lambda c=command: subprocess.run(c, capture_output=True, text=True).stdout
            )
            lines = str(out).splitlines()
            if label.startswith("xattr"):
                count = sum(1 for line in lines if line == 'user.batch="b7"')
            else:
                count = len(lines)
            print(f"GNU {command[0]} {label}: {count} files in {seconds * 1000:.1f} ms")
    finally:
        subprocess.run([*FUSEFS, "umount", mnt], check=True)


def throughput(args: argparse.Namespace) -> None:
    """Creates and setxattrs on two filesystems of one store, without and with the search indexes, in
    alternating rounds (so that a loaded machine weighs on both alike); the medians and their ratio."""
    work = tempfile.mkdtemp(prefix="find-throughput-")
    try:
        store = SqliteStore(os.path.join(work, "meta.db"))
        rates: dict[bool, dict[str, list[float]]] = {}
        namespaces = {}
        for indexed in (False, True):
            config = FsConfig(f"bench-{indexed}", fs_id=new_fs_id(), search_index=indexed)
            format_filesystem(store, config)
            namespaces[indexed] = Namespace(config)
            rates[indexed] = {"create": [], "setxattr": []}
        for round_ in range(args.rounds):
            for indexed, ns in namespaces.items():
                created, set_ = _create_and_setxattr(store, ns, args.count, f"r{round_}")
                rates[indexed]["create"].append(created)
                rates[indexed]["setxattr"].append(set_)
        store.close()
    finally:
        shutil.rmtree(work)
    _print_rates(rates, args, "store API")


def _print_rates(rates: dict[bool, dict[str, list[float]]], args: argparse.Namespace, how: str) -> None:
    for what in ("create", "setxattr"):
        off, on = (statistics.median(rates[indexed][what]) for indexed in (False, True))
        print(
            f"{what}: {off:,.0f}/s without indexes, {on:,.0f}/s with, ratio {on / off:.2f} "
            f"(median of {args.rounds} rounds of {args.count}, {how})"
        )


def _create_and_setxattr(
    store: SqliteStore, ns: Namespace, count: int, directory: str
) -> tuple[float, float]:
    """Operations per second: ``count`` creates in a new directory, then a JSON setxattr on each; one
    transaction per operation, like the daemon's."""
    top = store.transact(lambda tr: ns.reserve_ids(tr, "inode", count + 1))
    store.transact(
        lambda tr: ns.create(tr, ROOT_INODE, directory.encode(), top, stat.S_IFDIR | 0o755, ROOT_CALLER)
    )
    first = top + 1
    began = time.perf_counter()
    for n in range(count):
        name = f"f{n}.parquet".encode()
        store.transact(
            lambda tr, n=n, name=name: ns.create(tr, top, name, first + n, 0o100644, ROOT_CALLER)
        )
    created = count / (time.perf_counter() - began)
    began = time.perf_counter()
    for n in range(count):
        value = b'{"lr": %d, "team": "vision"}' % n
        store.transact(
            lambda tr, n=n, value=value: ns.setxattr(tr, first + n, b"user.exp", value, ROOT_CALLER)
        )
    return created, count / (time.perf_counter() - began)


def mount_throughput(args: argparse.Namespace) -> None:
    """The same through two mounts (without and with the indexes), with real syscalls: a create is an
    ``open(O_CREAT)`` and a ``close``, a setxattr one ``os.setxattr``."""
    from provenance_bench import FUSEFS as fusefs
    from provenance_bench import mount

    work = tempfile.mkdtemp(prefix="find-mount-throughput-")
    mounts = {False: mount(work, "off", []), True: mount(work, "on", [], ("--search-index",))}
    rates: dict[bool, dict[str, list[float]]] = {
        indexed: {"create": [], "setxattr": []} for indexed in mounts
    }
    try:
        for round_ in range(args.rounds):
            for indexed, mountpoint in mounts.items():
                directory = os.path.join(mountpoint, f"r{round_}")
                os.mkdir(directory)
                paths = [os.path.join(directory, f"f{n}.parquet") for n in range(args.count)]
                began = time.perf_counter()
                for path in paths:
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
                rates[indexed]["create"].append(args.count / (time.perf_counter() - began))
                began = time.perf_counter()
                for n, path in enumerate(paths):
                    os.setxattr(path, "user.exp", b'{"lr": %d, "team": "vision"}' % n)
                rates[indexed]["setxattr"].append(args.count / (time.perf_counter() - began))
    finally:
        for mountpoint in mounts.values():
            subprocess.run([*fusefs, "umount", mountpoint], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    _print_rates(rates, args, "through mounts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("query")
    q.add_argument("--inodes", type=int, default=200_000)
    q.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed)")
    q.add_argument("--no-mount", action="store_true", help="skip the GNU tools on the mount")
    t = sub.add_parser("throughput")
    t.add_argument("--count", type=int, default=5000)
    t.add_argument("--rounds", type=int, default=5)
    t.add_argument("--mount", action="store_true", help="through two mounts, with syscalls")
    args = parser.parse_args()
    if args.what == "query":
        query(args)
    else:
        (mount_throughput if args.mount else throughput)(args)


if __name__ == "__main__":
    main()
