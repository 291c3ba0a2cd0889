"""The filesystem that owns the block directories of the block store tests (a module with a unique name:
tests/ has several conftest.py)."""

from __future__ import annotations

from typing import Any

from blocks import Access, BlockStore, Owner

OWNER = Owner("00000000-0000-4000-8000-000000000001", "test", "sqlite:///test/meta.db")


def claimed_store(directories: list[str], chunk_size: int, **options: Any) -> BlockStore:
    """A block store over `directories`, claimed for OWNER as mkfs does (or reopened, once claimed)."""
    return BlockStore(directories, chunk_size, OWNER, access=Access.CLAIM, **options)
