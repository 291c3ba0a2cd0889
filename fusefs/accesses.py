"""Provenance in the adapter: the ``Access`` record of each open file handle (metadata/provenance.py).

Opened with the caller's uid and pid and the process's command name, counted by read and write, and
written when the handle's flush commits data (in that transaction) and at its release when anything
changed since: a file only read costs one transaction more, at its release."""

from __future__ import annotations

from dataclasses import dataclass

from metadata.model import now_ns
from metadata.provenance import Access


def command_of(pid: int) -> str:
    """The command name of process ``pid`` (empty when it is gone or unknown, as for pid 0)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().rstrip("\n")
    except OSError:
        return ""


@dataclass
class HandleAccess:
    access: Access
    #: (bytes read, bytes written) when the record was last written (None: never).
    recorded: tuple[int, int] | None = None

    @classmethod
    def start(cls, ino: int, uid: int, pid: int, session: bytes, handle: int) -> HandleAccess:
        access = Access(ino, uid, pid, command_of(pid), now_ns(), session=session, handle=handle)
        return cls(access)

    def stamped(self) -> Access:
        """The record as of now, to write."""
        access = self.access
        access.closed_ns = now_ns()
        access.first_written_ns = access.first_written_ns or access.closed_ns
        return access

    def written(self) -> None:
        self.recorded = (self.access.bytes_read, self.access.bytes_written)

    @property
    def changed(self) -> bool:
        return self.recorded != (self.access.bytes_read, self.access.bytes_written)
