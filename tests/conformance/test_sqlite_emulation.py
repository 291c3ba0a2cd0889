"""The embedded store's development aids: emulated latency and the outage switch (metadata/emulation.py).

Delays are checked by counting the emulated rounds and, where time matters, by a lower bound only
(safe on a loaded machine)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from metadata.emulation import EmulationSettingError, StoreEmulation
from metadata.sqlite_store import SqliteStore
from metadata.store import RetryableError, TransactionTimedOut


def test_latency_is_taken_per_read_round_and_per_writing_commit(tmp_path: Path) -> None:
    store = SqliteStore(
        str(tmp_path / "slow.db"), emulation=StoreEmulation(read_delay_s=0.002, commit_delay_s=0.02)
    )
    try:
        assert store.blocks_event_loop  # a sleeping transaction must not run on the event loop
        store.transact(lambda tr: [tr.set(b"r%05d" % n, b"v") for n in range(2500)])
        assert (store.emulated_read_rounds, store.emulated_commits) == (0, 1)
        started = time.monotonic()

        def reads(tr):  # type: ignore[no-untyped-def]
            tr.get(b"r00000")  # one round
            tr.get_many([b"r00001", b"r00002", b"r00003"])  # one round for all three
            return tr.get_range(b"r", b"s")  # 1 000 rows per batch: three rounds

        assert len(store.transact(reads)) == 2500
        assert (store.emulated_read_rounds, store.emulated_commits) == (5, 1)  # read-only: no commit
        assert time.monotonic() - started >= 5 * 0.002
        started = time.monotonic()
        store.transact(lambda tr: tr.set(b"k", b"v"))
        assert store.emulated_commits == 2
        assert time.monotonic() - started >= 0.02
    finally:
        store.close()


def test_fault_file_fails_every_commit_retryably_while_it_exists(tmp_path: Path) -> None:
    fault = tmp_path / "fault"
    store = SqliteStore(str(tmp_path / "faulty.db"), emulation=StoreEmulation(fault_file=str(fault)))
    try:
        store.transact(lambda tr: tr.set(b"k", b"before"))
        fault.touch()
        tr = store.begin()
        tr.set(b"k", b"during")
        with pytest.raises(RetryableError, match="emulated store recovery"):
            tr.commit()
        with pytest.raises(TransactionTimedOut):
            store.transact(lambda tr: tr.get(b"k"), timeout_s=0.3)  # reads wait for the recovery too
        fault.unlink()
        assert store.transact(lambda tr: tr.get(b"k")) == b"before"  # nothing of the failed commit
        store.transact(lambda tr: tr.set(b"k", b"after"))
        assert store.transact(lambda tr: tr.get(b"k")) == b"after"
    finally:
        store.close()


def test_emulation_is_off_by_default_and_keeps_the_fast_path(tmp_path: Path) -> None:
    assert StoreEmulation.from_env({}) == StoreEmulation()
    store = SqliteStore(str(tmp_path / "plain.db"))
    try:
        assert not store.blocks_event_loop and not store.shared
    finally:
        store.close()


def test_emulation_from_env() -> None:
    emulation = StoreEmulation.from_env(
        {
            "FUSEFS_CHAOS_CONFLICT_RATE": "0.3",
            "FUSEFS_STORE_LATENCY": "0.56,1.5",
            "FUSEFS_STORE_FAULT_FILE": "/run/fault",
        }
    )
    assert (emulation.chaos_conflict_rate, emulation.fault_file) == (0.3, "/run/fault")
    assert emulation.read_delay_s == pytest.approx(0.00056)
    assert emulation.commit_delay_s == pytest.approx(0.0015)
    assert emulation.active and emulation.slows_calls
    assert "0.56 ms per read round, 1.5 ms per commit" in emulation.describe()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FUSEFS_CHAOS_CONFLICT_RATE", "lots", "is not a number between 0 and 1"),
        ("FUSEFS_CHAOS_CONFLICT_RATE", "1", "is not a number between 0 and 1"),
        ("FUSEFS_STORE_LATENCY", "1", "give READ_MS,COMMIT_MS"),
        ("FUSEFS_STORE_LATENCY", "1,fast", "give READ_MS,COMMIT_MS"),
        ("FUSEFS_STORE_LATENCY", "-1,2", "give READ_MS,COMMIT_MS"),
        ("FUSEFS_STORE_FAULT_FILE", "relative/fault", "is not an absolute path"),
    ],
)
def test_bad_emulation_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(EmulationSettingError, match=f"{name}=.*{message}"):
        StoreEmulation.from_env({name: value})


def test_a_key_read_again_in_a_transaction_costs_no_round(tmp_path: Path) -> None:
    """As FoundationDB's client answers a key it read already from the transaction's cache."""
    store = SqliteStore(str(tmp_path / "slow.db"), emulation=StoreEmulation(read_delay_s=0.0001))
    try:
        store.transact(lambda tr: tr.set(b"a", b"1"))

        def reads(tr):  # type: ignore[no-untyped-def]
            tr.get_many([b"a", b"b"])  # one round
            tr.get(b"a")  # cached
            tr.get_many([b"b", b"a"])  # cached
            tr.get_many([b"a", b"c"])  # one round: c is new
            return tr.get(b"a")

        assert store.transact(reads) == b"1"
        assert store.emulated_read_rounds == 2
    finally:
        store.close()
