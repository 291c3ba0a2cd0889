"""Fixtures for the namespace model tests: a real embedded store in tmp_path, with retry chaos off and on.

Every test that takes ``store`` (or ``fs``) runs twice: ``chaos-off`` and ``chaos-on`` (the store fails
``CHAOS_RATE`` of its commits with an injected conflict, so every transaction function runs again).  The
chaos seed is derived from the test id, printed, and recorded in the test's ``user_properties``; set
``FUSEFS_TEST_CHAOS_SEED`` to run with another one.

``Fs`` runs namespace operations the way the daemon does: one ``store.transact`` per operation, with
inode numbers reserved beforehand in batches (``Namespace.reserve_ids``)."""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from metadata import changelog
from metadata.emulation import StoreEmulation
from metadata.model import ROOT_CALLER, ROOT_INODE, Caller, FsConfig, FSError, InodeAttr
from metadata.namespace import Namespace, format_filesystem, load_config
from metadata.sqlite_store import SqliteStore
from metadata.store import CommitUnknownResult, Transaction

CHAOS_RATE = 0.3
ROOT = ROOT_CALLER
USER = Caller(uid=1000, gid=1000, groups=(2000,))  # a member of group 2000
OTHER = Caller(uid=1001, gid=1001)  # in no group but its own
REG = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755
_ID_BATCH = 64


def chaos_seed(nodeid: str) -> int:
    override = os.environ.get("FUSEFS_TEST_CHAOS_SEED")
    return int(override) if override else zlib.crc32(nodeid.encode())


@pytest.fixture(params=[0.0, CHAOS_RATE], ids=["chaos-off", "chaos-on"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore]:
    rate = request.param
    seed = chaos_seed(request.node.nodeid)
    request.node.user_properties.append(("chaos", f"rate={rate} seed={seed}"))
    print(
        f"embedded store: chaos_conflict_rate={rate} chaos_seed={seed} "
        f"(FUSEFS_TEST_CHAOS_SEED={seed} reproduces)"
    )
    opened = SqliteStore(
        str(tmp_path / "meta.db"), emulation=StoreEmulation(chaos_conflict_rate=rate), chaos_seed=seed
    )
    yield opened
    opened.close()


class Fs:
    """One formatted filesystem in a store (``settings``: other FsConfig fields than the name).  Namespace
    methods are proxied: ``fs.unlink(parent, name, ROOT)`` runs ``ns.unlink(tr, parent, name, ROOT)`` in
    its own transaction."""

    def __init__(self, store: SqliteStore, name: str = "test", **settings: Any) -> None:
        format_filesystem(store, FsConfig(name, **settings))
        self.store = store
        self.config = load_config(store, name)
        self.ns = Namespace(self.config)
        self.keys = self.ns.keys
        self._ids: Iterator[int] = iter(())

    def run(self, fn: Callable[[Transaction], Any]) -> Any:
        return self.store.transact(fn)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        bound = getattr(self.ns, method)
        return lambda *args, **kwargs: self.run(lambda tr: bound(tr, *args, **kwargs))

    # -- creating -----------------------------------------------------------------------------------
    def new_ino(self) -> int:
        ino = next(self._ids, None)
        if ino is None:
            first = self.run(lambda tr: self.ns.reserve_ids(tr, "inode", _ID_BATCH))
            self._ids = iter(range(first, first + _ID_BATCH))
            ino = next(self._ids)
        return ino

    def make(
        self, parent: int, name: bytes, mode: int = REG, caller: Caller = ROOT, **kwargs: Any
    ) -> InodeAttr:
        ino = self.new_ino()
        return self.run(lambda tr: self.ns.create(tr, parent, name, ino, mode, caller, **kwargs))

    def mkdir(self, parent: int, name: bytes, mode: int = 0o755, caller: Caller = ROOT) -> InodeAttr:
        return self.make(parent, name, stat.S_IFDIR | mode, caller)

    def tree(self, *paths: str) -> dict[str, int]:
        """Create directories (paths ending in '/') and regular files below the root; returns path → ino."""
        made = {"": ROOT_INODE}
        for path in paths:
            parent_path, _, name = path.rstrip("/").rpartition("/")
            maker = self.mkdir if path.endswith("/") else self.make
            made[path.rstrip("/")] = maker(made[parent_path], name.encode()).ino
        return made

    # -- reading ------------------------------------------------------------------------------------
    def attr(self, ino: int) -> InodeAttr:
        return self.getattr(ino)

    def listing(self, ino: int, page: int = 1000) -> list[bytes]:
        names: list[bytes] = []
        while True:
            after = names[-1] if names else None
            batch = self.readdir(ino, after, page)
            if not batch:
                return names
            names.extend(name for name, _ in batch)

    def dump(self) -> list[tuple[bytes, bytes]]:
        """Every key and value of this filesystem but the idempotency records, which every attempted
        mutation leaves (they describe the request, not the filesystem)."""
        begin, end = self.keys.operations_before(2**62)
        rows = self.run(lambda tr: tr.get_range(*self.keys.whole_filesystem(), snapshot=True))
        return [(k, v) for k, v in rows if not begin <= k < end]

    def raw_range(self, begin_end: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        return self.run(lambda tr: tr.get_range(*begin_end))

    def raw_get(self, key: bytes) -> bytes | None:
        return self.run(lambda tr: tr.get(key))

    def raw_set(self, key: bytes, value: bytes) -> None:
        self.run(lambda tr: tr.set(key, value))

    def log(self, after: bytes | None = None) -> list[changelog.LogRecord]:
        return self.run(lambda tr: changelog.read_log(tr, self.config.name, after, 0))

    # -- checking -----------------------------------------------------------------------------------
    def fails(self, errno_value: int, method: str, *args: Any, **kwargs: Any) -> None:
        """``method`` fails with ``errno_value`` and leaves every key of the filesystem as it was."""
        before = self.dump()
        with pytest.raises(FSError) as caught:
            getattr(self, method)(*args, **kwargs)
        assert caught.value.errno == errno_value, (
            f"{method}{args}: expected errno {errno_value}, got {caught.value.errno}"
        )
        assert self.dump() == before, f"failed {method} changed the store"

    def check_tree(self) -> None:
        """Walks the tree from the root: every directory is reached once, has nlink 2 + subdirectories
        and points to its parent; every other inode's nlink counts its names."""
        seen_dirs = {ROOT_INODE}
        names_of: dict[int, int] = {}
        pending = [ROOT_INODE]
        while pending:
            directory = pending.pop()
            entries = self.readdir(directory, None, 0)
            subdirs = [attr for _, attr in entries if attr.is_dir]
            assert self.attr(directory).nlink == 2 + len(subdirs), f"nlink of directory {directory}"
            for attr in subdirs:
                assert attr.ino not in seen_dirs, f"directory {attr.ino} reached twice"
                assert attr.parent == directory, f"parent pointer of directory {attr.ino}"
                seen_dirs.add(attr.ino)
                pending.append(attr.ino)
            for _, attr in entries:
                if not attr.is_dir:
                    names_of[attr.ino] = names_of.get(attr.ino, 0) + 1
        for ino, count in names_of.items():
            assert self.attr(ino).nlink == count, f"nlink of inode {ino}"

    def depth(self, ino: int, bound: int = 1000) -> int:
        """Steps from ``ino`` up its parent pointers to the root, in one snapshot (fails on a loop)."""

        def walk(tr: Transaction) -> int:
            current = ino
            for steps in range(bound):
                if current == ROOT_INODE:
                    return steps
                current = self.ns.getattr(tr, current).parent
            raise AssertionError(f"no root within {bound} parent steps from {ino}: a directory loop")

        return self.run(walk)


@pytest.fixture
def fs(store: SqliteStore) -> Fs:
    return Fs(store)


@contextmanager
def commit_unknown_once(store: SqliteStore) -> Iterator[None]:
    """The next transaction that commits writes reports ``CommitUnknownResult`` after it *was* applied
    (FoundationDB error 1021): ``transact`` then runs the function again with ``maybe_committed``."""
    real_begin = store.begin
    armed = [True]

    def begin() -> Transaction:
        tr = real_begin()
        tr.commit_outcome_certain = False  # this one is not: it reports a commit as unknown
        real_commit = tr.commit

        def commit() -> None:
            had_writes = tr.has_writes()
            real_commit()
            if armed[0] and had_writes:
                armed[0] = False
                raise CommitUnknownResult("simulated: applied, but the reply was lost")

        tr.commit = commit  # type: ignore[method-assign]
        return tr

    store.begin = begin  # type: ignore[method-assign]
    try:
        yield
    finally:
        del store.begin
    assert not armed[0], "no transaction committed writes"
