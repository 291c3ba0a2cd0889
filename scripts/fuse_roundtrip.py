"""The cost of one FUSE round trip, with pyfuse3's stock wait for requests and with fusefs's polling wait.

    python scripts/fuse_roundtrip.py [--count N]

Mounts a one-file pyfuse3 filesystem that answers getattr from memory with an attribute timeout of 0
(so every stat(2) is a request), once per wait, in a child process, and times N stats of its file.
What it shows is the part of every fusefs operation that is neither fusefs nor the store: the kernel,
libfuse, pyfuse3 and trio, and how much of it is waking a sleeping daemon (fusefs/fuseloop.py).
Needs /dev/fuse (root, or fusermount3).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import subprocess
import sys
import tempfile
import time

WAITS = ("stock", "polling")


def serve(mountpoint: str, wait: str) -> None:
    import pyfuse3
    import trio

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from fusefs import fuseloop

    class OneFile(pyfuse3.Operations):
        def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = ino
            attr.st_mode = (stat.S_IFDIR | 0o755) if ino == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o644)
            attr.st_nlink = 1
            attr.attr_timeout = 0
            attr.entry_timeout = 300
            return attr

        async def getattr(
            self, inode: int, ctx: pyfuse3.RequestContext | None = None
        ) -> pyfuse3.EntryAttributes:
            return self._attr(inode)

        async def lookup(
            self, parent: int, name: bytes, ctx: pyfuse3.RequestContext
        ) -> pyfuse3.EntryAttributes:
            if parent == pyfuse3.ROOT_INODE and name == b"f":
                return self._attr(pyfuse3.ROOT_INODE + 1)
            raise pyfuse3.FUSEError(errno.ENOENT)

    pyfuse3.init(OneFile(), mountpoint, {"fsname=roundtrip"})
    if wait == "polling":
        fuseloop.install()
    try:
        trio.run(pyfuse3.main, 8, 256)
    finally:
        pyfuse3.close()


def measure(wait: str, count: int) -> float:
    with tempfile.TemporaryDirectory() as mountpoint:
        server = subprocess.Popen([sys.executable, __file__, "--serve", mountpoint, wait])
        try:
            deadline = time.monotonic() + 10
            while not os.path.ismount(mountpoint):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {wait} server did not mount")
                time.sleep(0.05)
            path = os.path.join(mountpoint, "f")
            os.stat(path)
            start = time.perf_counter()
            for _ in range(count):
                os.stat(path)
            return (time.perf_counter() - start) / count
        finally:
            subprocess.run(["fusermount3", "-u", mountpoint], check=False)
            server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20000, help="stats per wait (default 20000)")
    parser.add_argument("--serve", nargs=2, metavar=("MOUNTPOINT", "WAIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    for wait in WAITS:
        seconds = measure(wait, args.count)
        print(f"{wait:8s} wait: {seconds * 1e6:6.1f} µs per getattr round trip ({1 / seconds:,.0f}/s)")


if __name__ == "__main__":
    main()
