"""Integration-test settings shared by every module of tests/integration (fixtures: tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _umask_022() -> Iterator[None]:
    """Modes asserted by the tests assume the common umask."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
