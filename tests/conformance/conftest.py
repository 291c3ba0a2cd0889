"""The ``store`` fixture: every conformance test runs once per backend.

- ``sqlite``: a fresh ``SqliteStore`` in the test's temporary directory.
- ``sqlite-shared``: the same in shared mode (cross-process conflict detection through the file, watches
  that poll), the mode that takes FoundationDB's paths through the daemon.
- ``fdb``: ``FdbStore(os.environ["FDB_CLUSTER_FILE"])``; skipped, with the reason shown by ``pytest -ra``,
  when the variable is unset or libfdb_c cannot be loaded.  A cluster that is named but unreachable is an
  error, not a skip.

Every test keeps its keys under the ``prefix`` fixture (a unique tuple-encoded prefix per test), which is
cleared afterwards, so the suite can run against a shared cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fdb.tuple
import pytest

from metadata.store import Store, StoreUnavailable

BACKENDS = ["sqlite", "sqlite-shared", "fdb"]


def open_fdb_store() -> Store:
    cluster_file = os.environ.get("FDB_CLUSTER_FILE")
    if not cluster_file:
        pytest.skip("FoundationDB: FDB_CLUSTER_FILE not set")
    from metadata.fdb_store import FdbStore, load_fdb_api

    try:
        load_fdb_api()
    except StoreUnavailable as error:
        pytest.skip(f"libfdb_c not loadable: {error}")
    return FdbStore(cluster_file)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    if backend.startswith("sqlite"):
        from metadata.sqlite_store import SqliteStore

        opened: Store = SqliteStore(str(tmp_path / "meta.sqlite"), shared=backend == "sqlite-shared")
    else:
        opened = open_fdb_store()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def prefix(store: Store) -> Iterator[bytes]:
    key_prefix = fdb.tuple.pack(("fusefs-conformance", uuid.uuid4().hex))
    yield key_prefix
    store.transact(lambda tr: tr.clear_range(key_prefix, key_prefix + b"\xff"))
