"""The ``fusefs`` command: the parser and the entry point; every failure one line on stderr.

Exit status: 0 success, 1 failure, 2 usage error (bad arguments, options or store URL), 130 interrupted.
``--debug`` on any subcommand prints the traceback before the one-line error.

Each subcommand is a ``cmd_<name>(args) -> int`` in a module of fusefs/commands/, beside the
``add_<name>_parser(commands, common)`` that declares its arguments.  A new command is added by writing
both (``add_command`` in fusefs/commands/common.py makes the subparser and binds ``cmd_<name>``) and
listing its ``add_<name>_parser`` in ``PARSERS`` below.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from fusefs.commands import (
    changelog,
    checks,
    find,
    index,
    maintenance,
    mkfs,
    mounts,
    provenance,
    quota,
    stats,
    systemd,
    trash,
)
from fusefs.commands.common import CliError, Parser, Subcommands, UsageError
from fusefs.messages import is_expected, one_line
from metadata.urls import StoreUrlError, data_dir

#: The subcommands, in the order ``fusefs --help`` lists them.
PARSERS: list[Callable[[Subcommands, argparse.ArgumentParser], None]] = [
    mkfs.add_mkfs_parser,
    mounts.add_mount_parser,
    mounts.add_umount_parser,
    mounts.add_status_parser,
    stats.add_stats_parser,
    systemd.add_systemd_unit_parser,
    changelog.add_log_parser,
    changelog.add_consumer_parser,
    maintenance.add_gc_parser,
    maintenance.add_blocks_parser,
    checks.add_fsck_parser,
    checks.add_dump_parser,
    checks.add_load_parser,
    trash.add_trash_parser,
    trash.add_clone_parser,
    quota.add_quota_parser,
    find.add_find_parser,
    index.add_index_parser,
    provenance.add_provenance_parser,
]


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print tracebacks (and, for mount, debug logs)")
    parser = Parser(
        prog="fusefs",
        description="A POSIX filesystem in FUSE with transactional metadata "
        "(FoundationDB or embedded SQLite).",
        epilog=f"Data directory: {data_dir(create=False)} ($XDG_DATA_HOME/fusefs).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in PARSERS:
        add_parser(commands, common)
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
    message = one_line(error)
    if not is_expected(error) and not debug:
        message += " (an internal error: run with --debug for the traceback)"
    return message
