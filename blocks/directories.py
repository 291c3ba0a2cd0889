"""Block directories: validating one for use, and measuring the free space of the filesystems beneath them.

A block directory holds a marker file naming the filesystem that owns it and its chunk size (marker.py),
and the 256 fan-out subdirectories.  Both are created once, when a filesystem claims the directory, and
made durable then, so creating a chunk later only ever adds an entry to an existing subdirectory.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import stat
from dataclasses import dataclass

from .errors import BlockDirNotOwned, BlockDirUnusable, BlockStoreFull
from .layout import FANOUT_NAMES, parse_chunk_name
from .marker import MARKER_NAME, Marker, Owner, read_marker, remove_marker, write_marker

log = logging.getLogger(__name__)


class Access(enum.Enum):
    """How a filesystem means to use a block directory, which decides what its marker must say."""

    #: A new directory for the filesystem (mkfs, blocks add): it must hold no other filesystem's marker
    #: and no chunk files; the filesystem's marker is written.
    CLAIM = "claim"
    #: A read-write mount (or gc): the marker must name the filesystem; a marker of an older fusefs that
    #: names no owner is adopted (rewritten naming this filesystem).
    OPEN = "open"
    #: A read-only mount: the marker must name the filesystem; nothing is written.
    READ = "read"


@dataclass(frozen=True)
class Space:
    device: int
    total_bytes: int
    free_bytes: int
    free_inodes: int | None  # None where the filesystem does not count inodes (btrfs reports 0 of 0)


def prepare_directory(path: str, chunk_size: int, owner: Owner, access: Access) -> str:
    """Check that `path` can hold `owner`'s chunks and lay it out; returns its absolute path or raises
    BlockDirUnusable (BlockDirNotOwned when the marker is missing or names another filesystem)."""
    path = os.path.abspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BlockDirUnusable(path, "it does not exist") from None
    except OSError as error:
        raise BlockDirUnusable(path, f"cannot stat it: {error.strerror}") from error
    if not stat.S_ISDIR(mode):
        raise BlockDirUnusable(path, "it is not a directory")
    if access is Access.READ:
        if not os.access(path, os.R_OK | os.X_OK):
            raise BlockDirUnusable(path, "it is not readable by this process")
    elif not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise BlockDirUnusable(path, "it is not readable and writable by this process")
    try:
        wrote_marker = _check_marker(path, chunk_size, owner, access)
        try:
            made_fanout = access is not Access.READ and _make_fanout_dirs(path)
            if wrote_marker or made_fanout:
                fsync_directory(path)
        except OSError:
            if access is Access.CLAIM and wrote_marker:
                remove_marker(path, owner)  # not claimed after all: leave it as it was
            raise
    except OSError as error:
        raise BlockDirUnusable(path, f"cannot lay it out: {error}") from error
    return path


def fsync_directory(path: str) -> None:
    """Make the entries of directory `path` durable (POSIX: a file's fsync does not cover its name)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure(path: str) -> Space:
    device = os.stat(path).st_dev
    vfs = os.statvfs(path)
    return Space(
        device=device,
        total_bytes=vfs.f_blocks * vfs.f_frsize,
        # f_bavail, not f_bfree: the blocks reserved for root are not ours to plan with.
        free_bytes=vfs.f_bavail * vfs.f_frsize,
        free_inodes=vfs.f_favail if vfs.f_files else None,
    )


def choose(directories: list[str], chunk_size: int, rng: random.Random) -> int:
    """Index of a directory with room for a whole chunk, picked at random weighted by free space.

    Directories on one filesystem share its free space, so each gets its share of the weight rather than
    all of it: two directories on one disk must not draw twice the chunks of a third on another disk.
    """
    candidates: list[tuple[int, Space]] = []
    refusals: list[str] = []
    for index, path in enumerate(directories):
        try:
            space = measure(path)
        except OSError as error:
            log.warning("block directory %s cannot be measured: %s", path, error)
            refusals.append(f"{path}: {error.strerror}")
            continue
        if space.free_bytes < chunk_size or space.free_inodes == 0:
            refusals.append(f"{path}: {space.free_bytes} bytes, {space.free_inodes} inodes free")
            continue
        candidates.append((index, space))
    if not candidates:
        raise BlockStoreFull(directories, "; ".join(refusals))
    sharing: dict[int, int] = {}
    for _, space in candidates:
        sharing[space.device] = sharing.get(space.device, 0) + 1
    weights = [space.free_bytes / sharing[space.device] for _, space in candidates]
    return rng.choices([index for index, _ in candidates], weights=weights)[0]


def total_usage(directories: list[str]) -> tuple[int, int]:
    """(total, free) bytes over the distinct filesystems holding `directories`, each counted once."""
    by_device: dict[int, Space] = {}
    for path in directories:
        space = measure(path)
        by_device.setdefault(space.device, space)
    return (
        sum(space.total_bytes for space in by_device.values()),
        sum(space.free_bytes for space in by_device.values()),
    )


def check_owner(path: str, owner: Owner) -> None:
    """Raise BlockDirNotOwned unless the marker of `path` names `owner` (before deleting anything there)."""
    problem = _ownership_problem(path, read_marker(path), owner)
    if problem is not None:
        raise problem


def _check_marker(path: str, chunk_size: int, owner: Owner, access: Access) -> bool:
    """Returns True if it wrote a marker (the directory then needs an fsync)."""
    marker = read_marker(path)
    if access is Access.CLAIM:
        return _claim(path, marker, chunk_size, owner)
    if marker is not None and marker.owner is None and access is Access.OPEN:
        _check_chunk_size(path, marker, chunk_size)
        write_marker(path, Marker(chunk_size, owner), exclusive=False)
        log.info("block directory %s adopted by %s", path, owner.describe())
        return True
    problem = _ownership_problem(path, marker, owner)
    if problem is not None:
        raise problem
    assert marker is not None
    _check_chunk_size(path, marker, chunk_size)
    return False


def _ownership_problem(path: str, marker: Marker | None, owner: Owner) -> BlockDirNotOwned | None:
    if marker is None:
        return BlockDirNotOwned(
            path,
            f"block directory {path} has no fusefs marker ({MARKER_NAME}): is the disk mounted? "
            f"It should hold the chunks of {owner.describe()}",
        )
    if marker.owner is None:
        return BlockDirNotOwned(
            path,
            f"block directory {path} has not been adopted by {owner.describe()} yet (it was made by an "
            "older fusefs): mount the filesystem read-write once, which adopts it",
        )
    if marker.owner.fs_id != owner.fs_id:
        return BlockDirNotOwned(
            path,
            f"block directory {path} belongs to {marker.owner.describe()}, not to {owner.describe()}: "
            "check which disk is mounted there and the block directories of each filesystem (fusefs status)",
        )
    return None


def _claim(path: str, marker: Marker | None, chunk_size: int, owner: Owner) -> bool:
    if marker is not None:
        if marker.owner is None:
            raise _claimed(path, "to a filesystem made by an older fusefs (its marker names no owner)")
        if marker.owner.fs_id != owner.fs_id:
            raise _claimed(path, f"to {marker.owner.describe()}")
        _check_chunk_size(path, marker, chunk_size)
        return False
    if _holds_chunk_files(path):
        # Chunk files without a marker: the marker was removed, or this is part of another
        # filesystem's directory; either way they would be taken for ours and deleted by our gc.
        raise BlockDirNotOwned(
            path,
            f"block directory {path} holds chunk files but no fusefs marker (another filesystem's?): "
            "use an empty directory",
        )
    try:
        write_marker(path, Marker(chunk_size, owner), exclusive=True)
    except FileExistsError:
        # Another filesystem claimed it between our look and our write: refuse, naming it.
        return _claim(path, read_marker(path), chunk_size, owner)
    return True


def _claimed(path: str, owner: str) -> BlockDirNotOwned:
    return BlockDirNotOwned(
        path, f"block directory {path} already belongs {owner}: give each filesystem its own block directory"
    )


def _check_chunk_size(path: str, marker: Marker, chunk_size: int) -> None:
    if marker.chunk_size != chunk_size:
        # Checksum tables are sized by chunk; chunks of another size cannot be read with this configuration.
        raise BlockDirUnusable(
            path, f"it holds chunks of {marker.chunk_size} bytes, not the configured {chunk_size}"
        )


def _holds_chunk_files(path: str) -> bool:
    for name in FANOUT_NAMES:
        try:
            with os.scandir(os.path.join(path, name)) as entries:
                if any(parse_chunk_name(entry.name) is not None for entry in entries):
                    return True
        except (FileNotFoundError, NotADirectoryError):
            continue
    return False


def _make_fanout_dirs(path: str) -> bool:
    created = False
    for name in FANOUT_NAMES:
        try:
            os.mkdir(os.path.join(path, name), 0o700)
            created = True
        except FileExistsError:
            pass
    return created
