"""A writer for the crash tests: writes stamped 4 KiB blocks to files under a mountpoint until killed.

Every block carries (file id, block index, generation) and a body derived from them, so a reader can tell
a block some write produced from garbage.  Before writing generation G of a file the writer appends
``begin NAME G`` to a journal on the local disk, and after fsync(2) returns ``fsync NAME G``: the crash
test then knows which generations each block may hold.

Files: ``fixed-*`` keep a fixed number of blocks and are rewritten whole, generation after generation
(in random order, sometimes in runs of several blocks per write); ``grow-*`` get appends and truncates
(down and up), so their size moves across the inline limit and chunk boundaries.

Usage: ``python crash_writer.py MOUNTPOINT JOURNAL SEED FIRST_GENERATION``; prints ``ready`` once every
file exists and is fsynced.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import sys

BLOCK = 4096
MAGIC = b"fusefsBK"
HEADER = struct.Struct("<8sIIQ")
#: name → (file id, blocks); sizes chosen for --inline-max 8192 --chunk-size 65536: inline, at the inline
#: limit, across the inline limit and one chunk boundary, many chunks.
FIXED = {"fixed-1": (1, 1), "fixed-2": (2, 2), "fixed-20": (3, 20), "fixed-300": (4, 300)}
GROWING = {"grow-a": (10, 0), "grow-b": (11, 0)}
MAX_GROW_BLOCKS = 200


def block(file_id: int, index: int, generation: int) -> bytes:
    header = HEADER.pack(MAGIC, file_id, index, generation)
    seed = hashlib.blake2b(header, digest_size=64).digest()
    body = (seed * (BLOCK // len(seed) + 1))[: BLOCK - len(header)]
    return header + body


def parse_block(data: bytes) -> tuple[int, int, int] | None:
    """(file id, index, generation) of a valid stamped block, None for all zeros; ValueError otherwise."""
    if data == bytes(BLOCK):
        return None
    if len(data) != BLOCK:
        raise ValueError(f"block of {len(data)} bytes")
    magic, file_id, index, generation = HEADER.unpack_from(data)
    if magic != MAGIC or data != block(file_id, index, generation):
        raise ValueError(f"garbage block (header {data[:HEADER.size]!r})")
    return file_id, index, generation


class Writer:
    def __init__(self, root: str, journal: str, seed: int, generation: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.generation = generation
        self.journal = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fds: dict[str, int] = {}
        self.grow_blocks: dict[str, int] = {}

    def note(self, line: str) -> None:
        os.write(self.journal, (line + "\n").encode())

    def fd(self, name: str) -> int:
        if name not in self.fds:
            self.fds[name] = os.open(os.path.join(self.root, name), os.O_RDWR | os.O_CREAT, 0o644)
        return self.fds[name]

    def close(self, name: str) -> None:
        fd = self.fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def fsync(self, name: str, generation: int) -> None:
        os.fsync(self.fd(name))
        self.note(f"fsync {name} {generation}")

    def begin(self, name: str) -> tuple[int, int]:
        """The next generation, journaled before any of its writes; and the file's descriptor."""
        self.generation += 1
        self.note(f"begin {name} {self.generation}")
        return self.generation, self.fd(name)

    def end(self, name: str, generation: int, fsync_share: float, close_share: float) -> None:
        choice = self.rng.random()
        if choice < fsync_share:
            self.fsync(name, generation)
        elif choice < fsync_share + close_share:
            self.close(name)

    def rewrite(self, name: str) -> None:
        file_id, count = FIXED[name]
        generation, fd = self.begin(name)
        order = list(range(count))
        self.rng.shuffle(order)
        position = 0
        while position < len(order):
            if self.rng.random() < 0.3:  # a run of consecutive blocks in one write
                start = order[position]
                run = self.rng.randint(1, 16)
                indexes = list(range(start, min(start + run, count)))
                done = set(indexes)
                order[position + 1:] = [i for i in order[position + 1:] if i not in done]
                data = b"".join(block(file_id, i, generation) for i in indexes)
                os.pwrite(fd, data, start * BLOCK)
            else:
                index = order[position]
                os.pwrite(fd, block(file_id, index, generation), index * BLOCK)
            position += 1
        self.end(name, generation, 0.3, 0.3)

    def grow(self, name: str) -> None:
        file_id, _ = GROWING[name]
        generation, fd = self.begin(name)
        blocks = self.grow_blocks.get(name, os.fstat(fd).st_size // BLOCK)
        choice = self.rng.random()
        if blocks < MAX_GROW_BLOCKS and (choice < 0.6 or blocks == 0):  # append
            count = min(self.rng.randint(1, 24), MAX_GROW_BLOCKS - blocks)
            os.pwrite(fd, b"".join(block(file_id, blocks + i, generation) for i in range(count)), blocks * BLOCK)
            blocks += count
        elif choice < 0.85 or blocks >= MAX_GROW_BLOCKS:  # truncate down
            blocks = self.rng.randint(0, blocks)
            os.ftruncate(fd, blocks * BLOCK)
        else:  # truncate up: a hole of zeros
            blocks = min(MAX_GROW_BLOCKS, blocks + self.rng.randint(1, 20))
            os.ftruncate(fd, blocks * BLOCK)
        self.grow_blocks[name] = blocks
        self.end(name, generation, 0.2, 0.3)

    def setup(self) -> None:
        self.generation += 1
        for name, (file_id, count) in FIXED.items():
            self.note(f"begin {name} {self.generation}")
            fd = self.fd(name)
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"".join(block(file_id, i, self.generation) for i in range(count)), 0)
            self.fsync(name, self.generation)
        for name in GROWING:
            self.fsync(name, self.generation)
        dir_fd = os.open(self.root, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)

    def run(self) -> None:
        self.setup()
        print("ready", flush=True)
        names = list(FIXED) + list(GROWING)
        while True:
            name = self.rng.choice(names)
            if name in FIXED:
                self.rewrite(name)
            else:
                self.grow(name)


def main() -> None:
    root, journal, seed, generation = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    try:
        Writer(root, journal, seed, generation).run()
    except OSError as error:  # the daemon was killed under us
        print(f"writer stopped: {error}", flush=True)


if __name__ == "__main__":
    main()
