"""``fusefs find``: files by name, xattr and JSON field, answered from the store's indexes.

Opens the store read-only and not exclusively, so it runs beside a mounted daemon; the whole answer is
one snapshot (metadata/find.py).  Paths are absolute within the filesystem and printed as their raw
bytes, one a line, like find(1); ``--json`` prints one JSON object a line with the inode's attributes.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys

from fusefs.commands.common import (
    DEFAULT_NAME,
    CliError,
    Subcommands,
    UsageError,
    add_command,
    filesystem_name,
    opened_store,
    store_option,
)
from metadata.find import Match, NotIndexed, Query, QueryError, parse_json_condition, parse_xattr, search
from metadata.model import FSError
from metadata.namespace import load_config
from metadata.printable import printable

DEFAULT_LIMIT = 10_000


def cmd_find(args: argparse.Namespace) -> int:
    query = _query(args)
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        load_config(store, args.fs)
        try:
            found = search(store, args.fs, query)
        except NotIndexed as error:
            raise CliError(str(error)) from None
        except FSError as error:
            raise CliError(f"--under {printable(query.under)}: {os.strerror(error.errno)}") from None
    out = sys.stdout.buffer
    for match in found.matches:
        out.write((json.dumps(_as_json(match)).encode() if args.json else match.path) + b"\n")
    out.flush()
    if found.truncated:
        print(f"fusefs: more than {query.limit} matches: the first {query.limit} shown", file=sys.stderr)
    return 0


def _query(args: argparse.Namespace) -> Query:
    try:
        query = Query(
            name=None if args.name is None else os.fsencode(args.name),
            name_glob=None if args.name_glob is None else os.fsencode(args.name_glob),
            under=os.fsencode(args.under),
            xattrs=[parse_xattr(os.fsencode(text)) for text in args.xattr],
            json_fields=[parse_json_condition(text) for text in args.json_field],
            limit=args.limit,
            attributes=args.json,  # paths alone need no attributes
        )
        query.check()
    except QueryError as error:
        raise UsageError(str(error)) from None
    return query


def _as_json(match: Match) -> dict[str, object]:
    attr = match.attr
    assert attr is not None  # the query asked for attributes
    return {
        "path": os.fsdecode(match.path),
        "ino": attr.ino,
        "type": _type_name(attr.mode),
        "mode": f"{stat.S_IMODE(attr.mode):04o}",
        "nlink": attr.nlink,
        "uid": attr.uid,
        "gid": attr.gid,
        "size": attr.size,
        "mtime_ns": attr.mtime_ns,
        "ctime_ns": attr.ctime_ns,
    }


def _type_name(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "special"


def add_find_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        commands,
        common,
        "find",
        cmd_find,
        "find files by name, xattr or JSON field in one consistent snapshot, from the store's indexes "
        "(also beside a running mount)",
    )
    store_option(parser)
    parser.add_argument(
        "--fs",
        type=filesystem_name,
        default=DEFAULT_NAME,
        metavar="NAME",
        help=f"filesystem name in the store (default: {DEFAULT_NAME})",
    )
    parser.add_argument("--name", help="entries with exactly this name")
    parser.add_argument("--name-glob", metavar="GLOB", help="entries whose name matches GLOB (* ? [...])")
    parser.add_argument("--under", default="/", metavar="PATH", help="only below PATH (default: /)")
    parser.add_argument(
        "--xattr",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="files with xattr NAME (holding exactly VALUE); repeatable",
    )
    parser.add_argument(
        "--json-field",
        action="append",
        default=[],
        metavar="'FIELD OP VALUE'",
        help="files whose user.* xattr holds a JSON object with FIELD OP VALUE: FIELD is X.a.b (field a.b "
        'of user.X) or user.X:a.b, OP one of = < <= > >=, VALUE a JSON number, "string", true, false '
        "or null; repeatable",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line, with attributes (read only then: paths alone answer faster)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"print at most N matches (default: {DEFAULT_LIMIT}); says so on stderr when more exist",
    )
