"""Records of running daemons, one file per daemon in the data directory (for ``fusefs status`` and
``fusefs umount``)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass

from metadata.urls import data_dir


def _state_dir() -> str:
    path = os.path.join(data_dir(), "mounts")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@dataclass
class DaemonRecord:
    pid: int
    mountpoint: str
    store_url: str
    name: str
    log_file: str | None


def _record_path(pid: int) -> str:
    return os.path.join(_state_dir(), f"{pid}.json")


def control_socket_path(pid: int) -> str:
    """The control channel of daemon ``pid`` (fusefs/control.py), beside its record."""
    return os.path.join(_state_dir(), f"{pid}.sock")


def write_record(record: DaemonRecord) -> None:
    path = _record_path(record.pid)
    with open(path + ".tmp", "w") as out:
        json.dump(asdict(record), out)
    os.replace(path + ".tmp", path)


def remove_record(pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record_path(pid))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control_socket_path(pid))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs.  A zombie counts as gone: its parent (a shell, a test, or a container's
    init that never reaps) may take long to collect it, but it holds nothing any more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as source:
            state = source.read().rpartition(b")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def running_daemons() -> list[DaemonRecord]:
    """Daemons started by this user that are still running; records of dead ones are removed."""
    records = []
    for file_name in os.listdir(_state_dir()):
        if not file_name.endswith(".json"):
            continue
        try:
            with open(os.path.join(_state_dir(), file_name)) as source:
                record = DaemonRecord(**json.load(source))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(record.pid):
            records.append(record)
        else:
            remove_record(record.pid)
    return records


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
