#!/usr/bin/env python3
"""Benchmark worker: runs one timed phase of a workload per command, in its own process.

The driver (scripts/bench.py) starts one or more of these with the same interpreter for every column
(local directory, bindfs, pyfuse3's passthroughfs, fusefs), so the Python cost of the benchmark itself is
the same everywhere and does not land in the driver.  Protocol: one JSON object per line on stdin, one JSON
reply per line on stdout; EOF ends the worker.  Every path a phase touches is computed before its clock
starts.  Timestamps are time.monotonic() (CLOCK_MONOTONIC, system-wide on Linux), so the driver can
compute the wall time of several workers run at once as max(t1) - min(t0).

Standard library only: this file must run anywhere the driver runs.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

MiB = 1 << 20
PAGE = 4096
MAX_PASSES = 100  # of the stat and list phases


def _go(cmd: dict[str, Any]) -> None:
    """Start barrier: the driver gives every worker of a phase the same start time, shortly ahead."""
    delay = cmd.get("start_at", 0.0) - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_to_eof(fd: int, buf: bytearray) -> int:
    got = 0
    while n := os.readv(fd, [buf]):
        got += n
    return got


def _passes(cmd: dict[str, Any], one_pass: Callable[[], int]) -> tuple[float, float, int]:
    """Whole passes until cmd["min_seconds"] have gone by (a single short pass is mostly noise)."""
    ops = 0
    _go(cmd)
    t0 = time.monotonic()
    for _ in range(MAX_PASSES):
        ops += one_pass()
        t1 = time.monotonic()
        if t1 - t0 >= cmd["min_seconds"]:
            break
    return t0, t1, ops


def _files(root: str, dirs: list[str], per_dir: int, prefix: str) -> list[str]:
    return [os.path.join(root, d, f"{prefix}{i:06d}") for d in dirs for i in range(per_dir)]


def meta(cmd: dict[str, Any]) -> dict[str, Any]:
    """create / stat / list / rename / unlink of empty files in `dirs` (relative to root; "" = root)."""
    root, dirs, per_dir, phase = cmd["root"], cmd["dirs"], cmd["per_dir"], cmd["phase"]
    owns_dirs = dirs != [""]
    made = [os.path.join(root, d) for d in dirs] if owns_dirs else []
    names = _files(root, dirs, per_dir, "f" + cmd["prefix"])
    renamed = _files(root, dirs, per_dir, "r" + cmd["prefix"])
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    ops = 0
    if phase == "create":
        _go(cmd)
        t0 = time.monotonic()
        for d in made:
            os.mkdir(d)
        for p in names:
            os.close(os.open(p, flags, 0o644))
        t1 = time.monotonic()
        ops = len(made) + len(names)
    elif phase == "stat":

        def stat_all() -> int:
            for p in names:
                os.stat(p)
            return len(names)

        t0, t1, ops = _passes(cmd, stat_all)
    elif phase == "list":
        listed = [os.path.join(root, d) for d in dirs]
        t0, t1, ops = _passes(cmd, lambda: sum(len(os.listdir(d)) for d in listed))
    elif phase == "rename":
        pairs = list(zip(names, renamed, strict=True))
        _go(cmd)
        t0 = time.monotonic()
        for a, b in pairs:
            os.rename(a, b)
        t1 = time.monotonic()
        ops = len(pairs)
    elif phase == "unlink":
        _go(cmd)
        t0 = time.monotonic()
        for p in renamed:
            os.unlink(p)
        for d in made:
            os.rmdir(d)
        t1 = time.monotonic()
        ops = len(renamed) + len(made)
    else:
        raise ValueError(f"unknown meta phase {phase!r}")
    return {"t0": t0, "t1": t1, "ops": ops}


def small_write(cmd: dict[str, Any]) -> dict[str, Any]:
    d, count, size = cmd["dir"], cmd["count"], cmd["size"]
    paths = [os.path.join(d, f"s{i:06d}") for i in range(count)]
    data = os.urandom(size)
    flags = os.O_CREAT | os.O_TRUNC | os.O_WRONLY
    _go(cmd)
    t0 = time.monotonic()
    for p in paths:
        fd = os.open(p, flags, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    t1 = time.monotonic()
    return {"t0": t0, "t1": t1, "ops": count, "bytes": count * size}


def small_read(cmd: dict[str, Any]) -> dict[str, Any]:
    d, count, size = cmd["dir"], cmd["count"], cmd["size"]
    paths = [os.path.join(d, f"s{i:06d}") for i in range(count)]
    buf = bytearray(size + PAGE)  # one read past the end sees EOF
    got = 0
    _go(cmd)
    t0 = time.monotonic()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            got += _read_to_eof(fd, buf)
        finally:
            os.close(fd)
    t1 = time.monotonic()
    if got != count * size:
        raise RuntimeError(f"read {got} bytes back, wrote {count * size}")
    return {"t0": t0, "t1": t1, "ops": count, "bytes": got}


def big_write(cmd: dict[str, Any]) -> dict[str, Any]:
    """Sequential write of `size` bytes in `block`-sized writes, then fsync; the fsync is timed."""
    path, size, block = cmd["path"], cmd["size"], cmd["block"]
    data = os.urandom(block)
    _go(cmd)
    t0 = time.monotonic()
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        for off in range(0, size, block):
            _write_all(fd, memoryview(data)[: min(block, size - off)])
        os.fsync(fd)
    finally:
        os.close(fd)
    t1 = time.monotonic()
    return {"t0": t0, "t1": t1, "ops": size // block, "bytes": size}


def big_read(cmd: dict[str, Any]) -> dict[str, Any]:
    path, block = cmd["path"], cmd["block"]
    buf = bytearray(block)
    _go(cmd)
    t0 = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    try:
        got = _read_to_eof(fd, buf)
    finally:
        os.close(fd)
    t1 = time.monotonic()
    if got != cmd["size"]:
        raise RuntimeError(f"read {got} bytes, expected {cmd['size']}")
    return {"t0": t0, "t1": t1, "ops": -(-got // block), "bytes": got}


def _offsets(cmd: dict[str, Any]) -> list[int]:
    rng = random.Random(cmd["seed"])
    pages = cmd["size"] // PAGE
    return [rng.randrange(pages) * PAGE for _ in range(cmd["count"])]


def rand_read(cmd: dict[str, Any]) -> dict[str, Any]:
    """Random 4 KiB preads (readahead off via POSIX_FADV_RANDOM), up to `count` or `seconds`."""
    offsets, limit = _offsets(cmd), cmd["seconds"]
    fd = os.open(cmd["path"], os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        n = 0
        _go(cmd)
        t0 = time.monotonic()
        deadline = t0 + limit
        for off in offsets:
            if len(os.pread(fd, PAGE, off)) != PAGE:
                raise RuntimeError(f"short read at {off}")
            n += 1
            if n % 64 == 0 and time.monotonic() > deadline:
                break
        t1 = time.monotonic()
    finally:
        os.close(fd)
    return {"t0": t0, "t1": t1, "ops": n, "bytes": n * PAGE}


def rand_write(cmd: dict[str, Any]) -> dict[str, Any]:
    """Random 4 KiB pwrites, up to `count` or `seconds`, then fsync; the fsync is timed."""
    offsets, limit = _offsets(cmd), cmd["seconds"]
    data = os.urandom(PAGE)
    fd = os.open(cmd["path"], os.O_WRONLY)
    try:
        n = 0
        _go(cmd)
        t0 = time.monotonic()
        deadline = t0 + limit
        for off in offsets:
            if os.pwrite(fd, data, off) != PAGE:
                raise RuntimeError(f"short write at {off}")
            n += 1
            if n % 64 == 0 and time.monotonic() > deadline:
                break
        os.fsync(fd)
        t1 = time.monotonic()
    finally:
        os.close(fd)
    return {"t0": t0, "t1": t1, "ops": n, "bytes": n * PAGE}


def run(cmd: dict[str, Any]) -> dict[str, Any]:
    """One external command (tar, find, du, git, rm), timed from spawn to exit; output discarded."""
    env = dict(os.environ)
    env.update(cmd.get("env") or {})
    _go(cmd)
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd["argv"], cwd=cmd.get("cwd"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    t1 = time.monotonic()
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{' '.join(cmd['argv'])} exited {proc.returncode}: {err}")
    return {"t0": t0, "t1": t1, "ops": 1}


def ping(cmd: dict[str, Any]) -> dict[str, Any]:
    now = time.monotonic()
    return {"t0": now, "t1": now, "ops": 0}


OPS = {
    "ping": ping,
    "meta": meta,
    "small_write": small_write,
    "small_read": small_read,
    "big_write": big_write,
    "big_read": big_read,
    "rand_read": rand_read,
    "rand_write": rand_write,
    "run": run,
}


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            reply = OPS[cmd["op"]](cmd)
            reply["ok"] = True
        except BaseException as exc:  # report everything to the driver, which decides
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
