"""The ``fusefs`` command: one function per subcommand, every failure one line on stderr.

Exit status: 0 success, 1 failure, 2 usage error (bad arguments, options or store URL), 130 interrupted.
``--debug`` on any subcommand prints the traceback before the one-line error.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

from blocks import Access, BlockStore
from blocks.objects import DataUrl
from fusefs import daemon
from fusefs.blockdirs import claim_new, open_block_store, owner_of, undo_claims_on_error
from fusefs.datatier import describe_data_tier, open_data_tier
from fusefs.limits import (
    MAX_CHUNK_SIZE_BYTES,
    MAX_INLINE_MAX_BYTES,
    chunk_size_problem,
    human,
    inline_max_problem,
)
from metadata import sessions
from metadata.changelog import read_log
from metadata.keys import FsKeys
from metadata.model import (
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_INLINE_MAX_BYTES,
    DEFAULT_LOG_RETENTION_S,
    Caller,
    FsConfig,
    new_fs_id,
    now_ns,
)
from metadata.namespace import (
    UnknownFilesystem,
    format_filesystem,
    list_filesystems,
    load_config,
    save_config,
)
from metadata.printable import printable
from metadata.store import CorruptValue, Store
from metadata.urls import (
    SQLITE_PREFIX,
    StoreUrlError,
    check_store_url,
    data_dir,
    default_store_url,
    open_store,
)

DEFAULT_NAME = "default"
#: Used in file names (log file, default block directory), hence no slashes or leading dots.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SIZE_PATTERN = re.compile(r"(\d+)\s*([KMG]?)(i?B)?", re.IGNORECASE)
MOUNT_OPTIONS = {
    "ro": "read-only mount",
    "rw": "read-write mount (the default)",
    "allow_other": "let other users use the mount (as non-root: needs user_allow_other in /etc/fuse.conf)",
    "strict": "invalidate kernel caches as soon as another mount's change is seen, not after a timeout",
    "writeback_cache": "let the kernel gather writes in its page cache and send them in large pieces: "
    "faster small writes (tar -x), slower rename, unlink and first stat after a write",
    "shared": "several read-write mounts of one embedded store file at once, behaving as on FoundationDB "
    "(transactions in worker threads, 1 s kernel cache timeouts and change-log invalidation); every "
    "read-write mount of the file needs it (FoundationDB is always shared: accepted and ignored there)",
}
#: Options with a value (`-o NAME=VALUE`), read by ``valued_mount_option``.
VALUED_MOUNT_OPTIONS = ("cache_dir=", "cache_size=")
LOG_PAGE_RECORDS = 1000
LOG_FOLLOW_POLL_S = 0.5
UMOUNT_WAIT_S = 30.0
#: How long `status` waits for a mount without a known daemon to answer (a hung one never does).
STATUS_PROBE_S = 2.0


class UsageError(Exception):
    """Bad arguments: exit status 2."""


class CliError(Exception):
    """An expected failure with a message for the user: exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of this command (argparse prints the usage too).
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types ---------------------------------------------------------------------------------------
def filesystem_name(text: str) -> str:
    if not _NAME_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid filesystem name {text!r}: use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return text


def store_url_argument(text: str) -> str:
    # An empty value would otherwise fall back to the default store, which is not what was asked for.
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "empty store URL: give sqlite:///ABSOLUTE/PATH or fdb://[/CLUSTER_FILE], "
            "or leave --store out for the default store"
        )
    return text


def byte_size(text: str) -> int:
    """``65536``, ``64K``, ``64KiB``, ``4M``, ``1G`` (binary multiples)."""
    match = _SIZE_PATTERN.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use bytes, or a number with K, M or G")
    number, unit = int(match.group(1)), match.group(2).upper()
    return number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]


def parse_mount_options(values: Sequence[str]) -> set[str]:
    options = {option.strip() for value in values for option in value.split(",") if option.strip()}
    options -= {option for option in options if option.startswith(VALUED_MOUNT_OPTIONS)}
    unknown = sorted(options - MOUNT_OPTIONS.keys())
    if unknown:
        raise UsageError(f"unsupported mount option {unknown[0]!r}: supported are {', '.join(MOUNT_OPTIONS)}")
    if {"ro", "rw"} <= options:
        raise UsageError("mount options 'ro' and 'rw' contradict each other")
    for excluded in ("ro", "strict"):
        if {excluded, "writeback_cache"} <= options:
            raise UsageError(f"mount options {excluded!r} and 'writeback_cache' cannot be combined")
    return options


def valued_mount_option(values: Sequence[str], prefix: str) -> str | None:
    found = [o.strip()[len(prefix) :] for v in values for o in v.split(",") if o.strip().startswith(prefix)]
    if found and not found[-1]:
        raise UsageError(f"mount option {prefix!r} needs a value")
    return found[-1] if found else None


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def cache_size_option(values: Sequence[str]) -> int | None:
    text = valued_mount_option(values, "cache_size=")
    if text is None:
        return None
    try:
        return byte_size(text)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"mount option 'cache_size=': {error}") from None


# -- shared steps -----------------------------------------------------------------------------------------
def default_block_dir(name: str, *, create: bool = True) -> str:
    return os.path.join(data_dir(create=create), "blocks", name)


@contextmanager
def opened_store(url: str | None, **options: bool) -> Iterator[Store]:
    store = open_store(url or default_store_url(), **options)
    try:
        yield store
    except (CorruptValue, sqlite3.DatabaseError) as error:
        # A damaged value, or a damaged page of the embedded store's file met while reading: say which
        # store, rather than show a decoding error (or SQLite's) as if it were a bug of ours.
        raise CliError(f"store {printable(store.url)} is damaged: {daemon.one_line(error)}") from error
    finally:
        store.close()


def positive_hours(text: str) -> int:
    try:
        hours = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of hours: {text!r}") from None
    if hours <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 hour, not {hours}")
    return hours


def make_filesystem(
    store: Store,
    name: str,
    block_dirs: list[str],
    inline_max: int,
    chunk_size: int,
    log_retention_s: int = DEFAULT_LOG_RETENTION_S,
    data: DataTierRequest | None = None,
) -> FsConfig:
    if _has_filesystem(store, name):
        # Checked before the block directories are laid out, so a repeated mkfs changes nothing.
        raise CliError(f"a filesystem named '{name}' already exists in {store.url}")
    if not block_dirs:
        block_dirs = [default_block_dir(name)]
        os.makedirs(block_dirs[0], exist_ok=True)
    config = FsConfig(
        name=name,
        inline_max_bytes=inline_max,
        chunk_size_bytes=chunk_size,
        log_retention_s=log_retention_s,
        fs_id=new_fs_id(),
    )
    if data is not None:
        config.data_url, config.s3_endpoint = str(data.url), data.endpoint
        open_data_tier(config, data.credentials_file)  # a wrong bucket or credentials fail here, not later
    # Claimed before the filesystem exists, so that a directory another filesystem claims meanwhile is
    # refused here rather than shared; undone if the filesystem cannot be created.
    blocks = claim_new(block_dirs, chunk_size, owner_of(config, store))
    try:
        with undo_claims_on_error(blocks, 0):
            config.block_dirs = list(blocks.directories)
            # The root directory belongs to whoever made the filesystem, so a user's own mount is writable.
            format_filesystem(store, config, Caller(uid=os.getuid(), gid=os.getgid()))
    finally:
        blocks.close()
    return config


@dataclass
class DataTierRequest:
    """mkfs --data, --s3-endpoint, --s3-credentials."""

    url: DataUrl
    endpoint: str
    credentials_file: str | None


def data_tier_request(args: argparse.Namespace) -> DataTierRequest | None:
    if args.data is None:
        if args.s3_endpoint is not None or args.s3_credentials is not None:
            raise UsageError("--s3-endpoint and --s3-credentials go with --data")
        return None
    if args.s3_endpoint is None:
        raise UsageError("--data needs --s3-endpoint URL")
    if not re.fullmatch(r"https?://[^\s/]+/?", args.s3_endpoint):
        raise UsageError(f"--s3-endpoint must look like http(s)://HOST[:PORT], not {args.s3_endpoint!r}")
    try:
        url = DataUrl.parse(args.data)
    except ValueError as error:
        raise UsageError(f"--data: {error}") from None
    return DataTierRequest(url, args.s3_endpoint.rstrip("/"), args.s3_credentials)


def describe_config(config: FsConfig) -> str:
    return (
        f"{describe_data_tier(config)}"
        f"blocks {', '.join(map(printable, config.block_dirs))}; inline max {config.inline_max_bytes} bytes; "
        f"chunk {config.chunk_size_bytes} bytes; change log kept {config.log_retention_s // 3600} h"
    )


# -- subcommands ------------------------------------------------------------------------------------------
def _check_sizes(inline_max: int, chunk_size: int) -> None:
    problem = chunk_size_problem(chunk_size)
    if problem is not None:
        raise UsageError(f"--chunk-size {problem}")
    problem = inline_max_problem(inline_max, chunk_size)
    if problem is not None:
        raise UsageError(f"--inline-max {problem}")


def cmd_mkfs(args: argparse.Namespace) -> int:
    _check_sizes(args.inline_max, args.chunk_size)  # before the store file is created
    data = data_tier_request(args)
    with opened_store(args.store, create=True) as store:
        config = make_filesystem(
            store,
            args.name,
            args.blocks,
            args.inline_max,
            args.chunk_size,
            args.log_retention_hours * 3600,
            data,
        )
        print(f"created filesystem '{config.name}' in {printable(store.url)} ({describe_config(config)})")
    return 0


def _has_filesystem(store: Store, name: str) -> bool:
    try:
        load_config(store, name)
    except UnknownFilesystem:
        return False
    return True


def _ensure_default_filesystem() -> None:
    """``fusefs mount`` without a store: the default filesystem in the default store, made on first use."""
    url = default_store_url()
    if os.path.exists(url.removeprefix(SQLITE_PREFIX)):
        # Looked up without taking ownership, so that a read-only mount beside the owning daemon works.
        with opened_store(url, read_only=True, exclusive=False) as store:
            if _has_filesystem(store, DEFAULT_NAME):
                return
    with opened_store(url, create=True) as store:
        if not _has_filesystem(store, DEFAULT_NAME):
            config = make_filesystem(
                store, DEFAULT_NAME, [], DEFAULT_INLINE_MAX_BYTES, DEFAULT_CHUNK_SIZE_BYTES
            )
            print(f"created filesystem '{DEFAULT_NAME}' in {store.url} ({describe_config(config)})")


def cmd_mount(args: argparse.Namespace) -> int:
    options = parse_mount_options(args.o)
    mountpoint = daemon.check_mountpoint(args.mountpoint)
    if args.store is not None:
        check_store_url(args.store)  # here, as a usage error, rather than from the daemon
    if args.store is None and args.name == DEFAULT_NAME:
        _ensure_default_filesystem()
    log_file = args.log_file
    if log_file is None and not args.foreground:
        log_file = os.path.join(data_dir(), f"{args.name}.log")
    request = daemon.MountRequest(
        store_url=args.store or default_store_url(),
        name=args.name,
        mountpoint=mountpoint,
        read_only="ro" in options,
        allow_other="allow_other" in options,
        strict="strict" in options,
        writeback_cache="writeback_cache" in options,
        shared="shared" in options,
        cache_dir=_absolute(valued_mount_option(args.o, "cache_dir=")),
        cache_size=cache_size_option(args.o),
        log_file=os.path.abspath(log_file) if log_file else None,
        debug=args.debug,
    )
    if args.foreground:
        return daemon.mount_foreground(request)
    return daemon.mount_background(request)


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint = daemon.resolve_mountpoint(args.mountpoint)
    entry = daemon.mount_at(mountpoint)
    if entry is None:
        raise CliError(f"{args.mountpoint} is not mounted")
    if not daemon.is_fusefs(entry):
        raise CliError(f"{args.mountpoint} is not a fusefs mount (it is {entry.fstype} {entry.source})")
    owners = [record.pid for record in daemon.running_daemons() if record.mountpoint == mountpoint]
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
        if not daemon.wait_for_exit(pid, UMOUNT_WAIT_S):
            print(
                f"fusefs: warning: daemon {pid} still running {UMOUNT_WAIT_S:g} s after unmount",
                file=sys.stderr,
            )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    mounts = [entry for entry in daemon.mount_table() if daemon.is_fusefs(entry)]
    owners = {record.mountpoint: record for record in daemon.running_daemons()}
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
            for line in _describe_sessions(_sessions_of(store, config.name)):
                print(f"    {printable(line)}")
    return 0


def _sessions_of(store: Store, name: str) -> dict[bytes, sessions.Session]:
    return store.transact(functools.partial(sessions.list_sessions, keys=FsKeys(name)))


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
            f"up {_seconds(now - session.started_ns)}, heartbeat {_seconds(now - session.heartbeat_ns)} ago"
        )
        if claim:
            text += f" (dead{claim})"
        elif sessions.is_dead(session, now_ns=now, timeout_s=timeout, here=here):
            text += " (dead, will be recovered by the next mount)"
        lines.append(text)
    return lines


def _seconds(ns: int) -> str:
    return f"{max(ns, 0) / 1e9:.0f}s"


def _describe_mount(entry: daemon.MountEntry, record: daemon.DaemonRecord | None) -> str:
    name = printable(entry.source.removeprefix("fusefs:"))
    if record is not None:
        log_file = printable(record.log_file or "stderr")
        return f"'{name}' in {printable(record.store_url)} (pid {record.pid}, log {log_file})"
    if daemon.probe_errno(entry.mountpoint, STATUS_PROBE_S) == errno.ENOTCONN:
        # The kernel keeps the mount of a daemon that died until it is unmounted.
        command = printable(f"fusefs umount {shlex.quote(entry.mountpoint)}")
        return f"'{name}' (daemon not running: run `{command}`)"
    # The daemon's record is in another user's (or another) data directory.
    return f"'{name}' (store unknown: mounted by another user or data directory)"


def cmd_log(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError(f"--limit must be 0 (no limit) or more, not {args.limit}")

    # Read-only and not exclusive: the log is read while a daemon owns the store.
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        load_config(store, args.name)
        after: bytes | None = None
        printed = 0
        while not args.limit or printed < args.limit:
            page = LOG_PAGE_RECORDS if not args.limit else min(LOG_PAGE_RECORDS, args.limit - printed)
            records = store.transact(functools.partial(read_log, fs_name=args.name, after=after, limit=page))
            for record in records:
                print(record.describe())
            printed += len(records)
            if records:
                after = records[-1].versionstamp
            if len(records) < page:  # caught up with the log
                if not args.follow:
                    break
                sys.stdout.flush()
                time.sleep(LOG_FOLLOW_POLL_S)
    return 0


def _open_filesystem_blocks(store: Store, name: str) -> tuple[FsConfig, BlockStore]:
    return open_block_store(store, name, writable=True)


def _refuse_if_mounted(store: Store, name: str) -> None:
    """A ``CliError`` naming a live mount of filesystem ``name``, if there is one (on any backend)."""
    now = now_ns()
    live = sessions.live_sessions(
        _sessions_of(store, name), now_ns=now, timeout_s=sessions.timeout_s(), here=sessions.this_process()
    )
    if live:
        mount = live[0]
        raise CliError(
            f"{name} is mounted ({mount.host} pid {mount.pid} at {mount.mountpoint}, heartbeat "
            f"{_seconds(now - mount.heartbeat_ns)} ago): a mounted daemon collects garbage itself; "
            "unmount every mount to run gc by hand"
        )


def cmd_gc(args: argparse.Namespace) -> int:
    # A mounted daemon collects garbage itself, every GC_INTERVAL_S: refused while one is alive.
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        load_config(store, args.name)
        _refuse_if_mounted(store, args.name)
    # Exclusive: on the embedded store, no daemon can start meanwhile.
    with opened_store(args.store) as store:
        config, blocks = _open_filesystem_blocks(store, args.name)
        try:
            from fusefs.gc import collect_garbage

            print(collect_garbage(store, config, blocks))
        finally:
            blocks.close()
        objects = open_data_tier(config)
        if objects is not None:
            from fusefs.objectgc import collect_objects

            print(collect_objects(store, config, objects, grace_s=args.object_grace))
    return 0


def cmd_blocks_add(args: argparse.Namespace) -> int:
    # Exclusive: a mounted daemon would not see the new directory, and could overwrite the settings.
    with opened_store(args.store) as store:
        config, blocks = open_block_store(store, args.name, writable=True)
        try:
            with undo_claims_on_error(blocks, len(blocks.directories)):
                new_dir = blocks.directories[blocks.add_directory(args.directory, Access.CLAIM)]
                config.block_dirs = list(blocks.directories)
                save_config(store, config)
        finally:
            blocks.close()
        print(f"added block directory {new_dir} to '{config.name}' ({len(config.block_dirs)} directories)")
    return 0


# -- the parser -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    store_url = default_store_url(create=False)
    blocks_default = default_block_dir("NAME", create=False)
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print tracebacks (and, for mount, debug logs)")

    def store_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--store",
            metavar="URL",
            type=store_url_argument,
            help=f"metadata store: sqlite:///ABSOLUTE/PATH or fdb://[/CLUSTER_FILE] (default: {store_url})",
        )

    def name_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--name",
            type=filesystem_name,
            default=DEFAULT_NAME,
            help=f"filesystem name in the store (default: {DEFAULT_NAME})",
        )

    parser = _Parser(
        prog="fusefs",
        description="A POSIX filesystem in FUSE with transactional metadata "
        "(FoundationDB or embedded SQLite).",
        epilog=f"Data directory: {data_dir(create=False)} ($XDG_DATA_HOME/fusefs).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    mkfs = command("mkfs", cmd_mkfs, "create a filesystem in a store")
    store_option(mkfs)
    mkfs.add_argument(
        "--blocks",
        metavar="DIR",
        action="append",
        default=[],
        help=f"block directory for large files' chunks, empty or never used by another filesystem; "
        f"repeat for several disks (default: {blocks_default}, created)",
    )
    mkfs.add_argument(
        "--inline-max",
        metavar="BYTES",
        type=byte_size,
        default=DEFAULT_INLINE_MAX_BYTES,
        help="files up to this size live inline in the metadata store; at most the chunk size and "
        f"{human(MAX_INLINE_MAX_BYTES)} (default: {DEFAULT_INLINE_MAX_BYTES // 1024} KiB; "
        "K, M, G suffixes accepted)",
    )
    mkfs.add_argument(
        "--chunk-size",
        metavar="BYTES",
        type=byte_size,
        default=DEFAULT_CHUNK_SIZE_BYTES,
        help=f"chunk size of large files, a multiple of 4 KiB up to {human(MAX_CHUNK_SIZE_BYTES)} "
        f"(default: {DEFAULT_CHUNK_SIZE_BYTES // (1024 * 1024)} MiB)",
    )
    mkfs.add_argument(
        "--log-retention",
        dest="log_retention_hours",
        metavar="HOURS",
        type=positive_hours,
        default=DEFAULT_LOG_RETENTION_S // 3600,
        help="change-log records older than this are trimmed by the mounted daemon "
        f"(default: {DEFAULT_LOG_RETENTION_S // 3600} hours)",
    )
    mkfs.add_argument(
        "--data",
        metavar="s3://BUCKET/PREFIX",
        help="keep large files' chunks as objects in this existing bucket of an S3 object store, readable "
        "from every host (the block directories then stage writes and cache reads); needs --s3-endpoint",
    )
    mkfs.add_argument("--s3-endpoint", metavar="URL", help="the S3 endpoint of --data, http(s)://HOST[:PORT]")
    mkfs.add_argument(
        "--s3-credentials",
        metavar="FILE",
        help="S3 credentials file (AWS format, [default] aws_access_key_id, aws_secret_access_key) "
        "(default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE); "
        "never stored",
    )
    mkfs.add_argument(
        "name",
        metavar="NAME",
        nargs="?",
        type=filesystem_name,
        default=DEFAULT_NAME,
        help=f"filesystem name (default: {DEFAULT_NAME})",
    )

    mount = command("mount", cmd_mount, "mount a filesystem (as a background daemon unless --foreground)")
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
        "stderr in the foreground)",
    )
    mount.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory (it may be non-empty)")

    umount = command("umount", cmd_umount, "unmount a fusefs mount and wait for its daemon to finish")
    umount.add_argument("--lazy", "-z", action="store_true", help="detach now even if busy (fusermount3 -z)")
    umount.add_argument("mountpoint", metavar="MOUNTPOINT")

    status = command("status", cmd_status, "list mounted fusefs filesystems and the filesystems in a store")
    store_option(status)

    log_command = command("log", cmd_log, "print the change log: one line per metadata change, oldest first")
    store_option(log_command)
    name_option(log_command)
    log_command.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    log_command.add_argument(
        "--limit", "-n", metavar="N", type=int, default=0, help="stop after N records (default: no limit)"
    )

    gc = command("gc", cmd_gc, "delete chunk files that no file refers to (the filesystem must be unmounted)")
    store_option(gc)
    name_option(gc)
    gc.add_argument(
        "--object-grace",
        metavar="SECONDS",
        type=float,
        default=3600.0,
        help="with a data tier, delete unreferenced objects only once older than this, since a commit in "
        "flight may still publish a younger one (default: 3600)",
    )

    blocks = commands.add_parser(
        "blocks", help="manage block directories", description="Manage block directories."
    )
    blocks_commands = blocks.add_subparsers(dest="blocks_command", required=True, metavar="SUBCOMMAND")
    add = blocks_commands.add_parser(
        "add",
        parents=[common],
        help="add a block directory to a filesystem (unmounted)",
        description="Add an empty block directory to an existing filesystem; "
        "it takes effect at the next mount.",
    )
    add.set_defaults(run=cmd_blocks_add)
    store_option(add)
    name_option(add)
    add.add_argument("directory", metavar="DIR")
    return parser


# -- entry point ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        return int(args.run(args))
    except SystemExit as exit_request:  # --help
        return exit_request.code if isinstance(exit_request.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fusefs log | head`: the reader left; exit quietly, without Python's flush complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # the boundary: every failure becomes one line (a traceback with --debug)
        if debug:
            traceback.print_exc()
        status = 2 if isinstance(error, UsageError | StoreUrlError) else 1
        print(f"fusefs: error: {_message(error, debug)}", file=sys.stderr)
        return status


def _message(error: Exception, debug: bool) -> str:
    if isinstance(error, UsageError | CliError):
        return str(error)
    message = daemon.one_line(error)
    if not daemon.is_expected(error) and not debug:
        message += " (an internal error: run with --debug for the traceback)"
    return message
