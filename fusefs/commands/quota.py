"""``fusefs quota set|get|unset|list|check``: directory quotas (metadata/quota.py).

A PATH inside a mounted fusefs is managed through its daemon, which owns the store (the control xattrs
of fusefs/quotactl.py); with ``--store``, PATH is a path inside the filesystem, unmounted (or mounted
on a shared store), and the store is changed directly."""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Callable
from typing import TypeVar

from fusefs import mount_table, quotactl
from fusefs.commands.common import (
    CliError,
    Subcommands,
    UsageError,
    add_command,
    byte_size,
    name_option,
    opened_store,
    store_option,
)
from metadata import quota
from metadata.model import FSError
from metadata.namespace import Namespace, load_config
from metadata.store import Transaction

T = TypeVar("T")


def cmd_quota(args: argparse.Namespace) -> int:
    action = args.action
    if action == "set" and args.bytes is None and args.inodes is None:
        raise UsageError("quota set needs --bytes or --inodes (0: no limit)")
    if args.store is None:
        if args.path is None:
            raise UsageError(f"quota {action} needs a PATH inside a mounted fusefs, or --store")
        quotas = _through_mount(args)
    else:
        quotas = _in_store(args)
    for found in quotas:
        print(_describe(found))
    return 0


def _describe(q: quota.Quota) -> str:
    def part(what: str, used: int, limit: int) -> str:
        return f"{what} {used}/{limit if limit else 'unlimited'}"

    inodes = part("inodes", q.used_inodes, q.max_inodes)
    return f"inode {q.ino}: {part('bytes', q.used_bytes, q.max_bytes)}, {inodes}"


# -- a mounted filesystem: ask its daemon ---------------------------------------------------------
def _through_mount(args: argparse.Namespace) -> list[quota.Quota]:
    path = args.path
    _check_in_fusefs(path)
    try:
        if args.action == "set":
            os.setxattr(path, quotactl.QUOTA, quotactl.format_limits(args.bytes or 0, args.inodes or 0))
        elif args.action == "unset":
            os.removexattr(path, quotactl.QUOTA)
            return []
        elif args.action == "check":
            os.setxattr(path, quotactl.CHECK, b"")
        if args.action in ("list", "check"):
            return quotactl.parse_quotas(os.getxattr(path, quotactl.QUOTAS))
        return quotactl.parse_quotas(os.getxattr(path, quotactl.QUOTA))
    except OSError as error:
        raise CliError(f"{path}: {_explain(error.errno, error.strerror)}") from None


def _check_in_fusefs(path: str) -> None:
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file or directory")
    real = os.path.realpath(path)
    entries = [
        e
        for e in mount_table.mount_table()
        if real == e.mountpoint or real.startswith(e.mountpoint.rstrip("/") + "/")
    ]
    if not entries or not mount_table.is_fusefs(max(entries, key=lambda e: len(e.mountpoint))):
        raise CliError(f"{path} is not inside a mounted fusefs (give --store for an unmounted one)")


def _explain(errno_value: int | None, strerror: str | None) -> str:
    return {
        errno.ENODATA: "no quota here",
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "a quota is set on a directory",
        errno.EPERM: "only root may manage quotas",
        errno.EINVAL: "invalid limits",
    }.get(errno_value or 0, strerror or "failed")


# -- an unmounted filesystem: the store directly -------------------------------------------------
def _in_store(args: argparse.Namespace) -> list[quota.Quota]:
    with opened_store(args.store) as store:
        ns = Namespace(load_config(store, args.name))

        def run(fn: Callable[[Transaction], T]) -> T:
            try:
                return store.transact(fn)
            except FSError as error:
                raise CliError(f"{args.path or args.name}: {_explain(error.errno, str(error))}") from None

        if args.action in ("list", "check"):
            if args.action == "check":
                run(lambda tr: quota.check_quotas(tr, ns))
            return run(lambda tr: quota.list_quotas(tr, ns.keys))
        ino = run(lambda tr: ns.inode_at(tr, os.fsencode(args.path)))
        if args.action == "set":
            run(lambda tr: quota.set_quota(tr, ns, ino, args.bytes or 0, args.inodes or 0))
        elif args.action == "unset":
            run(lambda tr: quota.unset_quota(tr, ns, ino))
            return []
        found = run(lambda tr: quota.read_quotas(tr, ns.keys, [ino]))
        if not found:
            raise CliError(f"{args.path}: no quota here")
        return found


def add_quota_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        commands, common, "quota", cmd_quota, "set, show, remove and recount directory quotas"
    )
    parser.epilog = (
        "A create, or a write that grows a file, that would exceed the quota of its directory or of any "
        "directory above fails with EDQUOT. Renames and hard links between different quota directories "
        "fail with EXDEV (mv then copies). 'check' recounts usage. Managing quotas needs root."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in (
        ("set", "set or change the limits of a directory"),
        ("get", "show a directory's limits and usage"),
        ("unset", "remove a directory's quota"),
        ("list", "show every quota"),
        ("check", "recount every quota's usage, then show them"),
    ):
        sub = actions.add_parser(action, parents=[common], help=help_text, description=help_text)
        store_option(sub)
        name_option(sub)
        sub.add_argument(
            "path",
            nargs=None if action in ("set", "get", "unset") else "?",
            metavar="PATH",
            help="a directory inside a mounted fusefs; with --store, a path inside the filesystem",
        )
        if action == "set":
            sub.add_argument("--bytes", type=byte_size, help="limit on file bytes below PATH (0: none)")
            sub.add_argument("--inodes", type=int, help="limit on inodes below PATH (0: none)")
