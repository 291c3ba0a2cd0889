"""The marker file of a block directory: which filesystem owns the directory, and its chunk size.

A block directory belongs to exactly one filesystem: another one's garbage collection would take its
chunk files for leftovers and delete them, and chunk ids (counted per filesystem) would collide.  The
marker names the owner by its id (a uuid4 kept with the filesystem's settings), with the name and store
URL to make refusals readable.  Markers written before block directories had owners (format 1) name
none; the owning filesystem adopts them at its next read-write mount.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from .errors import BlockDirUnusable

MARKER_NAME = ".fusefs-blocks"
LEGACY_FORMAT = 1
MARKER_FORMAT = 2


@dataclass(frozen=True)
class Owner:
    """The filesystem a block directory belongs to; only ``fs_id`` decides, the rest is for messages."""

    fs_id: str
    name: str
    store_url: str

    def describe(self) -> str:
        return f"filesystem '{self.name}' (id {self.fs_id}) of {self.store_url}"


@dataclass(frozen=True)
class Marker:
    chunk_size: int
    #: None in a marker written by a fusefs that did not record owners (format 1).
    owner: Owner | None


def marker_path(directory: str) -> str:
    return os.path.join(directory, MARKER_NAME)


def read_marker(directory: str) -> Marker | None:
    """The directory's marker, None if it has none; BlockDirUnusable if it cannot be read or parsed."""
    try:
        with open(marker_path(directory), encoding="utf-8") as file:
            recorded = json.load(file)
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise BlockDirUnusable(directory, f"its marker {MARKER_NAME} is not valid JSON: {error}") from error
    except OSError as error:
        raise BlockDirUnusable(directory, f"cannot read its marker {MARKER_NAME}: {error.strerror}") from None
    return _parse(directory, recorded)


def write_marker(directory: str, marker: Marker, *, exclusive: bool) -> None:
    """Write the marker durably.  ``exclusive``: fail with FileExistsError if the directory has one, so
    two filesystems claiming one directory at the same moment cannot both succeed."""
    assert marker.owner is not None, "new markers always name their owner"
    path = marker_path(directory)
    # Written in full under a temporary name, then linked or renamed into place: a crash never leaves a
    # half-written marker that would make the directory unusable.
    temporary = f"{path}.{os.getpid()}.tmp"
    content = {"format": MARKER_FORMAT, "chunk_size": marker.chunk_size, **_owner_fields(marker.owner)}
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(content, file)
            file.flush()
            os.fsync(file.fileno())
        if exclusive:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def remove_marker(directory: str, owner: Owner) -> None:
    """Undo a claim that did not go through (the filesystem was not created): only if the marker is ours."""
    marker = read_marker(directory)
    if marker is not None and marker.owner == owner:
        os.unlink(marker_path(directory))


def _owner_fields(owner: Owner) -> dict[str, str]:
    return {"fs_id": owner.fs_id, "name": owner.name, "store": owner.store_url}


def _parse(directory: str, recorded: object) -> Marker:
    def unknown() -> BlockDirUnusable:
        reason = f"its marker {MARKER_NAME} has an unknown format: {recorded!r:.200}"
        return BlockDirUnusable(directory, reason)

    if not isinstance(recorded, dict):
        raise unknown()
    chunk_size = recorded.get("chunk_size")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool):
        raise unknown()
    if recorded.get("format") == LEGACY_FORMAT:
        return Marker(chunk_size, None)
    fields = [recorded.get(name) for name in ("fs_id", "name", "store")]
    owner = [field for field in fields if isinstance(field, str) and field]
    if recorded.get("format") != MARKER_FORMAT or len(owner) != len(fields):
        raise unknown()
    return Marker(chunk_size, Owner(*owner))
