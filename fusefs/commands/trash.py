"""``fusefs trash list|restore|purge`` and ``fusefs clone``: store-level, beside a mount of a shared store
(FoundationDB, or ``-o shared``), which sees the changes through the change log."""

from __future__ import annotations

import argparse
import errno
import functools
import os
import time

from fusefs.blockdirs import open_block_store
from fusefs.commands.common import (
    CliError,
    Subcommands,
    add_command,
    in_mount,
    name_option,
    opened_store,
    store_option,
)
from fusefs.limits import human
from metadata import clone, trash
from metadata.model import ROOT_CALLER, ChunkRecord, FsConfig, FSError, now_ns
from metadata.namespace import Namespace, load_config
from metadata.printable import printable
from metadata.store import Store, Transaction

_PAGE = 200


def _namespace(store: Store, name: str) -> Namespace:
    return Namespace(load_config(store, name))


def _entries(store: Store, ns: Namespace) -> list[trash.TrashEntry]:
    def read_page(after: bytes | None) -> tuple[list[trash.TrashEntry], bool]:
        return store.transact(lambda tr: trash.entries(tr, ns, after, _PAGE))

    return list(trash.all_entries(read_page))


def trash_usage(store: Store, config: FsConfig) -> str:
    """One line for ``status``: the trash's entries and the bytes of the files in it."""
    found = _entries(store, Namespace(config))
    size = sum(entry.attr.size for entry in found if entry.attr.is_reg)
    return f"trash: {len(found)} entr{'y' if len(found) == 1 else 'ies'}, {human(size)}"


def cmd_trash_list(args: argparse.Namespace) -> int:
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        ns = _namespace(store, args.name)
        for entry in _entries(store, ns):
            kind = "dir " if entry.attr.is_dir else "file"
            print(
                f"{printable(entry.name)}\t{kind}\t{entry.attr.size}\tfrom directory {entry.parent} "
                f"as {printable(entry.original_name)}"
            )
    return 0


def cmd_trash_restore(args: argparse.Namespace) -> int:
    with opened_store(args.store, shared=True) as store:
        ns = _namespace(store, args.name)
        entry = next((e for e in _entries(store, ns) if e.name == os.fsencode(args.entry)), None)
        if entry is None:
            raise CliError(f"no entry {args.entry!r} in the trash of {args.name}")
        if args.dest is None:
            parent, name = entry.parent, entry.original_name
        else:
            head, tail = os.path.split(args.dest.rstrip("/"))
            try:
                parent, name = clone.resolve(store, ns, head).ino, os.fsencode(tail)
            except FSError as error:
                raise CliError(f"cannot restore to {args.dest}: {os.strerror(error.errno)}") from None
        restored = _restore(store, ns, entry.name, entry.attr.ino, parent, name)
        print(f"restored {restored} entr{'y' if restored == 1 else 'ies'}")
    return 0


def _restore(store: Store, ns: Namespace, entry_name: bytes, ino: int, parent: int, name: bytes) -> int:
    """Restore one trash entry, then, for a directory, what was removed from it (the tree)."""
    trash_ino = store.transact(lambda tr: trash.trash_dir(tr, ns))
    assert trash_ino is not None

    def move(tr: Transaction) -> None:
        ns.rename(tr, trash_ino, entry_name, parent, name, ROOT_CALLER, noreplace=True)
        tr.clear(ns.keys.trash_record(ino))

    try:
        store.transact(move)
    except FSError as error:
        reason = "the name is taken" if error.errno == errno.EEXIST else os.strerror(error.errno)
        raise CliError(f"cannot restore {printable(entry_name)}: {reason}") from None
    restored = 1
    for child in store.transact(lambda tr: trash.children(tr, ns, ino)):
        child_entry = store.transact(functools.partial(trash.name_of, ns=ns, ino=child))
        original = store.transact(functools.partial(trash.original_name, ns=ns, ino=child))
        if child_entry is None or original is None:
            continue
        restored += _restore(store, ns, child_entry, child, ino, original)
    return restored


def cmd_trash_purge(args: argparse.Namespace) -> int:
    with opened_store(args.store, shared=True) as store:
        ns = _namespace(store, args.name)
        purged, freed = purge(store, ns, args.older_than)
        if freed:
            _, blocks = open_block_store(store, args.name, writable=True)
            try:
                for record in freed:  # after the commits: a crash in between leaves garbage for gc
                    blocks.delete(record.dir_index, record.chunk_id)
            finally:
                blocks.close()
        print(f"purged {purged} entr{'y' if purged == 1 else 'ies'}")
    return 0


def purge(store: Store, ns: Namespace, older_than_days: float) -> tuple[int, list[ChunkRecord]]:
    """Delete the trash entries removed more than ``older_than_days`` ago, one per transaction; returns
    how many, and the chunks whose files to delete.  A file a mount holds open is deleted all the same
    (the command knows no mount's open files): that mount's handle then fails."""
    now = now_ns()
    trash_ino = store.transact(lambda tr: trash.trash_dir(tr, ns))
    purged = 0
    freed: list[ChunkRecord] = []
    if trash_ino is None:
        return purged, freed
    for entry in _entries(store, ns):
        if not trash.is_expired(entry, older_than_days, now):
            break  # names sort by removal time
        try:
            removal = store.transact(
                functools.partial(
                    trash.purge_entry, ns=ns, trash_ino=trash_ino, entry=entry, still_open=_never_open
                )
            )
        except FSError as error:
            print(f"fusefs: warning: {printable(entry.name)} not purged: {os.strerror(error.errno)}")
            continue
        freed += removal.freed_chunks or []
        purged += 1
    return purged, freed


def _never_open(ino: int) -> bool:
    return False


def cmd_clone(args: argparse.Namespace) -> int:
    """SRC and DST are paths in a mounted fusefs (its store and name are the daemon's), else paths from
    the root of filesystem ``--name`` of ``--store``."""
    src_mount, dst_mount = in_mount(args.src), in_mount(args.dst)
    if (src_mount is None) != (dst_mount is None) or (
        src_mount and dst_mount and src_mount[:2] != dst_mount[:2]
    ):
        raise CliError(f"{args.src} and {args.dst} are not in the same filesystem")
    url, name, src_path, dst_path = args.store, args.name, args.src, args.dst
    if src_mount is not None and dst_mount is not None:
        url, name, src_path, dst_path = *src_mount, dst_mount[2]
    with opened_store(url, shared=True) as store:
        ns = _namespace(store, name)
        start = time.monotonic()
        try:
            src = clone.resolve(store, ns, src_path)
            head, tail = os.path.split(dst_path.rstrip("/"))
            parent = clone.resolve(store, ns, head)
            copied = clone.clone(store, ns, src.ino, parent.ino, os.fsencode(tail), ROOT_CALLER)
        except FSError as error:
            raise CliError(f"cannot clone {args.src} to {args.dst}: {os.strerror(error.errno)}") from None
        print(f"cloned {copied} inode{'s' if copied != 1 else ''} in {time.monotonic() - start:.2f} s")
    return 0


def add_trash_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("trash", help="list, restore or purge removed files (mkfs --trash-days)")
    sub = parser.add_subparsers(dest="trash_command", required=True, metavar="SUBCOMMAND")
    listing = add_command(sub, common, "list", cmd_trash_list, "list the trash, oldest first")
    restore = add_command(
        sub, common, "restore", cmd_trash_restore, "restore a trash entry (a directory with its tree)"
    )
    restore.add_argument("entry", metavar="ENTRY", help="the entry's name in /.trash")
    restore.add_argument(
        "dest", metavar="DEST", nargs="?", help="path in the filesystem (default: where it was)"
    )
    purge_command = add_command(sub, common, "purge", cmd_trash_purge, "delete trash entries for good")
    purge_command.add_argument(
        "--older-than",
        metavar="DAYS",
        type=float,
        default=0.0,
        help="only those removed before (default: 0, all)",
    )
    for command in (listing, restore, purge_command):
        store_option(command)
        name_option(command)


def add_clone_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        commands, common, "clone", cmd_clone, "copy a file or tree instantly, sharing large files' chunks"
    )
    store_option(parser)
    name_option(parser)
    parser.add_argument(
        "src", metavar="SRC", help="path in a mounted fusefs, or from the root of --name in --store"
    )
    parser.add_argument("dst", metavar="DST", help="new path in the same filesystem (must not exist)")
