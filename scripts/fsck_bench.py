"""Speed of ``fusefs fsck`` and ``fusefs dump`` on the embedded store: inodes checked (dumped) per second.

Builds a filesystem of ``--inodes`` inodes (directories of 1000 small inline files and symlinks, every
tenth file with an xattr) through the store API, not FUSE, then times the metadata check
(metadata/fsck.py) and a dump to /dev/null.  Usage:

    python scripts/fsck_bench.py [--inodes 100000] [--dir /tmp/fsck-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metadata import filedata, fsck  # noqa: E402
from metadata.dump import dump  # noqa: E402
from metadata.model import ROOT_CALLER, ROOT_INODE, FsConfig, new_fs_id  # noqa: E402
from metadata.namespace import Namespace, format_filesystem  # noqa: E402
from metadata.sqlite_store import SqliteStore  # noqa: E402

PER_DIR = 1000
PER_TRANSACTION = 500


def build(store: SqliteStore, config: FsConfig, inodes: int) -> None:
    ns = Namespace(config)
    first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", inodes))
    ino, directory = first, ROOT_INODE
    remaining = inodes - 1  # the root exists
    while remaining > 0:
        count = min(PER_TRANSACTION, remaining)

        def batch(tr, start=ino, count=count, parent=directory):  # type: ignore[no-untyped-def]
            for number in range(start, start + count):
                if (number - first) % PER_DIR == 0:
                    ns.create(
                        tr, ROOT_INODE, f"d{number}".encode(), number, stat.S_IFDIR | 0o755, ROOT_CALLER
                    )
                    parent = number
                elif number % 7 == 0:
                    ns.create(
                        tr,
                        parent,
                        f"l{number}".encode(),
                        number,
                        stat.S_IFLNK | 0o777,
                        ROOT_CALLER,
                        target=b"target",
                    )
                else:
                    ns.create(tr, parent, f"f{number}".encode(), number, stat.S_IFREG | 0o644, ROOT_CALLER)
                    filedata.write_inline(tr, ns.keys, number, b"x" * 100)
                    attr = ns.attr_for_update(tr, number)
                    attr.size = 100
                    ns.count_bytes(tr, number, 100)
                    tr.set(ns.keys.attr(number), attr.encode())
                    if number % 10 == 0:
                        ns.setxattr(tr, number, b"user.tag", b"value", ROOT_CALLER)
            return parent

        directory = store.transact(batch)
        ino += count
        remaining -= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inodes", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="fsck-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        store = SqliteStore(os.path.join(work, "meta.db"), create=True)
        config = FsConfig(name="bench", block_dirs=[os.path.join(work, "blocks")], fs_id=new_fs_id())
        format_filesystem(store, config)
        started = time.perf_counter()
        build(store, config, args.inodes)
        print(f"built {args.inodes} inodes in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        result = fsck.check(store, config)
        took = time.perf_counter() - started
        assert result.inode_count == args.inodes, result.inode_count
        assert not result.findings, [finding.text for finding in result.findings[:5]]
        print(f"fsck: {args.inodes} inodes in {took:.2f} s = {args.inodes / took:,.0f} inodes/s (clean)")

        started = time.perf_counter()
        lines = 0
        with open(os.devnull, "w") as out:
            for line in dump(store, "bench"):
                out.write(line + "\n")
                lines += 1
        took = time.perf_counter() - started
        print(
            f"dump: {args.inodes} inodes ({lines} lines) in {took:.2f} s = {args.inodes / took:,.0f} inodes/s"
        )
        store.close()
    finally:
        if args.dir is None:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
