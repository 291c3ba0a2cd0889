"""Block directories: validating one for use, and measuring the free space of the filesystems beneath them.

A block directory holds a marker file recording the chunk size it was formatted with, and the 256
fan-out subdirectories.  Both are created once, when the directory is first used, and made durable then,
so creating a chunk later only ever adds an entry to an existing subdirectory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import stat
from dataclasses import dataclass

from .errors import BlockDirUnusable, BlockStoreFull
from .layout import FANOUT_NAMES

log = logging.getLogger(__name__)

MARKER_NAME = ".fusefs-blocks"
MARKER_FORMAT = 1


@dataclass(frozen=True)
class Space:
    device: int
    total_bytes: int
    free_bytes: int
    free_inodes: int | None  # None where the filesystem does not count inodes (btrfs reports 0 of 0)


def prepare_directory(path: str, chunk_size: int) -> str:
    """Check that `path` can hold chunks and lay it out; returns its absolute path or raises BlockDirUnusable."""
    path = os.path.abspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BlockDirUnusable(path, "it does not exist") from None
    except OSError as error:
        raise BlockDirUnusable(path, f"cannot stat it: {error.strerror}") from error
    if not stat.S_ISDIR(mode):
        raise BlockDirUnusable(path, "it is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise BlockDirUnusable(path, "it is not readable and writable by this process")
    try:
        wrote_marker = _check_or_write_marker(path, chunk_size)
        made_fanout = _make_fanout_dirs(path)
        if wrote_marker or made_fanout:
            fsync_directory(path)
    except OSError as error:
        raise BlockDirUnusable(path, f"cannot lay it out: {error}") from error
    return path


def fsync_directory(path: str) -> None:
    """Make the entries of directory `path` durable (POSIX: fsync of the file alone does not cover its name)."""
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


def _check_or_write_marker(path: str, chunk_size: int) -> bool:
    """Returns True if it wrote a new marker (the directory then needs an fsync)."""
    marker = os.path.join(path, MARKER_NAME)
    try:
        with open(marker, encoding="utf-8") as file:
            recorded = json.load(file)
    except FileNotFoundError:
        _write_marker(marker, chunk_size)
        return True
    except ValueError as error:
        raise BlockDirUnusable(path, f"its marker {MARKER_NAME} is not valid JSON: {error}") from error
    if not isinstance(recorded, dict) or recorded.get("format") != MARKER_FORMAT:
        raise BlockDirUnusable(path, f"its marker {MARKER_NAME} has an unknown format: {recorded!r}")
    if recorded.get("chunk_size") != chunk_size:
        # Checksum tables are sized by chunk; chunks of another size cannot be read with this configuration.
        raise BlockDirUnusable(
            path, f"it holds chunks of {recorded.get('chunk_size')} bytes, not the configured {chunk_size}"
        )
    return False


def _write_marker(marker: str, chunk_size: int) -> None:
    # Write-then-rename so a crash never leaves a half-written marker that would make the directory unusable.
    temporary = f"{marker}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump({"format": MARKER_FORMAT, "chunk_size": chunk_size}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, marker)


def _make_fanout_dirs(path: str) -> bool:
    created = False
    for name in FANOUT_NAMES:
        try:
            os.mkdir(os.path.join(path, name), 0o700)
            created = True
        except FileExistsError:
            pass
    return created

