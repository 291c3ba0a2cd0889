"""Fixtures for the block store tests: real files under tmp_path, and real tiny filesystems (tmpfs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from blocks_owner import claimed_store

from blocks import BlockStore

SMALL_CHUNK_BYTES = 256 * 1024


@pytest.fixture
def block_dir(tmp_path: Path) -> str:
    path = tmp_path / "blocks0"
    path.mkdir()
    return str(path)


@pytest.fixture
def store(block_dir: str) -> Iterator[BlockStore]:
    block_store = claimed_store([block_dir], SMALL_CHUNK_BYTES)
    yield block_store
    block_store.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Mount a tmpfs of a given size (e.g. "1m") in tmp_path; skips unless we may mount; always unmounts."""
    with _mounts(tmp_path) as mount:
        yield lambda size: mount("tmpfs", f"size={size}")


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[str]:
    """A ramfs mounted in tmp_path: a real filesystem that refuses O_DIRECT (EINVAL)."""
    with _mounts(tmp_path) as mount:
        yield mount("ramfs", "mode=0755")


@contextlib.contextmanager
def _mounts(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """``mount(fstype, options)`` → a new mountpoint in tmp_path; skips unless we may mount; unmounts all
    at the end."""
    mounted: list[str] = []

    def mount(fstype: str, options: str) -> str:
        if os.geteuid() != 0:
            pytest.skip(f"mounting a {fstype} needs root")
        target = tmp_path / f"{fstype}{len(mounted)}"
        target.mkdir()
        result = subprocess.run(
            ["mount", "-t", fstype, "-o", options, fstype, str(target)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a {fstype} here: {result.stderr.strip()}")
        mounted.append(str(target))
        return str(target)

    try:
        yield mount
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", target], check=True)
