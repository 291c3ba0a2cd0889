"""The kernel's mount table and mountpoint checks: which fusefs mounts exist, whether a path can be
mounted on, whether a mount answers."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from dataclasses import dataclass

from fusefs.messages import MountError

FUSE_DEVICE = "/dev/fuse"


@dataclass
class MountEntry:
    mountpoint: str
    fstype: str
    source: str
    #: "major:minor", which also names the mount's backing device info under /sys/class/bdi.
    device: str = ""


def _unescape(field: bytes) -> str:
    # The kernel writes space, tab, newline and backslash in mount paths as octal escapes (\040 ...).
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def mount_table() -> list[MountEntry]:
    """This mount namespace's mounts, from /proc/self/mountinfo (never stats a mountpoint, so a hung or
    dead FUSE mount cannot block us)."""
    entries = []
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            fields = line.split()
            separator = fields.index(b"-")
            entries.append(
                MountEntry(
                    _unescape(fields[4]),
                    _unescape(fields[separator + 1]),
                    _unescape(fields[separator + 2]),
                    fields[2].decode(),
                )
            )
    return entries


def mount_at(path: str) -> MountEntry | None:
    """The topmost mount at ``path`` (absolute, resolved), if any."""
    found = None
    for entry in mount_table():
        if entry.mountpoint == path:
            found = entry
    return found


def is_fusefs(entry: MountEntry) -> bool:
    return entry.fstype == "fuse.fusefs"


def resolve_mountpoint(path: str) -> str:
    # realpath: the kernel records the resolved path, and the daemon works from "/".
    return os.path.realpath(path)


def check_mountpoint(path: str) -> str:
    """The resolved mountpoint, or a ``MountError`` saying why it cannot be mounted on.  A non-empty
    directory is fine (libfuse 3 allows it, as mount(8) does)."""
    resolved = resolve_mountpoint(path)
    entry = mount_at(resolved)
    if entry is not None:
        raise MountError(
            f"mountpoint {path} is already a mount point ({entry.fstype} {entry.source}): "
            "unmount it first or choose another directory"
        )
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise MountError(f"mountpoint {path} does not exist") from None
    except OSError as error:
        hint = " (a dead FUSE mount? try: fusermount3 -u -z PATH)" if error.errno == errno.ENOTCONN else ""
        raise MountError(f"mountpoint {path}: {error.strerror}{hint}") from None
    if not stat.S_ISDIR(mode):
        raise MountError(f"mountpoint {path} is not a directory")
    return resolved


def check_fuse_available(allow_other: bool) -> None:
    if not os.path.exists(FUSE_DEVICE):
        raise MountError(f"{FUSE_DEVICE} does not exist: load the fuse kernel module (modprobe fuse)")
    if allow_other and os.geteuid() != 0 and not _user_allow_other():
        raise MountError(
            "-o allow_other needs 'user_allow_other' in /etc/fuse.conf when not mounting as root"
        )


def _user_allow_other() -> bool:
    try:
        with open("/etc/fuse.conf") as conf:
            return any(line.strip() == "user_allow_other" for line in conf)
    except OSError:
        return False


def probe_errno(path: str, timeout_s: float) -> int | None:
    """0 if the filesystem mounted at ``path`` answers a statfs, its errno if it fails (ENOTCONN: a FUSE
    mount whose daemon is gone), None if no answer comes within ``timeout_s``.  A statfs, because the
    kernel always asks the daemon (a stat may be answered from the kernel's cache); in a thread, so
    that a hung daemon costs a timeout, not a hung command."""
    answered = threading.Event()
    outcome: list[int] = []

    def probe() -> None:
        try:
            os.statvfs(path)
            outcome.append(0)
        except OSError as error:
            outcome.append(error.errno or errno.EIO)
        answered.set()

    threading.Thread(target=probe, daemon=True).start()
    return outcome[0] if answered.wait(timeout_s) else None
