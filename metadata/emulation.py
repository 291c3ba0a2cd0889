"""Development aids of the embedded store: make it behave like a slow or failing FoundationDB.

All off by default.  Set from the environment of a daemon (``StoreEmulation.from_env``):

    FUSEFS_CHAOS_CONFLICT_RATE=0.3        fail that fraction of commits with a retryable conflict
    FUSEFS_STORE_LATENCY=READ_MS,COMMIT_MS  wait that long per read round and per writing commit
                                          (0.56,1.5 is the FoundationDB measured on the dev machine)
    FUSEFS_STORE_FAULT_FILE=PATH          while PATH exists, every commit waits ~0.1 s and fails with a
                                          retryable error, as FoundationDB does during a recovery
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CHAOS_ENV = "FUSEFS_CHAOS_CONFLICT_RATE"
LATENCY_ENV = "FUSEFS_STORE_LATENCY"
FAULT_FILE_ENV = "FUSEFS_STORE_FAULT_FILE"


class EmulationSettingError(ValueError):
    """An emulation variable with a value that means nothing; the message names it."""


@dataclass(frozen=True)
class StoreEmulation:
    chaos_conflict_rate: float = 0.0
    read_delay_s: float = 0.0
    commit_delay_s: float = 0.0
    fault_file: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.chaos_conflict_rate or self.read_delay_s or self.commit_delay_s or self.fault_file)

    @property
    def slows_calls(self) -> bool:
        """True when a transaction may sleep: it must then not run on an event loop."""
        return bool(self.read_delay_s or self.commit_delay_s or self.fault_file)

    def describe(self) -> str:
        parts = []
        if self.chaos_conflict_rate:
            parts.append(f"{self.chaos_conflict_rate:.0%} of commits fail with an injected conflict")
        if self.read_delay_s or self.commit_delay_s:
            read_ms, commit_ms = self.read_delay_s * 1000, self.commit_delay_s * 1000
            parts.append(f"{read_ms:g} ms per read round, {commit_ms:g} ms per commit")
        if self.fault_file:
            parts.append(f"commits fail while {self.fault_file} exists")
        return "; ".join(parts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StoreEmulation:
        read_s, commit_s = _latency(environ.get(LATENCY_ENV, "").strip())
        fault_file = environ.get(FAULT_FILE_ENV, "").strip() or None
        if fault_file is not None and not fault_file.startswith("/"):
            raise EmulationSettingError(f"{FAULT_FILE_ENV}={fault_file!r} is not an absolute path")
        return cls(_chaos(environ.get(CHAOS_ENV, "").strip()), read_s, commit_s, fault_file)


def _chaos(text: str) -> float:
    try:
        rate = float(text) if text else 0.0
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate < 1.0:
        raise EmulationSettingError(f"{CHAOS_ENV}={text!r} is not a number between 0 and 1")
    return rate


def _latency(text: str) -> tuple[float, float]:
    if not text:
        return 0.0, 0.0
    fields = text.split(",")
    try:
        delays = [float(field) for field in fields]
    except ValueError:
        delays = []
    if len(delays) != 2 or not all(0.0 <= delay < 10_000 for delay in delays):
        raise EmulationSettingError(
            f"{LATENCY_ENV}={text!r}: give READ_MS,COMMIT_MS, two non-negative numbers of milliseconds "
            "(e.g. 0.56,1.5)"
        )
    return delays[0] / 1000, delays[1] / 1000
