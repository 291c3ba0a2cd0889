"""Fixtures for the block store tests: real files under tmp_path, and real tiny filesystems (tmpfs)."""

from __future__ import annotations

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
    mounted: list[str] = []

    def mount(size: str) -> str:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(str(target))
        return str(target)

    try:
        yield mount
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", target], check=True)
