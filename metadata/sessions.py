"""Mount sessions: which read-write mounts of a filesystem are alive, so that a live mount can recover
what a dead one left (its unlinked-but-open inodes, the chunks it was writing) without ever touching
the work in progress of a live one.

Every read-write mount registers a ``Session`` before it serves, renews its heartbeat every few
seconds and removes the record at a clean unmount.  Orphan records and dirty-chunk marks name the
session that made them.  A session is dead when

* its record is gone (a live mount always has one; records from before sessions existed name the
  empty session ``b""``, which never has one), or
* its heartbeat is older than the timeout, or
* at once, without waiting: it ran on this host (same host name and boot id) and its pid is gone or
  now belongs to a process with another start time.

The sole owner of an embedded store treats every other session as dead: the store's owner lock proves
no other mount is alive.  A live mount claims a dead session in one transaction (``claim``: of several
claimants exactly one wins, the record's read conflicts), recovers its leftovers and then removes the
record (``release``).  A claimant that dies meanwhile leaves the record claimed by a dead session, so
the next live mount takes the claim over.  Heartbeats compare wall clocks of different hosts: their
clocks must agree to well within the timeout.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from metadata.keys import FsKeys
from metadata.model import pack, unpack_list
from metadata.store import Transaction

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_INTERVAL_ENV = "FUSEFS_HEARTBEAT_S"
#: A session whose heartbeat is older than this is dead (twelve missed heartbeats).
SESSION_TIMEOUT_S = 60.0
SESSION_TIMEOUT_ENV = "FUSEFS_SESSION_TIMEOUT_S"
_NS_PER_S = 1_000_000_000
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


# -- this process ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Process:
    """Where a mount runs: enough to tell, on the same host, whether it still does."""

    host: str
    boot_id: str
    pid: int
    #: Start time in clock ticks since boot (/proc/PID/stat field 22): a reused pid has another.
    start_ticks: int


def this_process() -> Process:
    pid = os.getpid()
    return Process(socket.gethostname(), _boot_id(), pid, process_start_ticks(pid) or 0)


def _boot_id() -> str:
    try:
        with open(_BOOT_ID_PATH) as source:
            return source.read().strip()
    except OSError:
        return ""


def process_start_ticks(pid: int) -> int | None:
    """The start time of process ``pid``, or None if it is gone (a zombie holds nothing: gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as source:
            fields = source.read().rpartition(b")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def seconds_from_env(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``name`` (tests shorten intervals),
    else ``default``; a bad value is logged and ignored."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        log.warning("%s=%r is not a positive number of seconds: using %g s", name, text, default)
        return default
    return value


def timeout_s() -> float:
    return seconds_from_env(SESSION_TIMEOUT_ENV, SESSION_TIMEOUT_S)


# -- records -----------------------------------------------------------------------------------------------
_FIELDS = (bytes, str, str, int, int, str, int, str, int, bytes)


@dataclass
class Session:
    id: bytes
    host: str
    boot_id: str
    pid: int
    start_ticks: int
    mountpoint: str
    started_ns: int
    version: str
    heartbeat_ns: int
    #: The live session recovering this one (set by ``claim``), or empty.
    claimed_by: bytes = b""

    @classmethod
    def start(
        cls, session_id: bytes, process: Process, mountpoint: str, version: str, now_ns: int
    ) -> Session:
        return cls(
            session_id,
            process.host,
            process.boot_id,
            process.pid,
            process.start_ticks,
            mountpoint,
            now_ns,
            version,
            now_ns,
        )

    @classmethod
    def ended(cls, session_id: bytes, now_ns: int) -> Session:
        """The stand-in record a claimant writes for a session whose record is gone: it only holds the
        claim (host, pid and mountpoint are unknown)."""
        return cls(session_id, "", "", 0, 0, "", now_ns, "", now_ns)

    @property
    def is_stand_in(self) -> bool:
        return not self.host

    def encode(self) -> bytes:
        return pack(
            [
                self.id,
                self.host,
                self.boot_id,
                self.pid,
                self.start_ticks,
                self.mountpoint,
                self.started_ns,
                self.version,
                self.heartbeat_ns,
                self.claimed_by,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> Session:
        return cls(*unpack_list(raw, "session record", _FIELDS))


# -- transaction functions ---------------------------------------------------------------------------------
def register(tr: Transaction, keys: FsKeys, session: Session) -> None:
    tr.set(keys.session(session.id), session.encode())


def unregister(tr: Transaction, keys: FsKeys, session_id: bytes) -> None:
    tr.clear(keys.session(session_id))


def heartbeat(tr: Transaction, keys: FsKeys, session_id: bytes, now_ns: int) -> bool:
    """Renew the heartbeat; False if the record is gone or claimed: another mount took this one for
    dead (it stalled past the timeout) and is recovering it, so it must register anew."""
    raw = tr.get(keys.session(session_id))
    if raw is None:
        return False
    session = Session.decode(raw)
    if session.claimed_by:
        return False
    session.heartbeat_ns = max(session.heartbeat_ns, now_ns)
    tr.set(keys.session(session_id), session.encode())
    return True


def list_sessions(tr: Transaction, keys: FsKeys) -> dict[bytes, Session]:
    begin, end = keys.sessions()
    found = (Session.decode(raw) for _, raw in tr.iter_range(begin, end, snapshot=True))
    return {session.id: session for session in found}


def sessions_of(tr: Transaction, fs_name: str) -> dict[bytes, Session]:
    """``list_sessions`` for filesystem ``fs_name`` (for tools without a ``Namespace``)."""
    return list_sessions(tr, FsKeys(fs_name))


def claim(
    tr: Transaction, keys: FsKeys, victim: bytes, claimant: bytes, now_ns: int, take_over_from: bytes = b""
) -> bool:
    """Claim dead session ``victim`` for recovery by ``claimant``; True if this claim won.

    Wins if the record is unclaimed, or claimed by ``take_over_from`` (a claimant found dead), or
    already by ``claimant`` (a retry of this very transaction, or an earlier pass of this mount); a
    session whose record is gone gets a stand-in record holding the claim.  The record is read
    serializably, so of two claimants racing, the second's commit conflicts and it then sees the
    first's claim."""
    raw = tr.get(keys.session(victim))
    session = Session.decode(raw) if raw is not None else Session.ended(victim, now_ns)
    if session.claimed_by not in (b"", take_over_from, claimant):
        return False
    session.claimed_by = claimant
    tr.set(keys.session(victim), session.encode())
    return True


def release(tr: Transaction, keys: FsKeys, victim: bytes, claimant: bytes) -> None:
    """Remove the record of a session ``claimant`` has finished recovering (unless the claim was taken
    over meanwhile: then the new claimant removes it)."""
    raw = tr.get(keys.session(victim))
    if raw is not None and Session.decode(raw).claimed_by == claimant:
        tr.clear(keys.session(victim))


# -- deciding ----------------------------------------------------------------------------------------------
StartTicks = Callable[[int], "int | None"]


def is_dead(
    session: Session,
    *,
    now_ns: int,
    timeout_s: float,
    here: Process,
    start_ticks: StartTicks = process_start_ticks,
) -> bool:
    """Whether ``session`` is dead, as seen from process ``here`` (see the module docstring)."""
    if now_ns - session.heartbeat_ns > timeout_s * _NS_PER_S:
        return True
    if session.host == here.host and session.boot_id == here.boot_id:
        return start_ticks(session.pid) != session.start_ticks
    return False


def to_recover(
    sessions: dict[bytes, Session],
    leftover_sessions: Iterable[bytes],
    own: bytes,
    *,
    sole_owner: bool,
    now_ns: int,
    timeout_s: float,
    here: Process,
    start_ticks: StartTicks = process_start_ticks,
) -> list[tuple[bytes, bytes]]:
    """(dead session, claimant to take over from) for every session the mount ``own`` should claim:
    dead sessions with a record, and sessions named by leftovers (orphans, dirty marks) but without
    one.  A session already claimed by a live mount is left to it."""

    def dead(session_id: bytes) -> bool:
        session = sessions.get(session_id)
        if session is None:
            return True
        if session.claimed_by:
            return False  # being recovered: its own liveness no longer matters
        return sole_owner or is_dead(
            session, now_ns=now_ns, timeout_s=timeout_s, here=here, start_ticks=start_ticks
        )

    found = []
    for session_id in sorted(set(sessions) | set(leftover_sessions)):
        if session_id == own:
            continue
        session = sessions.get(session_id)
        if session is not None and session.claimed_by:
            claimant = session.claimed_by
            if claimant == own or dead(claimant):
                found.append((session_id, claimant))
        elif dead(session_id):
            found.append((session_id, b""))
    return found


def live_sessions(
    sessions: dict[bytes, Session], *, now_ns: int, timeout_s: float, here: Process
) -> list[Session]:
    """The sessions that are (as far as anyone can tell) mounts still running."""
    return [
        session
        for session in sessions.values()
        if not session.is_stand_in
        and not session.claimed_by
        and not is_dead(session, now_ns=now_ns, timeout_s=timeout_s, here=here)
    ]
