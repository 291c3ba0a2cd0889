"""``fusefs gc`` and ``blocks add``: maintaining an unmounted filesystem."""

from __future__ import annotations

import argparse
import functools
import sys
import time

from blocks import Access, BlockStore
from fusefs.blockdirs import open_block_store, undo_claims_on_error
from fusefs.commands.common import (
    CliError,
    Subcommands,
    add_command,
    name_option,
    opened_store,
    seconds,
    sessions_of,
    store_option,
)
from fusefs.datatier import open_data_tier
from fusefs.objectgc import DEFAULT_GRACE_S
from metadata import sessions
from metadata.model import (
    FsConfig,
    now_ns,
)
from metadata.namespace import (
    load_config,
    save_config,
)
from metadata.store import Store


def _open_filesystem_blocks(store: Store, name: str) -> tuple[FsConfig, BlockStore]:
    return open_block_store(store, name, writable=True)


def _refuse_if_mounted(store: Store, name: str) -> None:
    """A ``CliError`` naming a live mount of filesystem ``name``, if there is one (on any backend)."""
    now = now_ns()
    live = sessions.live_sessions(
        sessions_of(store, name), now_ns=now, timeout_s=sessions.timeout_s(), here=sessions.this_process()
    )
    if live:
        mount = live[0]
        raise CliError(
            f"{name} is mounted ({mount.host} pid {mount.pid} at {mount.mountpoint}, heartbeat "
            f"{seconds(now - mount.heartbeat_ns)} ago): a mounted daemon collects garbage itself; "
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


def add_gc_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    gc = add_command(
        commands,
        common,
        "gc",
        cmd_gc,
        "delete chunk files that no file refers to (the filesystem must be unmounted)",
    )
    store_option(gc)
    name_option(gc)
    gc.add_argument(
        "--object-grace",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_GRACE_S,
        help="with a data tier, delete unreferenced objects only once older than this, since a commit in "
        f"flight may still publish a younger one (default: {DEFAULT_GRACE_S:g})",
    )


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


def add_blocks_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
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
