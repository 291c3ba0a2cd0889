"""The fusefs tier: the daemon's parts driven directly, without a mount or root.

``Harness`` is one formatted filesystem on a real embedded store with a temporary block directory;
``harness.mount()`` builds the daemon's whole composition (fusefs/filesystem.py: the adapter, the handle
and open-file tables, the inode life cycle, recovery) but for the FUSE loop, so tests call handlers and
open files as the kernel would.

Fixtures: ``store``, a bare embedded store, sole or in shared mode; ``shared``, a harness on a store
shared as FoundationDB shares it (several read-write sessions); ``chaos``, a harness without and with
retry chaos (the store fails a share of its commits with an injected conflict, so every transaction
function runs again)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from blocks import Access, BlockStore
from fusefs.blockdirs import owner_of
from fusefs.filesystem import Filesystem
from metadata.emulation import StoreEmulation
from metadata.keys import FsKeys
from metadata.model import FsConfig
from metadata.namespace import format_filesystem, load_config
from metadata.sqlite_store import SqliteStore
from metadata.store import Transaction

CHUNK = 65536
INLINE_MAX = 8192
CHAOS_RATE = 0.3


class Harness:
    def __init__(self, store: SqliteStore, tmp_path: Path) -> None:
        self.store = store
        (tmp_path / "blocks").mkdir()
        config = FsConfig(
            name="t",
            block_dirs=[str(tmp_path / "blocks")],
            chunk_size_bytes=CHUNK,
            inline_max_bytes=INLINE_MAX,
        )
        format_filesystem(store, config)
        self.config = load_config(store, "t")
        self.blocks = BlockStore(
            self.config.block_dirs, CHUNK, owner_of(self.config, store), access=Access.CLAIM
        )
        self.keys = FsKeys("t")
        self._mounted: list[Filesystem] = []

    def mount(self, **options: bool) -> Filesystem:
        fs = Filesystem(self.store, self.config, self.blocks, **options)
        self._mounted.append(fs)
        return fs

    async def started(self, **options: bool) -> Filesystem:
        """A composition as the daemon has it once serving: its session registered, and the first
        recovery pass done (opens wait for it: fusefs/recovery_gate.py)."""
        fs = self.mount(**options)
        await fs.start("/mnt/test")
        await fs.recovery.run_pass()
        return fs

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(tr, *args)`` in a transaction of its own."""
        return self.store.transact(lambda tr: fn(tr, *args))

    def raw(self, fn: Callable[[Transaction], Any]) -> Any:
        return self.store.transact(fn)

    def close(self) -> None:
        # As the daemon does at unmount (again, if the test did it already): no chunk writer thread
        # outlives the store.
        for fs in self._mounted:
            trio.run(fs.shutdown)
        self.blocks.close()
        self.store.close()


@pytest.fixture(params=["sole", "shared"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore]:
    """A bare embedded store, owned by this process or in shared mode."""
    opened = SqliteStore(str(tmp_path / "meta.db"), shared=request.param == "shared")
    yield opened
    opened.close()


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Harness]:
    store = SqliteStore(str(tmp_path / "meta.db"), exclusive=False)
    # Several read-write mounts share this store, as on FoundationDB (or the embedded store's shared
    # mode): none of them owns it, so none may take the others for dead without proof.
    store.shared = True
    harness = Harness(store, tmp_path)
    yield harness
    harness.close()


@pytest.fixture(params=[0.0, CHAOS_RATE], ids=["chaos-off", "chaos-on"])
def chaos(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    rate = request.param
    seed = zlib.crc32(request.node.nodeid.encode())
    print(f"embedded store: chaos_conflict_rate={rate} chaos_seed={seed}")
    store = SqliteStore(
        str(tmp_path / "meta.db"), emulation=StoreEmulation(chaos_conflict_rate=rate), chaos_seed=seed
    )
    harness = Harness(store, tmp_path)
    yield harness
    harness.close()
