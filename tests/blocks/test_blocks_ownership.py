"""Block directories belong to one filesystem: claiming, checking and adopting their markers, and
deleting nothing in a directory whose marker names another filesystem or is gone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from blocks_owner import OWNER, claimed_store

from blocks import Access, BlockDirNotOwned, BlockDirUnusable, BlockStore, ChecksumTable, Owner
from blocks.layout import FANOUT_NAMES
from blocks.marker import MARKER_NAME, Marker, read_marker, remove_marker, write_marker

CHUNK = 64 * 1024
OTHER = Owner("00000000-0000-4000-8000-000000000002", "other", "sqlite:///elsewhere/meta.db")


def _dir(tmp_path: Path, name: str = "blocks") -> str:
    path = tmp_path / name
    path.mkdir()
    return str(path)


def _write_chunk(store: BlockStore, chunk_id: int) -> str:
    store.write(0, chunk_id, 0, b"x" * 4096, ChecksumTable(CHUNK))
    return store.path(0, chunk_id)


def _legacy_marker(directory: str, chunk_size: int = CHUNK) -> None:
    """The marker as fusefs wrote it before block directories had owners."""
    with open(os.path.join(directory, MARKER_NAME), "w") as file:
        json.dump({"format": 1, "chunk_size": chunk_size}, file)


def test_a_claim_writes_a_marker_naming_the_owner(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    claimed_store([directory], CHUNK).close()
    assert read_marker(directory) == Marker(CHUNK, OWNER)
    with open(os.path.join(directory, MARKER_NAME)) as file:
        assert json.load(file) == {
            "format": 2,
            "chunk_size": CHUNK,
            "fs_id": OWNER.fs_id,
            "name": OWNER.name,
            "store": OWNER.store_url,
        }
    for access in (Access.OPEN, Access.READ):
        BlockStore([directory], CHUNK, OWNER, access=access).close()


def test_a_directory_of_another_filesystem_cannot_be_claimed_or_opened(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    BlockStore([directory], CHUNK, OTHER, access=Access.CLAIM).close()
    with pytest.raises(BlockDirNotOwned) as caught:
        claimed_store([directory], CHUNK)
    assert str(caught.value) == (
        f"block directory {directory} already belongs to filesystem 'other' (id {OTHER.fs_id}) of "
        f"{OTHER.store_url}: give each filesystem its own block directory"
    )
    for access in (Access.OPEN, Access.READ):
        with pytest.raises(BlockDirNotOwned) as caught:
            BlockStore([directory], CHUNK, OWNER, access=access)
        assert str(caught.value).startswith(
            f"block directory {directory} belongs to filesystem 'other' (id {OTHER.fs_id}) of "
            f"{OTHER.store_url}, not to filesystem 'test' (id {OWNER.fs_id}) of {OWNER.store_url}: check"
        )
    assert read_marker(directory) == Marker(CHUNK, OTHER)


def test_chunk_files_without_a_marker_cannot_be_claimed(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    store = claimed_store([directory], CHUNK)
    _write_chunk(store, 7)
    store.close()
    os.unlink(os.path.join(directory, MARKER_NAME))
    with pytest.raises(BlockDirNotOwned, match="holds chunk files but no fusefs marker"):
        BlockStore([directory], CHUNK, OTHER, access=Access.CLAIM)
    assert read_marker(directory) is None


def test_a_directory_without_marker_is_refused_and_left_alone(tmp_path: Path) -> None:
    """The disk that should be mounted there is not: the empty directory beneath must not be used."""
    directory = _dir(tmp_path)
    for access in (Access.OPEN, Access.READ):
        with pytest.raises(BlockDirNotOwned) as caught:
            BlockStore([directory], CHUNK, OWNER, access=access)
        assert str(caught.value).startswith(
            f"block directory {directory} has no fusefs marker ({MARKER_NAME}): is the disk mounted? "
        )
        assert os.listdir(directory) == []


def test_a_legacy_marker_is_adopted_by_a_read_write_opening(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    _legacy_marker(directory)
    assert read_marker(directory) == Marker(CHUNK, None)
    with pytest.raises(BlockDirNotOwned, match="has not been adopted by filesystem 'test'"):
        BlockStore([directory], CHUNK, OWNER, access=Access.READ)
    with pytest.raises(BlockDirNotOwned, match="already belongs to a filesystem made by an older fusefs"):
        claimed_store([directory], CHUNK)
    BlockStore([directory], CHUNK, OWNER, access=Access.OPEN).close()
    assert read_marker(directory) == Marker(CHUNK, OWNER)
    BlockStore([directory], CHUNK, OWNER, access=Access.READ).close()


def test_a_legacy_marker_of_another_chunk_size_is_not_adopted(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    _legacy_marker(directory, 2 * CHUNK)
    with pytest.raises(BlockDirUnusable, match=f"holds chunks of {2 * CHUNK} bytes"):
        BlockStore([directory], CHUNK, OWNER, access=Access.OPEN)
    assert read_marker(directory) == Marker(2 * CHUNK, None)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"format": 3, "chunk_size": 65536}', "has an unknown format"),
        ('{"format": 2, "chunk_size": 65536, "fs_id": "x", "name": "y"}', "has an unknown format"),
        (
            '{"format": 2, "chunk_size": "big", "fs_id": "x", "name": "y", "store": "z"}',
            "has an unknown format",
        ),
        ("[1, 2]", "has an unknown format"),
    ],
)
def test_a_damaged_marker_is_refused(tmp_path: Path, content: str, message: str) -> None:
    directory = _dir(tmp_path)
    Path(directory, MARKER_NAME).write_text(content)
    for access in Access:
        with pytest.raises(BlockDirUnusable, match=message):
            BlockStore([directory], CHUNK, OWNER, access=access)
    assert Path(directory, MARKER_NAME).read_text() == content


def test_a_read_only_opening_writes_nothing(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    claimed_store([directory], CHUNK).close()
    os.rmdir(os.path.join(directory, FANOUT_NAMES[0]))
    os.chmod(directory, 0o555)
    try:
        BlockStore([directory], CHUNK, OWNER, access=Access.READ).close()
        assert not os.path.exists(os.path.join(directory, FANOUT_NAMES[0]))
    finally:
        os.chmod(directory, 0o755)


def test_delete_refuses_once_the_marker_is_not_the_owners(tmp_path: Path) -> None:
    """A disk swapped or unmounted under a running store: its chunk files are not ours to delete."""
    directory = _dir(tmp_path)
    store = claimed_store([directory], CHUNK)
    kept, gone = _write_chunk(store, 1), _write_chunk(store, 2)
    store.delete(0, 2)  # ours: deleted (and the marker's look remembered)
    assert not os.path.exists(gone)
    write_marker(directory, Marker(CHUNK, OTHER), exclusive=False)
    with pytest.raises(BlockDirNotOwned, match="belongs to filesystem 'other'"):
        store.delete(0, 1)
    os.unlink(os.path.join(directory, MARKER_NAME))
    with pytest.raises(BlockDirNotOwned, match="has no fusefs marker"):
        store.delete(0, 1)
    _legacy_marker(directory)
    with pytest.raises(BlockDirNotOwned, match="has not been adopted"):
        store.delete(0, 1)
    assert os.path.exists(kept)
    write_marker(directory, Marker(CHUNK, OWNER), exclusive=False)
    store.delete(0, 1)
    assert not os.path.exists(kept)
    store.close()


def test_an_exclusive_marker_write_never_replaces_a_marker(tmp_path: Path) -> None:
    """Two filesystems claiming one directory at once: the second write fails, so only one can win."""
    directory = _dir(tmp_path)
    write_marker(directory, Marker(CHUNK, OTHER), exclusive=True)
    with pytest.raises(FileExistsError):
        write_marker(directory, Marker(CHUNK, OWNER), exclusive=True)
    assert read_marker(directory) == Marker(CHUNK, OTHER)
    assert os.listdir(directory) == [MARKER_NAME]  # no temporary file left behind


def test_remove_marker_removes_only_the_owners(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    write_marker(directory, Marker(CHUNK, OTHER), exclusive=True)
    remove_marker(directory, OWNER)
    assert read_marker(directory) == Marker(CHUNK, OTHER)
    remove_marker(directory, OTHER)
    assert read_marker(directory) is None
    remove_marker(directory, OTHER)  # nothing there: nothing to do


def test_a_claim_that_cannot_lay_the_directory_out_leaves_no_marker(tmpfs) -> None:
    """A tmpfs with room for the marker but not for the 256 fan-out subdirectories."""
    directory = tmpfs("1m,nr_inodes=16")
    with pytest.raises(BlockDirUnusable, match="cannot lay it out"):
        claimed_store([directory], CHUNK)
    assert read_marker(directory) is None
