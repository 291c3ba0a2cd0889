"""The daemon's log: one line per record, a level, a file reopened on SIGHUP, journald's format.

The log file is the daemon's stderr (file descriptor 2, and 1 for a background daemon), so what libfuse
or faulthandler print lands in it too.  Rotation is left to logrotate: after it renames the file, SIGHUP
makes the daemon reopen its path (``reopen``), as syslog daemons do.  Run by systemd with stderr
connected to the journal (``JOURNAL_STREAM`` names it), records carry no timestamp (journald adds its
own) and start with a ``<N>`` syslog priority, which journald takes as the entry's priority."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from typing import TextIO

from metadata.printable import printable

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error")
#: syslog priorities by logging level, for journald.
_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class OneLineFormatter(logging.Formatter):
    """One line per record whatever a message quotes (file names, paths): its control characters are
    escaped (metadata/printable.py), so no name can forge a record.  A traceback still follows the
    record it belongs to, indented by Python."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


class JournalFormatter(OneLineFormatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return f"<{_PRIORITIES.get(record.levelno, 6)}>" + super().formatMessage(record)


def to_journal(stream: TextIO) -> bool:
    """``stream`` is the journal stream systemd gave this process (``JOURNAL_STREAM=DEV:INODE``)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(stream.fileno())
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):
        return False


def configure(level: str, stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JournalFormatter(JOURNAL_FORMAT) if to_journal(stream) else OneLineFormatter(LOG_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    faulthandler.enable()  # a crash in C code (libfuse, libfdb_c) leaves a stack in the log


def open_log(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def redirect_stderr(path: str, *, follow_stdout: bool) -> None:
    """Make ``path`` this process's stderr; with ``follow_stdout``, its stdout too if stdout was the same
    file as stderr (a background daemon's)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = open_log(path)
    try:
        if follow_stdout and _same_file(1, 2):
            os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def reopen(path: str) -> None:
    """SIGHUP: continue in a new file at ``path`` (logrotate renamed the old one)."""
    redirect_stderr(path, follow_stdout=True)
    logging.getLogger(__name__).info("log file %s reopened", path)


def _same_file(first: int, second: int) -> bool:
    try:
        one, other = os.fstat(first), os.fstat(second)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)
