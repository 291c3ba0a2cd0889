"""``fusefs index enable|check``: the search indexes ``fusefs find`` reads (opt-in per filesystem)."""

from __future__ import annotations

import argparse

from fusefs.commands.checks import live_mount
from fusefs.commands.common import CliError, Subcommands, name_option, opened_store, store_option
from metadata import search_setting
from metadata.find import NotIndexed
from metadata.namespace import load_config


def cmd_index_enable(args: argparse.Namespace) -> int:
    # Mounts read the setting when they start: one running now would keep writing without indexes.
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        config = load_config(store, args.name)
        mount = live_mount(store, args.name)
    if mount is not None:
        raise CliError(
            f"{args.name} is mounted ({mount.host} pid {mount.pid} at {mount.mountpoint}): "
            "unmount every mount to turn on its search indexes"
        )
    if config.search_index:
        print(f"filesystem '{args.name}' already has search indexes")
        return 0
    # Exclusive: on the embedded store, no mount can start meanwhile.
    with opened_store(args.store) as store:
        search_setting.enable(store, args.name)
    print(f"filesystem '{args.name}' has search indexes now ('fusefs find' answers from them)")
    return 0


def cmd_index_check(args: argparse.Namespace) -> int:
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        config = load_config(store, args.name)
        if not config.search_index:
            raise CliError(str(NotIndexed(args.name)))
        problems = search_setting.check(store, args.name)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in the search indexes of '{args.name}'")
    return 1 if problems else 0


def add_index_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    index = commands.add_parser(
        "index",
        help="turn on or check a filesystem's search indexes (for 'fusefs find')",
        description="Turn on or check a filesystem's search indexes (for 'fusefs find').",
    )
    subcommands = index.add_subparsers(dest="index_command", required=True, metavar="SUBCOMMAND")
    enable = subcommands.add_parser(
        "enable",
        parents=[common],
        help="turn on the search indexes of an unmounted filesystem and index what it holds",
        description="Turn on the search indexes of an existing, unmounted filesystem and index every "
        "entry and xattr it holds, in bounded transactions. From then on creates, renames and setxattrs "
        "also write index records (through a mount of the embedded store, creates then run at about "
        "0.9x and setxattrs at 0.7x of their rate without them).",
    )
    enable.set_defaults(run=cmd_index_enable)
    check = subcommands.add_parser(
        "check",
        parents=[common],
        help="compare the search indexes with the namespace; exit 1 on findings",
        description="Compare the search indexes with the entries and xattrs they derive from; print "
        "each difference and exit 1 if there is one. Run it on an unmounted filesystem: a concurrent "
        "change can show up as a finding.",
    )
    check.set_defaults(run=cmd_index_check)
    for parser in (enable, check):
        store_option(parser)
        name_option(parser)
