"""blocks/tier.py on a real block directory and a real SeaweedFS: upload, fetch, version-keyed cache,
verification of every read, and each failure."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from blocks import Access, BlockStore, ChecksumMismatch, ChecksumTable, Owner
from blocks.objects import ObjectMissing, ObjectStore, object_name
from blocks.tier import CACHE_DIR_NAME, ChunkTier

CHUNK = 64 * 1024
OWNER = Owner("00000000-0000-4000-8000-0000000000aa", "tier", "sqlite:///tier/meta.db")


def tier_on(directory: Path, objects: ObjectStore, **options) -> ChunkTier:  # type: ignore[no-untyped-def]
    directory.mkdir(exist_ok=True)
    blocks = BlockStore([str(directory)], CHUNK, OWNER, access=Access.CLAIM)
    return ChunkTier(objects, blocks, **options)


def staged(tier: ChunkTier, chunk_id: int, data: bytes) -> ChecksumTable:
    table = ChecksumTable(CHUNK)
    tier._blocks.write(0, chunk_id, 0, data, table)
    return table


def test_upload_then_read_elsewhere(tmp_path: Path, objects: ObjectStore) -> None:
    writer, reader = tier_on(tmp_path / "a", objects), tier_on(tmp_path / "b", objects)
    data = os.urandom(CHUNK - 5000)
    table = staged(writer, 1, data)
    version = writer.upload(0, 1, len(data), table)
    assert writer.is_local(0, 1) and not reader.is_local(0, 1) and not reader.is_local(3, 1)
    assert reader.read(1, version, 100, 9000, table) == data[100:9100]  # fetched
    assert reader.read(1, version, 0, CHUNK, table) == data + bytes(5000)  # from the cache
    assert os.listdir(reader.cache_dir) == [object_name(1, version)]
    again = writer.upload(0, 1, len(data), table)  # a new version, never an overwrite
    assert again != version and len(list(objects.names())) == 2


def test_corrupt_cache_file_is_dropped_and_fetched_again(tmp_path: Path, objects: ObjectStore) -> None:
    writer, reader = tier_on(tmp_path / "a", objects), tier_on(tmp_path / "b", objects)
    data = os.urandom(CHUNK)
    table = staged(writer, 2, data)
    version = writer.upload(0, 2, CHUNK, table)
    reader.read(2, version, 0, 10, table)
    cached = Path(reader.cache_dir) / object_name(2, version)
    with open(cached, "r+b") as file:
        file.seek(5000)
        file.write(b"\xff")
    with pytest.raises(ChecksumMismatch, match="block 1"):
        reader.read(2, version, 4096, 4096, table)
    assert not cached.exists()
    assert reader.read(2, version, 4096, 4096, table) == data[4096:8192]


def test_fetched_ahead(tmp_path: Path, objects: ObjectStore) -> None:
    """prefetch fetches in the background: a read of the object waits for that fetch rather than making
    another, and memory and the cache serve it afterwards; a fetch ahead that fails fails the read
    waiting for it and caches nothing."""
    writer, reader = tier_on(tmp_path / "a", objects), tier_on(tmp_path / "b", objects)
    data = os.urandom(CHUNK)
    table = staged(writer, 5, data)
    version = writer.upload(0, 5, CHUNK, table)
    assert reader.read_cached(5, version, 0, 10, table) is None  # never a request to the object store
    reader.prefetch(5, version, table)
    assert reader.read(5, version, 10, 100, table) == data[10:110]
    assert reader.read_cached(5, version, CHUNK - 10, 20, table) == data[-10:] + bytes(10)  # in memory
    # The cache file is written after the readers have the data, through a temporary file renamed into
    # place: wait for the rename, not just for a first file.
    cached = [object_name(5, version)]
    deadline = time.monotonic() + 60
    while os.listdir(reader.cache_dir) != cached and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(reader.cache_dir) == cached
    assert (reader.cache_misses, reader.cache_hits) == (1, 1)
    bad = writer.upload(0, 5, CHUNK, table)
    objects.put(object_name(5, bad), b"not the data")
    reader.prefetch(5, bad, table)
    with pytest.raises(ChecksumMismatch, match=f"object {object_name(5, bad)}"):
        reader.read(5, bad, 0, 10, table)
    assert os.listdir(reader.cache_dir) == [object_name(5, version)]


def test_corrupt_or_missing_object(tmp_path: Path, objects: ObjectStore) -> None:
    writer, reader = tier_on(tmp_path / "a", objects), tier_on(tmp_path / "b", objects)
    data = os.urandom(CHUNK)
    table = staged(writer, 3, data)
    version = writer.upload(0, 3, CHUNK, table)
    objects.put(object_name(3, version), b"not the data")
    with pytest.raises(ChecksumMismatch, match=f"object {object_name(3, version)}"):
        reader.read(3, version, 0, 10, table)
    assert os.listdir(reader.cache_dir) == []  # nothing unverified is cached
    with pytest.raises(ObjectMissing):
        reader.read(3, version + 2, 0, 10, table)


def test_cache_limit_and_leftovers(tmp_path: Path, objects: ObjectStore) -> None:
    writer = tier_on(tmp_path / "a", objects)
    tables, versions = {}, {}
    for chunk_id in (10, 11, 12):
        tables[chunk_id] = staged(writer, chunk_id, os.urandom(CHUNK))
        versions[chunk_id] = writer.upload(0, chunk_id, CHUNK, tables[chunk_id])
    reader = tier_on(tmp_path / "b", objects, cache_bytes=2 * CHUNK)
    reader.read(10, versions[10], 0, 1, tables[10])
    reader.read(11, versions[11], 0, 1, tables[11])
    reader.read(10, versions[10], 0, 1, tables[10])  # 11 is now the least recently used
    reader.read(12, versions[12], 0, 1, tables[12])
    assert sorted(os.listdir(reader.cache_dir)) == sorted(object_name(i, versions[i]) for i in (10, 12))
    Path(reader.cache_dir, ".fetch-leftover").write_bytes(b"x")  # a fetch cut short by a crash
    reopened = tier_on(tmp_path / "b", objects, cache_bytes=CHUNK)
    assert os.listdir(reopened.cache_dir) == [object_name(12, versions[12])]  # older one evicted
    assert reopened.cached_bytes == CHUNK
    assert CACHE_DIR_NAME in os.listdir(tmp_path / "b")


def test_copy_under_a_new_chunk_id(tmp_path: Path, objects: ObjectStore) -> None:
    writer, other = tier_on(tmp_path / "a", objects), tier_on(tmp_path / "b", objects)
    data = os.urandom(CHUNK - 100)
    table = staged(writer, 20, data)
    version = writer.upload(0, 20, len(data), table)
    copied, fetched = other.copy(20, version, len(data), table, 21)
    assert fetched == data and objects.get(object_name(21, copied)) == data
    other._blocks.write(0, 21, 0, fetched, ChecksumTable(CHUNK))
    assert other.is_local(0, 21)
    assert other._blocks.read(0, 21, 0, len(data), table) == data
    with pytest.raises(ChecksumMismatch):  # a copy is checked like any fetch
        other.copy(20, version, len(data), ChecksumTable(CHUNK), 22)
