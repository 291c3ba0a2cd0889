"""What the subcommands share: argument types, errors, the store and filesystem steps, options."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from fusefs import daemon_records, messages
from fusefs.blockdirs import claim_new, owner_of, undo_claims_on_error
from fusefs.datatier import DataTierRequest, describe_data_tier, open_data_tier
from fusefs.limits import (
    chunk_size_problem,
    inline_max_problem,
)
from metadata import sessions
from metadata.model import (
    DEFAULT_LOG_HOLD_S,
    DEFAULT_LOG_RETENTION_S,
    Caller,
    FsConfig,
    new_fs_id,
)
from metadata.namespace import (
    Namespace,
    UnknownFilesystem,
    format_filesystem,
    load_config,
)
from metadata.printable import printable
from metadata.store import CorruptValue, Store
from metadata.trash import make_trash_dir
from metadata.urls import (
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
    "acl": "POSIX ACLs (setfacl, getfacl), enforced by the kernel; off by default since the kernel then "
    "reads each file's ACL before checking access to it (measured: stat and open as another user are "
    "slower)",
    "cache_dir": "cache_dir=DIR: this host's own staging and cache directory of a filesystem with a data "
    "tier (mkfs --data), instead of its block directories",
    "cache_size": "cache_size=BYTES (K, M, G): the limit of this mount's cache of objects of the data tier "
    "(default 8G)",
    "staging_size": "staging_size=BYTES (K, M, G): how much written data may wait for its upload to the data "
    "tier before writes wait for the object store (default 1G)",
    "provenance": "record every open and close of a file by this mount: who (uid, pid, command), when, "
    "bytes read and written (fusefs provenance); on for every mount with mkfs --provenance",
    "metrics": "metrics=IP:PORT serves Prometheus metrics at http://IP:PORT/metrics (off by default)",
    "shared": "several read-write mounts of one embedded store file at once, behaving as on FoundationDB "
    "(transactions in worker threads, 1 s kernel cache timeouts and change-log invalidation); every "
    "read-write mount of the file needs it (FoundationDB is always shared: accepted and ignored there)",
}
LOG_PAGE_RECORDS = 1000
LOG_FOLLOW_POLL_S = 0.5
UMOUNT_WAIT_S = 30.0
#: How long `status` waits for a mount without a known daemon to answer (a hung one never does).
STATUS_PROBE_S = 2.0


class UsageError(Exception):
    """Bad arguments: exit status 2."""


class CliError(Exception):
    """An expected failure with a message for the user: exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of this command (argparse prints the usage too).
        raise UsageError(f"{message} (see '{self.prog} --help')")


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


#: Options that take a value (``metrics=127.0.0.1:9567``).
VALUED_OPTIONS = {"metrics", "cache_dir", "cache_size", "staging_size"}


def parse_mount_options(values: Sequence[str]) -> set[str]:
    """The ``-o`` options; a valued one stays ``key=value`` (``option_value`` reads it)."""
    options = {option.strip() for value in values for option in value.split(",") if option.strip()}
    keys = {option.partition("=")[0] for option in options}
    unknown = sorted(keys - MOUNT_OPTIONS.keys())
    if unknown:
        raise UsageError(f"unsupported mount option {unknown[0]!r}: supported are {', '.join(MOUNT_OPTIONS)}")
    if {"ro", "rw"} <= options:
        raise UsageError("mount options 'ro' and 'rw' contradict each other")
    for excluded in ("ro", "strict"):
        if {excluded, "writeback_cache"} <= options:
            raise UsageError(f"mount options {excluded!r} and 'writeback_cache' cannot be combined")
    for option in options:
        key, equals, value = option.partition("=")
        if (key in VALUED_OPTIONS) != bool(equals and value):
            wanted = f"'{key}=VALUE'" if key in VALUED_OPTIONS else f"'{key}' without a value"
            raise UsageError(f"mount option {option!r}: use {wanted}")
    if len([option for option in options if "=" in option]) != len(keys & VALUED_OPTIONS):
        raise UsageError("a mount option with a value is given twice")
    return options


def option_value(options: set[str], key: str) -> str | None:
    return next((option.partition("=")[2] for option in options if option.startswith(key + "=")), None)


def size_option(options: set[str], key: str) -> int | None:
    """The value of mount option `key`=BYTES, None when not given."""
    text = option_value(options, key)
    if text is None:
        return None
    try:
        return byte_size(text)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"mount option '{key}=': {error}") from None


def default_block_dir(name: str, *, create: bool = True) -> str:
    return os.path.join(data_dir(create=create), "blocks", name)


@contextmanager
def opened_store(
    url: str | None,
    *,
    read_only: bool = False,
    exclusive: bool = True,
    shared: bool = False,
    create: bool = False,
) -> Iterator[Store]:
    """The store ``url`` names (the default store for None), opened as ``open_store`` does; a damaged
    store met while using it is one error line naming it."""
    store = open_store(
        url or default_store_url(), read_only=read_only, exclusive=exclusive, shared=shared, create=create
    )
    try:
        yield store
    except (CorruptValue, sqlite3.DatabaseError) as error:
        # A damaged value, or a damaged page of the embedded store's file met while reading: say which
        # store, rather than show a decoding error (or SQLite's) as if it were a bug of ours.
        raise CliError(f"store {printable(store.url)} is damaged: {messages.one_line(error)}") from error
    finally:
        store.close()


def in_mount(path: str) -> tuple[str, str, str] | None:
    """(store, filesystem, path from its root) of a path inside a mounted fusefs, if it is one."""
    absolute = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.basename(path))
    for record in daemon_records.running_daemons():
        top = record.mountpoint.rstrip("/")
        if absolute == top or absolute.startswith(top + "/"):
            return record.store_url, record.name, absolute[len(top) :] or "/"
    return None


def positive_hours(text: str) -> int:
    try:
        hours = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of hours: {text!r}") from None
    if hours <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 hour, not {hours}")
    return hours


def days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more days, not {value}")
    return value


def make_filesystem(
    store: Store,
    name: str,
    block_dirs: list[str],
    inline_max: int,
    chunk_size: int,
    log_retention_s: int = DEFAULT_LOG_RETENTION_S,
    log_hold_s: int = DEFAULT_LOG_HOLD_S,
    trash_days: int = 0,
    search_index: bool = False,
    data: DataTierRequest | None = None,
    provenance: bool = False,
) -> FsConfig:
    if has_filesystem(store, name):
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
        log_hold_s=log_hold_s,
        fs_id=new_fs_id(),
        trash_days=trash_days,
        search_index=search_index,
        provenance=provenance,
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
            if trash_days:
                make_trash_dir(store, Namespace(config))
    finally:
        blocks.close()
    return config


def describe_config(config: FsConfig) -> str:
    return (
        f"{describe_data_tier(config)}"
        f"blocks {', '.join(map(printable, config.block_dirs))}; inline max {config.inline_max_bytes} bytes; "
        f"chunk {config.chunk_size_bytes} bytes; change log kept {config.log_retention_s // 3600} h "
        f"(for consumers up to {config.log_hold_s // 3600} h); "
        + (f"trash kept {config.trash_days} days" if config.trash_days else "no trash")
        + f"; search indexes {'on' if config.search_index else 'off'}"
        + f"; provenance {'on' if config.provenance else 'off'}"
    )


def check_sizes(inline_max: int, chunk_size: int) -> None:
    problem = chunk_size_problem(chunk_size)
    if problem is not None:
        raise UsageError(f"--chunk-size {problem}")
    problem = inline_max_problem(inline_max, chunk_size)
    if problem is not None:
        raise UsageError(f"--inline-max {problem}")


def has_filesystem(store: Store, name: str) -> bool:
    try:
        load_config(store, name)
    except UnknownFilesystem:
        return False
    return True


def sessions_of(store: Store, name: str) -> dict[bytes, sessions.Session]:
    return store.transact(functools.partial(sessions.sessions_of, fs_name=name))


Subcommands = argparse._SubParsersAction


def add_command(
    commands: Subcommands,
    common: argparse.ArgumentParser,
    name: str,
    run: Callable[[argparse.Namespace], int],
    help_text: str,
) -> argparse.ArgumentParser:
    """A subcommand ``name`` that runs ``run(args)``, with the options every command has."""
    sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
    sub.set_defaults(run=run)
    return sub


def store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        type=store_url_argument,
        help="metadata store: sqlite:///ABSOLUTE/PATH or fdb://[/CLUSTER_FILE] "
        f"(default: {default_store_url(create=False)})",
    )


def name_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        type=filesystem_name,
        default=DEFAULT_NAME,
        help=f"filesystem name in the store (default: {DEFAULT_NAME})",
    )


def seconds(ns: int) -> str:
    return f"{max(ns, 0) / 1e9:.0f}s"
