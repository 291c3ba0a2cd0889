"""Validating block directories, placement over several of them, and free-space accounting."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from blocks_owner import claimed_store

from blocks import Access, BlockDirUnusable, BlockStoreFull, ChecksumTable
from blocks.directories import MARKER_NAME

CHUNK = 64 * 1024


def _dirs(tmp_path: Path, count: int) -> list[str]:
    paths = [tmp_path / f"d{index}" for index in range(count)]
    for path in paths:
        path.mkdir()
    return [str(path) for path in paths]


def test_missing_directory_is_unusable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(BlockDirUnusable, match="does not exist") as caught:
        claimed_store([missing], CHUNK)
    assert missing in str(caught.value)


def test_regular_file_is_unusable(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(BlockDirUnusable, match="not a directory") as caught:
        claimed_store([str(regular)], CHUNK)
    assert str(regular) in str(caught.value)


def test_directory_formatted_for_another_chunk_size_is_unusable(tmp_path: Path) -> None:
    [path] = _dirs(tmp_path, 1)
    claimed_store([path], CHUNK).close()
    assert os.path.isfile(os.path.join(path, MARKER_NAME))
    claimed_store([path], CHUNK).close()  # same size: fine
    with pytest.raises(BlockDirUnusable, match=str(CHUNK)):
        claimed_store([path], 2 * CHUNK)


def test_add_directory_appends_and_refuses_duplicates(tmp_path: Path) -> None:
    first, second = _dirs(tmp_path, 2)
    store = claimed_store([first], CHUNK)
    assert store.add_directory(second, Access.CLAIM) == 1
    assert store.directories == [first, second]
    with pytest.raises(BlockDirUnusable, match="already block directory 0"):
        store.add_directory(first + "/.", Access.CLAIM)
    with pytest.raises(BlockDirUnusable):
        store.add_directory(str(tmp_path / "missing"), Access.CLAIM)
    assert len(store.directories) == 2


def test_placement_spreads_over_three_directories(tmp_path: Path) -> None:
    store = claimed_store(_dirs(tmp_path, 3), CHUNK)
    counts = Counter(store.choose_directory() for _ in range(600))
    # One filesystem shared three ways: ~200 each; below 100 is beyond any plausible chance.
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 100, counts


def test_placement_is_weighted_by_free_space_and_skips_full_dirs(tmpfs: Callable[[str], str]) -> None:
    small, large = tmpfs("1m"), tmpfs("3m")
    store = claimed_store([small, large], CHUNK)
    counts = Counter(store.choose_directory() for _ in range(2000))
    assert 300 < counts[0] < 700, counts  # expected 500 of 2000 for a 1:3 free-space ratio
    Path(small, "filler").write_bytes(bytes(1024 * 1024 - CHUNK // 2))
    assert {store.choose_directory() for _ in range(200)} == {1}
    Path(large, "filler").write_bytes(bytes(3 * 1024 * 1024 - CHUNK // 2))
    with pytest.raises(BlockStoreFull) as caught:
        store.choose_directory()
    assert small in str(caught.value) and large in str(caught.value)


def test_usage_counts_a_shared_filesystem_once(tmp_path: Path, tmpfs: Callable[[str], str]) -> None:
    first, second = _dirs(tmp_path, 2)
    store = claimed_store([first, second], CHUNK)
    vfs = os.statvfs(first)
    total, free = store.usage()
    assert total == vfs.f_blocks * vfs.f_frsize
    assert abs(free - vfs.f_bavail * vfs.f_frsize) < 64 * 1024 * 1024  # other tests may write meanwhile
    extra = tmpfs("2m")
    store.add_directory(extra, Access.CLAIM)
    with_tmpfs, _ = store.usage()
    assert with_tmpfs == total + 2 * 1024 * 1024


def test_chunk_size_must_be_a_multiple_of_the_checksum_block(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        claimed_store(_dirs(tmp_path, 1), CHUNK + 1)


def test_chunks_live_where_asked(tmp_path: Path) -> None:
    store = claimed_store(_dirs(tmp_path, 2), CHUNK)
    store.write(1, 3, 0, b"here", ChecksumTable(CHUNK))
    assert store.path(1, 3).startswith(store.directories[1] + os.sep)
    assert os.path.exists(store.path(1, 3)) and not os.path.exists(store.path(0, 3))
