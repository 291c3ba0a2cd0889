"""A filesystem's block store, opened as a command needs it: claimed at mkfs and blocks add, checked
at mount and gc.

Every filesystem has an id, and each of its block directories carries a marker naming it (blocks/marker.py):
a directory another filesystem owns is refused, as is one without a marker (a disk that failed to mount
shows as an empty directory).  Filesystems made before ids existed get one, and their block directories
are adopted, at their first read-write opening (a mount, gc or blocks add).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from blocks import CHECKSUM_BLOCK_BYTES, Access, BlockStore, Owner
from blocks.marker import read_marker, remove_marker
from fusefs.limits import chunk_size_problem, inline_max_problem
from metadata.migration import format_problem, upgrade
from metadata.model import FsConfig, new_fs_id
from metadata.namespace import load_config
from metadata.store import Store


class SettingsUnusable(Exception):
    """A filesystem whose settings this fusefs cannot use as asked (its message says what to do)."""


def owner_of(config: FsConfig, store: Store) -> Owner:
    return Owner(config.fs_id, config.name, store.url)


def open_block_store(
    store: Store, name: str, *, writable: bool, cache_dir: str | None = None
) -> tuple[FsConfig, BlockStore]:
    """The settings of filesystem `name` and its block store, every directory checked to be its own.

    `writable`: for a read-write mount, gc or blocks add; a filesystem made before ids existed gets one
    and its directories are adopted.  Settings out of bounds (an older mkfs accepted any chunk size)
    are refused for writing but may still be read."""
    if writable:
        config = upgrade(store, name, new_fs_id())
    else:
        config = load_config(store, name)
        if not config.fs_id:
            raise SettingsUnusable(
                f"filesystem '{name}' was made by an older fusefs and has no id yet: mount it read-write "
                "once (without -o ro), which gives it one and adopts its block directories"
            )
    if (problem := format_problem(config)) is not None:
        raise SettingsUnusable(problem)
    problem = _settings_problem(config)
    if problem is not None and (writable or config.chunk_size_bytes % CHECKSUM_BLOCK_BYTES):
        hint = "; mount it read-only (-o ro) to copy its files out" if writable else ""
        raise SettingsUnusable(f"filesystem '{name}' cannot be used: its {problem}{hint}")
    owner = owner_of(config, store)
    access = Access.OPEN if writable else Access.READ
    if cache_dir is not None:
        if not config.data_url:
            raise SettingsUnusable(
                f"-o cache_dir needs a filesystem with a data tier (mkfs --data); '{name}' has none"
            )
        # This host's own staging and cache directory, claimed the first time it is used.
        if read_marker(cache_dir) is None:
            access = Access.CLAIM
        return config, BlockStore([cache_dir], config.chunk_size_bytes, owner, access=access)
    return config, BlockStore(config.block_dirs, config.chunk_size_bytes, owner, access=access)


def claim_new(directories: list[str], chunk_size: int, owner: Owner) -> BlockStore:
    """A block store over `directories`, each claimed for `owner` (mkfs); if one cannot be claimed, the
    claims already made are undone."""
    blocks = BlockStore(directories[:1], chunk_size, owner, access=Access.CLAIM)
    with undo_claims_on_error(blocks, 0):
        for path in directories[1:]:
            blocks.add_directory(path, Access.CLAIM)
    return blocks


@contextlib.contextmanager
def undo_claims_on_error(blocks: BlockStore, first: int) -> Iterator[None]:
    """Remove the markers of `blocks`' directories from index `first` on if the body fails: they were
    claimed for a filesystem (or a directory) that did not come to be, and must not stay claimed."""
    try:
        yield
    except BaseException:
        for directory in blocks.directories[first:]:
            remove_marker(directory, blocks.owner)
        blocks.close()
        raise


def _settings_problem(config: FsConfig) -> str | None:
    problem = chunk_size_problem(config.chunk_size_bytes)
    if problem is not None:
        return f"chunk size {problem}"
    problem = inline_max_problem(config.inline_max_bytes, config.chunk_size_bytes)
    return None if problem is None else f"inline threshold {problem}"
