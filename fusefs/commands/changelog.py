"""``fusefs log`` (the change log, as text or JSON lines, optionally as a named consumer with a cursor
in the store) and ``fusefs consumer list|remove``.

Reading needs no more than a read-only store, beside a running daemon.  ``--consumer`` writes its cursor
to the store, so beside a mount of the embedded store that mount must be shared (``-o shared``).  The
cursor moves once a page of records is written to stdout and flushed: a consumer killed before that gets
the page again from the next run (at least once; the ids tell the duplicates), so output that must not
be lost should go to a file, or the consumer should acknowledge itself through ``metadata/consumers.py``
after it has processed the records, as ``scripts/fts_consumer.py`` does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

from fusefs.commands.common import (
    LOG_FOLLOW_POLL_S,
    LOG_PAGE_RECORDS,
    CliError,
    Subcommands,
    UsageError,
    add_command,
    name_option,
    opened_store,
    seconds,
    store_option,
)
from metadata import consumers
from metadata.changelog import LogRecord
from metadata.keys import FsKeys
from metadata.log_reader import Page, RecordPaths, read_page
from metadata.model import now_ns
from metadata.namespace import load_config
from metadata.printable import printable
from metadata.store import Store


def cmd_log(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError(f"--limit must be 0 (no limit) or more, not {args.limit}")
    if args.consumer is not None:
        _check_consumer_name(args.consumer)
        # The cursor is written to the store: beside a mount of the embedded store, a shared one.
        with opened_store(args.store, shared=True) as store:
            keys = FsKeys(load_config(store, args.name).name)
            store.transact(functools.partial(consumers.join, keys=keys, name=args.consumer, now_ns=now_ns()))
            _print_log(store, args)
        return 0
    # Read-only and not exclusive: the log is read while a daemon owns the store.
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        _print_log(store, args)
    return 0


def _print_log(store: Store, args: argparse.Namespace) -> None:
    config = load_config(store, args.name)
    keys = FsKeys(config.name)
    after: bytes | None = None
    printed = 0
    while not args.limit or printed < args.limit:
        limit = LOG_PAGE_RECORDS if not args.limit else min(LOG_PAGE_RECORDS, args.limit - printed)
        read = functools.partial(
            read_page, keys=keys, after=after, consumer=args.consumer, limit=limit,
            indexed=config.search_index,
        )
        try:
            page = store.transact(read)
        except consumers.UnknownConsumer as error:
            raise CliError(f"{error} (removed while it was reading)") from None
        _print_page(page, args.json, args.consumer)
        printed += len(page.records)
        last = page.records[-1].versionstamp if page.records else page.missed_through
        if last is not None:
            after = last
            if args.consumer is not None:
                acknowledge = functools.partial(
                    consumers.acknowledge, keys=keys, name=args.consumer, through=last, now_ns=now_ns()
                )
                store.transact(acknowledge)
        if len(page.records) < limit:  # caught up with the log
            if not args.follow:
                break
            time.sleep(LOG_FOLLOW_POLL_S)


def _print_page(page: Page, as_json: bool, consumer: str | None) -> None:
    out = sys.stdout
    if page.missed_through is not None:
        through = page.missed_through.hex()
        missed = f"records up to {through} were trimmed before consumer {consumer} read them"
        print(f"fusefs: warning: {missed}", file=sys.stderr)
        out.write(json.dumps({"op": "missed", "through": page.missed_through.hex()}) if as_json else missed)
        out.write("\n")
    for record, paths in zip(page.records, page.paths, strict=True):
        out.write((json.dumps(_as_json(record, paths)) if as_json else _describe(record, paths)) + "\n")
    out.flush()  # before the cursor moves past these records


def _describe(record: LogRecord, paths: RecordPaths) -> str:
    line = record.describe()
    if paths.path is not None:
        line += f" path={printable(paths.path)}"
    if paths.new_path is not None:
        line += f" new_path={printable(paths.new_path)}"
    return line


def _as_json(record: LogRecord, paths: RecordPaths) -> dict[str, object]:
    """One record for programs: ``id`` (its versionstamp, in commit order) identifies it; names and
    paths are strings, with bytes that are not UTF-8 as lone surrogates (``os.fsdecode``)."""
    return {
        "id": record.versionstamp.hex(),
        "time_ns": record.time_ns,
        "op": record.op,
        "ino": record.ino,
        "uid": record.uid,
        "parent": record.parent,
        "name": _text(record.name),
        "path": _text(paths.path),
        "new_parent": record.new_parent,
        "new_name": _text(record.new_name),
        "new_path": _text(paths.new_path),
        "paths": None if paths.inode_paths is None else [_text(path) for path in paths.inode_paths],
        "session": record.session.hex(),
    }


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else os.fsdecode(raw)


def _check_consumer_name(name: str) -> None:
    try:
        consumers.check_name(name)
    except ValueError as error:
        raise UsageError(f"--consumer: {error}") from None


def add_log_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    log_command = add_command(
        commands, common, "log", cmd_log, "print the change log: one line per metadata change, oldest first"
    )
    log_command.epilog = (
        "Paths are those of the moment the record is read (a directory renamed since shows its new path). "
        "With --consumer the cursor is kept in the store: run the same command again to go on where it "
        "stopped; records it has not acknowledged are kept past the log's retention, up to the "
        "filesystem's log hold (mkfs --log-hold)."
    )
    store_option(log_command)
    name_option(log_command)
    log_command.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    log_command.add_argument(
        "--limit", "-n", metavar="N", type=int, default=0, help="stop after N records (default: no limit)"
    )
    log_command.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line: id (the record's versionstamp), time_ns, op, ino, uid, parent, name, "
        "path, new_parent, new_name, new_path, paths (the inode's, with search indexes), session",
    )
    log_command.add_argument(
        "--consumer",
        metavar="NAME",
        help="read as consumer NAME (created at its first use): start after its cursor in the store and "
        "move the cursor past each page once it is printed; needs a shared store beside a mount "
        "(default: from the oldest record kept, no cursor)",
    )


def cmd_consumer_list(args: argparse.Namespace) -> int:
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        keys = FsKeys(load_config(store, args.name).name)
        found = store.transact(functools.partial(consumers.status, keys=keys))
    now = now_ns()
    for status in found:
        consumer = status.consumer
        unread = f"{status.unread}{'+' if status.unread >= consumers.COUNT_MAX else ''}"
        lag = "0s" if status.oldest_unread_ns is None else seconds(now - status.oldest_unread_ns)
        line = (
            f"{consumer.name}\tcursor {consumer.cursor.hex()}\tunread {unread}\tlag {lag}\t"
            f"acknowledged {seconds(now - consumer.acked_ns)} ago"
        )
        if status.missed_through is not None:
            line += f"\tmissed records up to {status.missed_through.hex()}"
        print(line)
    print(f"{len(found)} consumer(s) of the change log of '{args.name}'")
    return 0


def cmd_consumer_remove(args: argparse.Namespace) -> int:
    _check_consumer_name(args.consumer)
    with opened_store(args.store, shared=True) as store:
        keys = FsKeys(load_config(store, args.name).name)
        try:
            store.transact(functools.partial(consumers.remove, keys=keys, name=args.consumer))
        except consumers.UnknownConsumer as error:
            raise CliError(str(error)) from None
    print(f"removed consumer {args.consumer}: the records it held back are trimmed as usual")
    return 0


def add_consumer_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    consumer = commands.add_parser(
        "consumer",
        help="list or remove the named consumers of the change log (fusefs log --consumer)",
        description="List or remove the named consumers of the change log (fusefs log --consumer).",
    )
    subcommands = consumer.add_subparsers(dest="consumer_command", required=True, metavar="SUBCOMMAND")
    listing = subcommands.add_parser(
        "list",
        parents=[common],
        help="each consumer with its cursor, unread records and lag",
        description="Each consumer of the change log with its cursor, its unread records (counted up to "
        f"{consumers.COUNT_MAX}), its lag (the age of the oldest record it has not read) and whether it "
        "missed trimmed records.",
    )
    listing.set_defaults(run=cmd_consumer_list)
    remove = subcommands.add_parser(
        "remove",
        parents=[common],
        help="remove a consumer, so it no longer holds back trimming",
        description="Remove a consumer: its cursor is deleted and the records it held back are trimmed "
        "at the daemons' next pass. Needs a shared store beside a mount.",
    )
    remove.set_defaults(run=cmd_consumer_remove)
    remove.add_argument("consumer", metavar="CONSUMER")
    for parser in (listing, remove):
        store_option(parser)
        name_option(parser)
