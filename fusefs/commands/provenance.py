"""``fusefs provenance``: who opened a file, or what a user opened (metadata/provenance.py).

Reads beside a running daemon (a read-only, non-exclusive store).  PATH is a path in a mounted fusefs,
or a path from the root of filesystem ``--name`` of ``--store``."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import re

from fusefs.commands.common import (
    CliError,
    Subcommands,
    UsageError,
    add_command,
    in_mount,
    name_option,
    opened_store,
    store_option,
)
from metadata import provenance
from metadata.keys import FsKeys
from metadata.model import FSError, now_ns
from metadata.namespace import load_config
from metadata.provenance import Access

DEFAULT_LIMIT = 1000
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since(text: str) -> int:
    """``2h`` (ago; s, m, h, d) or an ISO 8601 time (UTC unless it says otherwise) → ns since the epoch."""
    match = _AGO.fullmatch(text.strip())
    if match:
        return now_ns() - int(float(match.group(1)) * _UNIT_S[match.group(2)] * 1e9)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use an ISO 8601 time (2026-12-07T18:00) or an age (30m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1e9)


def cmd_provenance(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be 1 or more, not {args.limit}")
    if (args.path is None) == (args.uid is None):
        raise UsageError("give either PATH or --uid N")
    if args.since is not None and args.uid is None:
        raise UsageError("--since goes with --uid")
    url, name, path = args.store, args.name, args.path
    mounted = None if path is None else in_mount(path)
    if mounted is not None:
        url, name, path = mounted
    with opened_store(url, read_only=True, exclusive=False) as store:
        keys = FsKeys(load_config(store, name).name)
        if path is None:
            read = functools.partial(
                provenance.of_user, keys=keys, uid=args.uid, since_ns=args.since or 0, limit=args.limit
            )
            found = store.transact(read)
        else:
            try:
                _, found = store.transact(
                    functools.partial(provenance.of_path, keys=keys, path=os.fsencode(path), limit=args.limit)
                )
            except FSError as error:
                raise CliError(f"{args.path}: {os.strerror(error.errno)}") from None
    for access in found:
        print(json.dumps(_as_json(access)) if args.json else _describe(access))
    return 0


def _time(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _describe(access: Access) -> str:
    return (
        f"{_time(access.opened_ns)} - {_time(access.closed_ns)} ino={access.ino} uid={access.uid} "
        f"pid={access.pid} command={json.dumps(access.command)} read={access.bytes_read} "
        f"written={access.bytes_written}"
    )


def _as_json(access: Access) -> dict[str, object]:
    return {
        "ino": access.ino,
        "uid": access.uid,
        "pid": access.pid,
        "command": access.command,
        "opened_ns": access.opened_ns,
        "closed_ns": access.closed_ns,
        "bytes_read": access.bytes_read,
        "bytes_written": access.bytes_written,
        "session": access.session.hex(),
    }


def add_provenance_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        commands,
        common,
        "provenance",
        cmd_provenance,
        "who opened a file, or what a user opened (mkfs --provenance or mount -o provenance)",
    )
    parser.epilog = (
        "One line per open-to-close of a file: open and close time (UTC), inode, uid, pid, the process's "
        "command name, bytes read and written. Records are kept as long as the change log "
        "(mkfs --log-retention)."
    )
    store_option(parser)
    name_option(parser)
    parser.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        help="a file in a mounted fusefs, or a path from the root of --name in --store: its history",
    )
    parser.add_argument("--uid", type=int, metavar="N", help="what user N opened (instead of PATH)")
    parser.add_argument(
        "--since",
        type=since,
        metavar="T",
        help="with --uid: files opened at or after T, an ISO 8601 time (UTC unless given) or an age "
        "such as 30m, 2h or 1d (default: every record kept)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"print at most N records, oldest first (default: {DEFAULT_LIMIT})",
    )
