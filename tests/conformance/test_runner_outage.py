"""fusefs.store_runner.StoreRunner riding through a store outage (the embedded store's fault file).

``DEFAULT_TIMEOUT_S`` (one ``transact`` call's timeout) and ``WARN_AFTER_S`` are shortened so that an
outage outlasts several calls within a second or two."""

from __future__ import annotations

import errno
import logging
import threading
from pathlib import Path

import pytest
import trio

from fusefs import store_runner
from fusefs.boundary import errno_of
from fusefs.store_runner import StoreOutage, StoreRunner, patience_from_env
from metadata.emulation import StoreEmulation
from metadata.sqlite_store import SqliteStore
from metadata.store import CommitUnknownResult, Transaction


@pytest.fixture
def fault(tmp_path: Path) -> Path:
    return tmp_path / "fault"


@pytest.fixture
def store(tmp_path: Path, fault: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(store_runner, "DEFAULT_TIMEOUT_S", 0.3)
    monkeypatch.setattr(store_runner, "WARN_AFTER_S", 0.5)
    opened = SqliteStore(str(tmp_path / "meta.db"), emulation=StoreEmulation(fault_file=str(fault)))
    yield opened
    opened.close()


def test_an_operation_outlives_several_timeouts_with_one_identity(
    store: SqliteStore, fault: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[bytes, bool]] = []

    def write(tr: Transaction) -> str:
        seen.append((tr.operation_id, tr.maybe_committed))
        if len(seen) == 1:
            raise CommitUnknownResult("as if the first commit's answer was lost")
        tr.set(b"k", b"v")
        return "done"

    fault.touch()
    timer = threading.Timer(1.5, fault.unlink)  # a lower bound on the outage: longer under load is fine
    timer.start()
    runner = StoreRunner(store, patience_s=60.0)
    with caplog.at_level(logging.WARNING, logger="fusefs.store_runner"):
        assert trio.run(runner.run, write) == "done"
    timer.join()
    assert store.transact(lambda tr: tr.get(b"k")) == b"v"
    assert len({operation_id for operation_id, _ in seen}) == 1  # one id across every transact call
    assert [maybe for _, maybe in seen[1:]] == [True] * (len(seen) - 1)  # and the unknown outcome kept
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "still retrying" in m]) == 1, messages
    assert len([m for m in messages if "answers again" in m]) == 1, messages


def test_past_its_patience_an_operation_fails_with_eio(store: SqliteStore, fault: Path) -> None:
    fault.touch()
    runner = StoreRunner(store, patience_s=1.0)
    with pytest.raises(StoreOutage, match="still failing after") as caught:
        trio.run(runner.run, lambda tr: tr.set(b"k", b"v"))
    assert errno_of(caught.value) == errno.EIO
    fault.unlink()
    trio.run(runner.run, lambda tr: tr.set(b"k", b"v"))  # the runner itself is fine afterwards
    assert store.transact(lambda tr: tr.get(b"k")) == b"v"


def test_patience_from_env() -> None:
    assert patience_from_env({}) == store_runner.PATIENCE_S == 120.0
    assert patience_from_env({"FUSEFS_STORE_PATIENCE_S": "2.5"}) == 2.5
    for bad in ("soon", "0", "-3", "inf", "nan"):
        with pytest.raises(ValueError, match=f"FUSEFS_STORE_PATIENCE_S='{bad}' is not a positive number"):
            patience_from_env({"FUSEFS_STORE_PATIENCE_S": bad})
