"""``fusefs systemd-unit MOUNTPOINT``: a systemd service that keeps a mount up.

A service rather than a ``.mount`` unit, because a mount unit cannot be restarted on failure.  It runs
``fusefs mount --foreground`` (SIGTERM unmounts cleanly) logging to the journal, after the network and,
for a FoundationDB store, after a local FoundationDB server; a daemon that dies is restarted, its dead
mount lazily unmounted first (``ExecStopPost``)."""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys

from fusefs import mount_table
from fusefs.commands.common import (
    Subcommands,
    add_command,
    name_option,
    parse_mount_options,
    store_option,
)
from metadata.urls import FDB_PREFIX, check_store_url, default_store_url

RESTART_DELAY_S = 5
#: SIGTERM flushes open files before the unmount; a large write-behind backlog may take a while.
STOP_TIMEOUT_S = 90


def _escape(text: str) -> str:
    """``%`` escaped: systemd expands specifiers (``%h``) in most settings."""
    return text.replace("%", "%%")


def _quote(word: str) -> str:
    """One word of a systemd command line: C-style quotes if it needs any; ``%`` and ``$`` escaped,
    since systemd expands specifiers and variables in command lines."""
    word = _escape(word).replace("$", "$$")
    if word and not any(c in word for c in " \t\n\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def fusefs_command() -> list[str]:
    """How to run this very fusefs: its entry point beside the interpreter, else ``python -m fusefs``."""
    entry_point = os.path.join(os.path.dirname(sys.executable), "fusefs")
    if os.access(entry_point, os.X_OK):
        return [entry_point]
    return [sys.executable, "-m", "fusefs"]


def unit_text(
    mountpoint: str, store_url: str, name: str, options: list[str], user: str | None, fusermount: str
) -> str:
    fdb = store_url.startswith(FDB_PREFIX)
    mount = [*fusefs_command(), "mount", "--foreground", "--log-file", "-"]
    mount += ["--store", store_url, "--name", name]
    if options:
        mount += ["-o", ",".join(options)]
    mount.append(mountpoint)
    after = "network-online.target" + (" foundationdb.service" if fdb else "")
    lines = [
        f"# fusefs-{name}.service: save as /etc/systemd/system/fusefs-{name}.service, then",
        f"#   systemctl daemon-reload && systemctl enable --now fusefs-{name}.service",
        "[Unit]",
        f"Description=fusefs filesystem {name} at {_escape(mountpoint)}",
        "Wants=network-online.target",
        f"After={after}",
        "",
        "[Service]",
        "Type=exec",
        *([f"User={user}"] if user else []),
        "ExecStart=" + " ".join(map(_quote, mount)),
        # A daemon that died left a dead mount ("Transport endpoint is not connected") in the way.
        f"ExecStopPost=-{_quote(fusermount)} -u -z {_quote(mountpoint)}",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY_S}",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    store_url = args.store or default_store_url(create=False)
    check_store_url(store_url)
    options = sorted(parse_mount_options(args.o))
    user = None if os.getuid() == 0 else getpass.getuser()
    fusermount = shutil.which("fusermount3") or "/usr/bin/fusermount3"
    mountpoint = mount_table.resolve_mountpoint(args.mountpoint)
    print(unit_text(mountpoint, store_url, args.name, options, user, fusermount), end="")
    return 0


def add_systemd_unit_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    unit = add_command(
        commands,
        common,
        "systemd-unit",
        cmd_systemd_unit,
        "print a systemd service that mounts a filesystem at boot and restarts it on failure",
    )
    unit.epilog = (
        "The service starts after the network (and foundationdb.service for an fdb:// store), logs to the "
        "journal, and is restarted if its daemon fails.  For /etc/fstab instead, see mount.fuse.fusefs."
    )
    store_option(unit)
    name_option(unit)
    unit.add_argument("-o", metavar="OPTS", action="append", default=[], help="mount options, as for mount")
    unit.add_argument("mountpoint", metavar="MOUNTPOINT", help="where to mount it")
