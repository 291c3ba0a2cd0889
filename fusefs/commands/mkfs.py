"""``fusefs mkfs``: create a filesystem in a store."""

from __future__ import annotations

import argparse
import re

from blocks.objects import DataUrl
from fusefs.commands.common import (
    DEFAULT_NAME,
    Subcommands,
    UsageError,
    add_command,
    byte_size,
    check_sizes,
    days,
    default_block_dir,
    describe_config,
    filesystem_name,
    make_filesystem,
    opened_store,
    positive_hours,
    store_option,
)
from fusefs.datatier import DataTierRequest
from fusefs.limits import (
    MAX_CHUNK_SIZE_BYTES,
    MAX_INLINE_MAX_BYTES,
    human,
)
from metadata.model import (
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_INLINE_MAX_BYTES,
    DEFAULT_LOG_HOLD_S,
    DEFAULT_LOG_RETENTION_S,
)
from metadata.printable import printable


def cmd_mkfs(args: argparse.Namespace) -> int:
    check_sizes(args.inline_max, args.chunk_size)  # before the store file is created
    data = data_tier_request(args)
    with opened_store(args.store, create=True) as store:
        config = make_filesystem(
            store,
            args.name,
            args.blocks,
            args.inline_max,
            args.chunk_size,
            args.log_retention_hours * 3600,
            log_hold_s=args.log_hold_hours * 3600,
            trash_days=args.trash_days,
            search_index=args.search_index,
            data=data,
            provenance=args.provenance,
        )
        print(f"created filesystem '{config.name}' in {printable(store.url)} ({describe_config(config)})")
    return 0


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


def add_mkfs_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    mkfs = add_command(commands, common, "mkfs", cmd_mkfs, "create a filesystem in a store")
    store_option(mkfs)
    mkfs.add_argument(
        "--blocks",
        metavar="DIR",
        action="append",
        default=[],
        help=f"block directory for large files' chunks, empty or never used by another filesystem; "
        f"repeat for several disks (default: {default_block_dir('NAME', create=False)}, created)",
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
        "--log-hold",
        dest="log_hold_hours",
        metavar="HOURS",
        type=positive_hours,
        default=DEFAULT_LOG_HOLD_S // 3600,
        help="records a named log consumer (fusefs log --consumer) has not read yet are kept past the "
        "retention up to this long; older ones are trimmed and the consumer is told it missed them "
        f"(default: {DEFAULT_LOG_HOLD_S // 3600} hours)",
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
        "--trash-days",
        metavar="DAYS",
        type=days,
        default=0,
        help="keep removed files and directories in /.trash this many days (default: 0, no trash)",
    )
    mkfs.add_argument(
        "--search-index",
        action="store_true",
        help="keep the indexes 'fusefs find' answers from (names, xattrs, JSON fields): through a mount of "
        "the embedded store, creates then run at about 0.9x and setxattrs at 0.7x of their rate "
        "without them (default: off; 'fusefs index enable' turns them on later)",
    )
    mkfs.add_argument(
        "--provenance",
        action="store_true",
        help="every mount records each open and close of a file: uid, pid, command, times, bytes read and "
        "written ('fusefs provenance'); kept as long as the change log (default: off; 'mount -o "
        "provenance' turns it on for one mount)",
    )
    mkfs.add_argument(
        "name",
        metavar="NAME",
        nargs="?",
        type=filesystem_name,
        default=DEFAULT_NAME,
        help=f"filesystem name (default: {DEFAULT_NAME})",
    )
