"""``fusefs mount``, ``umount`` and ``status``: mounts and their daemons."""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import subprocess
import sys

from fusefs import daemon_records, logs, mount_table
from fusefs.commands.common import (
    DEFAULT_NAME,
    MOUNT_OPTIONS,
    STATUS_PROBE_S,
    UMOUNT_WAIT_S,
    CliError,
    Subcommands,
    UsageError,
    add_command,
    describe_config,
    has_filesystem,
    make_filesystem,
    name_option,
    opened_store,
    option_value,
    parse_mount_options,
    seconds,
    sessions_of,
    size_option,
    store_option,
)
from fusefs.commands.trash import trash_usage
from fusefs.metrics_address import MetricsAddressError, parse_address
from metadata import sessions
from metadata.model import (
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_INLINE_MAX_BYTES,
    now_ns,
)
from metadata.namespace import (
    list_filesystems,
)
from metadata.printable import printable
from metadata.urls import (
    SQLITE_PREFIX,
    check_store_url,
    data_dir,
    default_store_url,
)


def _ensure_default_filesystem() -> None:
    """``fusefs mount`` without a store: the default filesystem in the default store, made on first use."""
    url = default_store_url()
    if os.path.exists(url.removeprefix(SQLITE_PREFIX)):
        # Looked up without taking ownership, so that a read-only mount beside the owning daemon works.
        with opened_store(url, read_only=True, exclusive=False) as store:
            if has_filesystem(store, DEFAULT_NAME):
                return
    with opened_store(url, create=True) as store:
        if not has_filesystem(store, DEFAULT_NAME):
            config = make_filesystem(
                store, DEFAULT_NAME, [], DEFAULT_INLINE_MAX_BYTES, DEFAULT_CHUNK_SIZE_BYTES
            )
            print(f"created filesystem '{DEFAULT_NAME}' in {store.url} ({describe_config(config)})")


def cmd_mount(args: argparse.Namespace) -> int:
    options = parse_mount_options(args.o)
    mountpoint = mount_table.check_mountpoint(args.mountpoint)
    if args.store is not None:
        check_store_url(args.store)  # here, as a usage error, rather than from the daemon
    if args.store is None and args.name == DEFAULT_NAME:
        _ensure_default_filesystem()
    metrics = option_value(options, "metrics")
    if metrics is not None:
        try:
            parse_address(metrics)
        except MetricsAddressError as error:
            raise UsageError(str(error)) from None
    log_file = args.log_file
    if log_file is None and not args.foreground:
        log_file = os.path.join(data_dir(), f"{args.name}.log")
    if log_file == "-":
        log_file = None
    # Imported only here: pyfuse3 and trio, which the daemon needs, take longer to load than most
    # other commands take to run.
    from fusefs import daemon

    request = daemon.MountRequest(
        store_url=args.store or default_store_url(),
        name=args.name,
        mountpoint=mountpoint,
        read_only="ro" in options,
        allow_other="allow_other" in options,
        strict="strict" in options,
        writeback_cache="writeback_cache" in options,
        shared="shared" in options,
        cache_dir=_absolute(option_value(options, "cache_dir")),
        cache_size=size_option(options, "cache_size"),
        staging_size=size_option(options, "staging_size"),
        acl="acl" in options,
        provenance="provenance" in options,
        log_file=os.path.abspath(log_file) if log_file else None,
        debug=args.debug,
        log_level=args.log_level,
        metrics=metrics,
    )
    if args.foreground:
        return daemon.mount_foreground(request)
    return daemon.mount_background(request)


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def add_mount_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    mount = add_command(
        commands,
        common,
        "mount",
        cmd_mount,
        "mount a filesystem (as a background daemon unless --foreground)",
    )
    mount.epilog = (
        f"Without --store, the '{DEFAULT_NAME}' filesystem of the default store is created on first mount. "
        "Options for -o (comma-separated): "
        + "; ".join(f"{option}: {meaning}" for option, meaning in MOUNT_OPTIONS.items())
        + "; cache_dir=DIR: with a data tier (mkfs --data), this host's own staging and cache directory "
        "instead of the filesystem's block directories; cache_size=BYTES: the limit of the cache of "
        "objects read from the data tier (default 8G). A data tier's credentials come from "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the file AWS_SHARED_CREDENTIALS_FILE names"
    )
    store_option(mount)
    name_option(mount)
    mount.add_argument(
        "-o",
        metavar="OPTS",
        action="append",
        default=[],
        help=f"mount options: {','.join(MOUNT_OPTIONS)} (see below)",
    )
    mount.add_argument(
        "--foreground",
        "-f",
        action="store_true",
        help="serve in this process, logging to stderr; SIGINT/SIGTERM unmount",
    )
    mount.add_argument(
        "--log-file",
        metavar="PATH",
        help=f"daemon log (default: {data_dir(create=False)}/NAME.log in the background, "
        "stderr in the foreground; '-' for stderr, without timestamps under systemd's journal); "
        "SIGHUP reopens it, for logrotate",
    )
    mount.add_argument(
        "--log-level",
        choices=logs.LEVELS,
        default="info",
        help="the least severe records logged (default: info; --debug means debug)",
    )
    mount.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory (it may be non-empty)")


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint = mount_table.resolve_mountpoint(args.mountpoint)
    entry = mount_table.mount_at(mountpoint)
    if entry is None:
        raise CliError(f"{args.mountpoint} is not mounted")
    if not mount_table.is_fusefs(entry):
        raise CliError(f"{args.mountpoint} is not a fusefs mount (it is {entry.fstype} {entry.source})")
    owners = [record.pid for record in daemon_records.running_daemons() if record.mountpoint == mountpoint]
    command = ["fusermount3", "-u", *(["-z"] if args.lazy else []), mountpoint]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CliError("fusermount3 not found: install the fuse3 package") from None
    if result.returncode != 0:
        said = result.stderr.strip().splitlines()
        raise CliError(
            said[-1] if said else f"fusermount3 -u {mountpoint} failed (status {result.returncode})"
        )
    # Wait for the daemon to flush and release the store, so that a command run right after this one
    # (a new mount, gc) finds the store free.  Not after a lazy unmount: the daemon then serves the
    # processes still using the detached mount for as long as they do.
    for pid in [] if args.lazy else owners:
        if not daemon_records.wait_for_exit(pid, UMOUNT_WAIT_S):
            print(
                f"fusefs: warning: daemon {pid} still running {UMOUNT_WAIT_S:g} s after unmount",
                file=sys.stderr,
            )
    return 0


def add_umount_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    umount = add_command(
        commands, common, "umount", cmd_umount, "unmount a fusefs mount and wait for its daemon to finish"
    )
    umount.add_argument("--lazy", "-z", action="store_true", help="detach now even if busy (fusermount3 -z)")
    umount.add_argument("mountpoint", metavar="MOUNTPOINT")


def cmd_status(args: argparse.Namespace) -> int:
    mounts = [entry for entry in mount_table.mount_table() if mount_table.is_fusefs(entry)]
    owners = {record.mountpoint: record for record in daemon_records.running_daemons()}
    if not mounts:
        print("no fusefs filesystem is mounted")
    for entry in mounts:
        print(f"{printable(entry.mountpoint)}: {_describe_mount(entry, owners.get(entry.mountpoint))}")
    url = args.store or default_store_url(create=False)
    if args.store is None and not os.path.exists(url.removeprefix(SQLITE_PREFIX)):
        print(f"store {printable(url)}: does not exist yet ('fusefs mount' or 'fusefs mkfs' creates it)")
        return 0
    mounted_at = {record.name: record.mountpoint for record in owners.values() if record.store_url == url}
    with opened_store(url, read_only=True, exclusive=False) as store:
        filesystems = list_filesystems(store)
        print(f"store {printable(store.url)}: {len(filesystems)} filesystem(s)")
        for config in filesystems:
            where = f", mounted at {printable(mounted_at[config.name])}" if config.name in mounted_at else ""
            print(f"  {printable(config.name)}: {describe_config(config)}{where}")
            if config.trash_days:
                print(f"    {trash_usage(store, config)}")
            for line in _describe_sessions(sessions_of(store, config.name)):
                print(f"    {printable(line)}")
    return 0


def _describe_sessions(found: dict[bytes, sessions.Session]) -> list[str]:
    """One line per mount session: where it runs, its age and heartbeat, and whether it is dead."""
    now, timeout, here = now_ns(), sessions.timeout_s(), sessions.this_process()
    lines = []
    for session in sorted(found.values(), key=lambda s: s.started_ns):
        name = f"session {session.id.hex() or '(before sessions)'}"
        claim = f", being recovered by session {session.claimed_by.hex()}" if session.claimed_by else ""
        if session.is_stand_in:
            lines.append(f"{name}: ended{claim}")
            continue
        text = (
            f"{name}: {session.host} pid {session.pid} at {session.mountpoint}, "
            f"up {seconds(now - session.started_ns)}, heartbeat {seconds(now - session.heartbeat_ns)} ago"
        )
        if claim:
            text += f" (dead{claim})"
        elif sessions.is_dead(session, now_ns=now, timeout_s=timeout, here=here):
            text += " (dead, will be recovered by the next mount)"
        lines.append(text)
    return lines


def _describe_mount(entry: mount_table.MountEntry, record: daemon_records.DaemonRecord | None) -> str:
    name = printable(entry.source.removeprefix("fusefs:"))
    if record is not None:
        log_file = printable(record.log_file or "stderr")
        return f"'{name}' in {printable(record.store_url)} (pid {record.pid}, log {log_file})"
    if mount_table.probe_errno(entry.mountpoint, STATUS_PROBE_S) == errno.ENOTCONN:
        # The kernel keeps the mount of a daemon that died until it is unmounted.
        command = printable(f"fusefs umount {shlex.quote(entry.mountpoint)}")
        return f"'{name}' (daemon not running: run `{command}`)"
    # The daemon's record is in another user's (or another) data directory.
    return f"'{name}' (store unknown: mounted by another user or data directory)"


def add_status_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    status = add_command(
        commands,
        common,
        "status",
        cmd_status,
        "list mounted fusefs filesystems and the filesystems in a store",
    )
    store_option(status)
