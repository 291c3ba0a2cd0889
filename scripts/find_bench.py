"""Speed of ``fusefs find``'s indexes: queries on a large filesystem beside GNU tools on the mount, and the
cost the indexes add to create and setxattr.

``query`` builds a filesystem of ``--inodes`` inodes through the store API (not FUSE): 20 top directories
of 10 subdirectories of files named ``f<n>.parquet``, ``.csv`` or ``.json``, each file with the xattr
``user.meta={"batch": <n % (files / 100)>}`` (so one value names 100 files).  The directories are made by
the namespace's create; the files are written as records of a ``fusefs dump`` and loaded by ``fusefs
load``'s code, a thousand records a transaction, which then derives the search indexes from the entries
and xattrs as ``fusefs index enable`` does (1 000 000 inodes: minutes, not the hour a create per file
takes).  It times, best of five, an exact xattr-value query and a JSON-field query (100 files each) and
``*.parquet`` under a subdirectory and under a top directory (metadata/find.py, one transaction each),
paths only and with attributes, counts the store rounds each takes, then mounts the filesystem and
times the same questions asked of the mount with GNU ``find -name`` and ``getfattr -R``.

``throughput`` creates files and sets a JSON xattr on each, in transactions of one operation like the
daemon's, on two filesystems of one store, one without search indexes and one with them, in
alternating rounds, and prints operations per second of each and their ratio; with ``--mount``, through
two mounts with syscalls, as a program sees it.  Usage:

    python scripts/find_bench.py query [--inodes 200000] [--dir /tmp/find-bench] [--no-mount] [--reuse]
    python scripts/find_bench.py throughput [--count 5000] [--rounds 5] [--mount]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metadata.dump import dump, load  # noqa: E402
from metadata.emulation import StoreEmulation  # noqa: E402
from metadata.find import Query, find, parse_json_condition  # noqa: E402
from metadata.keys import FsKeys  # noqa: E402
from metadata.model import ROOT_CALLER, ROOT_INODE, FsConfig, InodeAttr, InodeId, new_fs_id  # noqa: E402
from metadata.namespace import Namespace, format_filesystem, load_config  # noqa: E402
from metadata.sqlite_store import SqliteStore  # noqa: E402
from metadata.store import Transaction  # noqa: E402

TOPS, SUBDIRS = 20, 10
EXTENSIONS = (".parquet", ".csv", ".json")
# The fusefs of this checkout (or of PYTHONPATH).
FUSEFS = [sys.executable, "-c", "import sys; from fusefs.cli import main; sys.exit(main())"]
os.environ.setdefault("PYTHONPATH", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(work: str, db: str, inodes: int) -> int:
    """The tree described above, as filesystem ``bench`` in store ``db``; returns how many files it holds.

    The directories are made by ``mkfs`` and the namespace's create in a scratch store.  That filesystem
    is dumped, the files are added to the dump as records (an inode, an entry and an xattr each), and the
    whole is loaded by ``fusefs load``'s code (metadata/dump.py): 1 000 records a transaction, then the
    indexes derived from the entries and xattrs as ``fusefs index enable`` does (metadata/index.py's
    ``build``, from the functions that also give the namespace transactions their index records)."""
    scratch = os.path.join(work, "scratch.db")
    blocks = os.path.join(work, "blocks")
    os.makedirs(blocks, exist_ok=True)
    # Made by mkfs, so that its block directory carries the marker a mount checks.
    subprocess.run(
        [*FUSEFS, "mkfs", "--store", f"sqlite://{scratch}", "--blocks", blocks, "--search-index", "bench"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    store = SqliteStore(scratch)
    ns = Namespace(load_config(store, "bench"))
    first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", inodes))
    leaves = store.transact(lambda tr: _make_dirs(tr, ns, first))
    directories = list(dump(store, "bench"))
    store.close()
    os.remove(scratch)
    files = inodes - 1 - TOPS * (1 + SUBDIRS)
    store = SqliteStore(db)
    load(store, "bench", _with_files(directories, leaves, first + TOPS * (1 + SUBDIRS), files))
    store.close()
    return files


def _make_dirs(tr: Transaction, ns: Namespace, first: int) -> list[int]:
    """The top directories and their subdirectories, with inodes from ``first``; returns the latter."""
    leaves = []
    for top in range(TOPS):
        top_ino = first + top * (1 + SUBDIRS)
        ns.create(tr, ROOT_INODE, f"t{top}".encode(), top_ino, stat.S_IFDIR | 0o755, ROOT_CALLER)
        for sub in range(SUBDIRS):
            ino = top_ino + 1 + sub
            ns.create(tr, top_ino, f"s{sub}".encode(), ino, stat.S_IFDIR | 0o755, ROOT_CALLER)
            leaves.append(ino)
    return leaves


def _with_files(lines: list[str], leaves: list[int], first: int, files: int) -> Iterator[str]:
    """Dump ``lines`` with ``files`` empty files (inodes from ``first``) spread over ``leaves``, each
    with its ``user.meta`` xattr; their inode counter counts them, their end record all records."""
    header, *records, _ = lines
    yield header
    # fsck and statvfs sum a counter's shards: the dump's inode counts become one shard holding the files.
    inodes, kept = files, 0
    for line in records:
        record = json.loads(line)
        if record["t"] == "counter" and record["name"] == "inodes":
            inodes += record["value"]
        else:
            kept += 1
            yield line
    yield json.dumps({"t": "counter", "name": "inodes", "shard": 0, "value": inodes})
    now = time.time_ns()
    file = InodeAttr(InodeId(0), stat.S_IFREG | 0o644, 1, 0, 0, atime_ns=now, mtime_ns=now, ctime_ns=now)
    attr = asdict(file)
    del attr["ino"]
    attr["target"] = ""
    batches = max(1, files // 100)
    xattr_name = _b64(b"user.meta")
    for n in range(files):
        ino = first + n
        yield json.dumps({"t": "inode", "ino": ino, "attr": attr})
        name = _b64(f"f{n}{EXTENSIONS[n % 3]}".encode())
        parent = leaves[n % len(leaves)]
        yield json.dumps({"t": "entry", "parent": parent, "name": name, "ino": ino, "type": stat.S_IFREG})
        value = _b64(json.dumps({"batch": n % batches}).encode())
        yield json.dumps({"t": "xattr", "ino": ino, "name": xattr_name, "value": value})
    yield json.dumps({"t": "end", "records": kept + 1 + 3 * files})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def best_of(runs: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


#: The value the files of one batch share (100 of them).
BATCH_VALUE = json.dumps({"batch": 13}).encode()


def questions() -> dict[str, Query]:
    xattr = f"xattr user.meta={BATCH_VALUE.decode()}"
    return {
        xattr: Query(xattrs=[(b"user.meta", BATCH_VALUE)]),
        "JSON field meta.batch = 13": Query(json_fields=[parse_json_condition("meta.batch = 13")]),
        f"{xattr} under /t3": Query(xattrs=[(b"user.meta", BATCH_VALUE)], under=b"/t3"),
        "*.parquet under /t3/s0": Query(name_glob=b"*.parquet", under=b"/t3/s0", limit=10**6),
        "*.parquet under /t3": Query(name_glob=b"*.parquet", under=b"/t3", limit=10**6),
    }


def query(args: argparse.Namespace) -> None:
    work = args.dir or tempfile.mkdtemp(prefix="find-bench-")
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "meta.db")
    if not args.reuse:
        for old in (db, os.path.join(work, "scratch.db")):
            if os.path.exists(old):
                os.remove(old)
        began = time.perf_counter()
        files = build(work, db, args.inodes)
        print(f"built {args.inodes} inodes ({files} files) in {time.perf_counter() - began:.1f} s")
    ask(db)
    if not args.no_mount:
        mount_and_compare(work, db)
    if not args.dir:
        shutil.rmtree(work)


def ask(db: str) -> None:
    """Each question, best of five: paths only (``fusefs find``'s output) and with attributes
    (``--json``), and the store rounds it takes (on FoundationDB, a network round trip each)."""
    keys = FsKeys("bench")
    timed = {}
    store = SqliteStore(db)
    for label, question in questions().items():
        with_attributes = dataclasses.replace(question, attributes=True)
        seconds, found = best_of(5, lambda q=question: store.transact(lambda tr: find(tr, keys, q)))
        attributed, _ = best_of(5, lambda q=with_attributes: store.transact(lambda tr: find(tr, keys, q)))
        timed[label] = (len(found.matches), seconds, attributed)  # type: ignore[attr-defined]
    store.close()
    # Rounds counted by the embedded store's latency emulation: each stands for a FoundationDB round trip.
    counted = SqliteStore(db, emulation=StoreEmulation(read_delay_s=1e-6))
    for label, question in questions().items():
        count, seconds, attributed = timed[label]
        before = counted.emulated_read_rounds
        counted.transact(lambda tr, q=question: find(tr, keys, q))
        print(
            f"fusefs find {label}: {count} files in {seconds * 1000:.1f} ms ({attributed * 1000:.1f} ms "
            f"with attributes; {counted.emulated_read_rounds - before} store rounds)"
        )
    counted.close()


def mount_and_compare(work: str, db: str) -> None:
    """GNU tools asked the same questions of the mount: ``find -name`` under the directory, and
    ``getfattr -R`` (whose walk reads every file's xattr) under /t3 only: over the whole mount it takes
    about 20 times as long."""
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([*FUSEFS, "mount", "--store", f"sqlite://{db}", "--name", "bench", mnt], check=True)
    try:
        wanted = f"user.meta=0x{BATCH_VALUE.hex()}"
        commands = {
            "*.parquet under /t3/s0": ["find", os.path.join(mnt, "t3", "s0"), "-name", "*.parquet"],
            "*.parquet under /t3": ["find", os.path.join(mnt, "t3"), "-name", "*.parquet"],
            f"xattr user.meta={BATCH_VALUE.decode()} under /t3": [
                "getfattr", "-R", "--absolute-names", "-e", "hex", "-n", "user.meta", os.path.join(mnt, "t3")
            ],
        }
        for label, command in commands.items():
            runs = 1 if command[0] == "getfattr" else 3  # a walk reading every file's xattr: minutes
            seconds, out = best_of(
                runs, lambda c=command: subprocess.run(c, capture_output=True, text=True).stdout
            )
            lines = str(out).splitlines()
            count = sum(1 for line in lines if line == wanted) if command[0] == "getfattr" else len(lines)
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
    query_text, throughput_text = __doc__.split("\n\n")[1:3]
    q = sub.add_parser("query", help="queries on a large filesystem", description=query_text)
    q.add_argument("--inodes", type=int, default=200_000, help="inodes to build (default: 200000)")
    q.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed)")
    q.add_argument("--no-mount", action="store_true", help="skip the GNU tools on the mount")
    q.add_argument(
        "--reuse", action="store_true", help="ask the filesystem an earlier run left in --dir (no build)"
    )
    t = sub.add_parser("throughput", help="create and setxattr rates", description=throughput_text)
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
