"""The ``fusefs fsck``, ``fusefs dump`` and ``fusefs load`` commands.

fsck: the metadata checks of metadata/fsck.py plus the chunk files (missing, failing their checksums,
owned by no record).  On a filesystem with a live mount session the check is read-only and every finding
is re-checked in one transaction before it is reported (the scan is not one snapshot); ``--repair`` is
refused there.  Repair runs in rounds (a fix may reveal the next: a removed dangling entry leaves its
target unreachable) until nothing repairable remains, then reports what could not be fixed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO


from blocks import BlockStore, ChecksumMismatch, ChecksumTable, ChunkMissing
from blocks.objects import ObjectMissing, ObjectStore, object_name
from blocks.tier import verified_object
from fusefs.blockdirs import open_block_store
from fusefs.commands.common import (
    CliError,
    Subcommands,
    add_command,
    name_option,
    opened_store,
    sessions_of,
    store_option,
)
from fusefs.datatier import open_data_tier
from metadata import fsck, sessions
from metadata.dump import DumpError, dump, load
from metadata.model import ChunkRecord, FsConfig, now_ns
from metadata.namespace import load_config
from metadata.printable import printable
from metadata.store import Store

#: Repair rounds: each round's fixes can only make the next round's findings fewer.
REPAIR_ROUNDS = 4


@contextlib.contextmanager
def _progress(what: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, only when stderr is a terminal."""
    from tqdm import tqdm  # loaded by the commands that show a bar, not by every command

    # delay: a run that ends within a second shows no bar at all.
    with tqdm(
        desc=what, unit=unit, disable=not sys.stderr.isatty(), file=sys.stderr, leave=False, delay=1.0
    ) as bar:
        yield bar.update


def live_mount(store: Store, name: str) -> sessions.Session | None:
    found = sessions_of(store, name)
    live = sessions.live_sessions(
        found, now_ns=now_ns(), timeout_s=sessions.timeout_s(), here=sessions.this_process()
    )
    return live[0] if live else None


# -- fsck -------------------------------------------------------------------------------------------------
def _chunk_findings(
    scan: fsck.Scan, config: FsConfig, blocks: BlockStore, objects: ObjectStore | None
) -> list[fsck.Finding]:
    findings = []
    for ino, index, record in scan.chunks:
        node = scan.inodes.get(ino)
        if node is None or record.dirty:
            continue  # a dirty chunk's checksums are recomputed at the next mount
        length = min(config.chunk_size_bytes, node.size - index * config.chunk_size_bytes)
        if length <= 0:
            continue
        table = ChecksumTable(config.chunk_size_bytes, record.checksums)
        where = f"chunk {index} of inode {ino} (id {record.chunk_id})"
        unchanged = fsck.chunk_unchanged(config.name, ino, index, record)
        try:
            _read_chunk(blocks, objects, record, length, table)
        except (ChunkMissing, ObjectMissing) as error:
            findings.append(fsck.Finding(fsck.MISSING_CHUNKS, f"{where}: {error}", unchanged))
        except ChecksumMismatch as error:
            findings.append(fsck.Finding(fsck.BAD_CHECKSUMS, f"{where}: {error}", unchanged))
        except IndexError as error:
            findings.append(fsck.Finding(fsck.MISSING_CHUNKS, f"{where}: {error}", unchanged))
    for dir_index, chunk_id in blocks.iter_chunk_ids():
        if chunk_id not in scan.owned_chunk_ids:
            path = blocks.path(dir_index, chunk_id)
            findings.append(
                UnownedChunk(
                    fsck.UNOWNED_CHUNKS,
                    printable(path),
                    fsck.chunk_unowned(config.name, chunk_id),
                    chunk=(dir_index, chunk_id),
                )
            )
    return findings


@dataclass
class UnownedChunk(fsck.Finding):
    """A chunk file no record owns: garbage, deleted by repair as gc would (marker checked)."""

    chunk: tuple[int, int] = (0, 0)


def _read_chunk(
    blocks: BlockStore, objects: ObjectStore | None, record: ChunkRecord, length: int, table: ChecksumTable
) -> None:
    """A chunk's bytes, verified: its file; else, with a data tier, the object it was last uploaded as
    (a chunk another host wrote has its file in that host's cache directory only)."""
    try:
        blocks.read(record.dir_index, record.chunk_id, 0, length, table)
    except ChunkMissing:
        if objects is None or not record.version:
            raise
        data = objects.get(object_name(record.chunk_id, record.version))
        verified_object(data, record.chunk_id, record.version, length, table)


def _check(
    store: Store, config: FsConfig, blocks: BlockStore, objects: ObjectStore | None
) -> list[fsck.Finding]:
    with _progress("fsck", "inodes") as progress:
        scan = fsck.check(store, config, progress)
    return scan.findings + _chunk_findings(scan, config, blocks, objects)


def _confirmed(store: Store, findings: list[fsck.Finding]) -> list[fsck.Finding]:
    """On a mounted filesystem the scan is not one snapshot: keep what one transaction confirms.  The
    usage counters move with every write and cannot be summed in one bounded transaction: not judged."""
    counters = [finding for finding in findings if finding.kind == fsck.COUNTERS]
    if counters:
        print("fsck: usage counters not checked: the filesystem is mounted")
    return [
        f for f in findings if f.kind != fsck.COUNTERS and (f.recheck is None or store.transact(f.recheck))
    ]


def _report(findings: list[fsck.Finding], heading: str) -> None:
    for kind in fsck.CLASSES:
        mine = [finding for finding in findings if finding.kind == kind]
        if mine:
            print(f"{heading}{kind}: {len(mine)}")
            for finding in mine:
                print(f"  {printable(finding.text)}")


def _repair(store: Store, config: FsConfig, blocks: BlockStore, findings: list[fsck.Finding]) -> int:
    fixed = 0
    lost_found: int | None = None
    for finding in findings:
        if finding.lost is not None:
            lost_found = lost_found or fsck.lost_found(store, config)
            store.transact(fsck.reconnect(config, lost_found, finding.lost))
        elif finding.repair is not None:
            store.transact(finding.repair)
        elif isinstance(finding, UnownedChunk):
            blocks.delete(*finding.chunk)
        else:
            continue
        fixed += 1
    return fixed


def _repairable(finding: fsck.Finding) -> bool:
    return finding.repair is not None or finding.lost is not None or isinstance(finding, UnownedChunk)


def cmd_fsck(args: argparse.Namespace) -> int:
    # Looked up beside a running daemon (not exclusive), so a mounted filesystem is named, not just busy.
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        load_config(store, args.name)
        mount = live_mount(store, args.name)
    if mount is not None and args.repair:
        raise CliError(
            f"{args.name} is mounted ({mount.host} pid {mount.pid} at {mount.mountpoint}): "
            "unmount every mount to repair it (without --repair, fsck checks it read-only)"
        )
    # A repair owns the embedded store (exclusive): no mount can start meanwhile.
    with opened_store(args.store, read_only=not args.repair, exclusive=args.repair) as store:
        config, blocks = open_block_store(store, args.name, writable=args.repair)
        try:
            objects = open_data_tier(config)
            findings = _check(store, config, blocks, objects)
            if mount is not None:
                findings = _confirmed(store, findings)
            if not args.repair:
                _report(findings, "")
                print(f"fsck: {args.name}: " + (f"{len(findings)} problem(s) found" if findings else "clean"))
                return 1 if findings else 0
            fixed = 0
            for _ in range(REPAIR_ROUNDS):
                if not any(map(_repairable, findings)):
                    break
                _report([f for f in findings if _repairable(f)], "repairing ")
                fixed += _repair(store, config, blocks, findings)
                findings = _check(store, config, blocks, objects)
        finally:
            blocks.close()
    _report(findings, "could not repair: ")
    print(f"fsck: {args.name}: {fixed} repair(s) made, {len(findings)} problem(s) left")
    return 1 if findings else 0


# -- dump and load ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _open_file(path: str, mode: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout if "w" in mode else sys.stdin
        return
    with open(path, mode, encoding="utf-8") as file:
        yield file


def cmd_dump(args: argparse.Namespace) -> int:
    with opened_store(args.store, read_only=True, exclusive=False) as store:
        load_config(store, args.name)
        mount = live_mount(store, args.name)
        if mount is not None:
            raise CliError(
                f"{args.name} is mounted ({mount.host} pid {mount.pid} at {mount.mountpoint}): a dump is "
                "a consistent copy only of an unmounted filesystem; unmount it first"
            )
        with _open_file(args.file, "w") as out, _progress("dump", "records") as progress:
            for line in dump(store, args.name):
                out.write(line + "\n")
                progress(1)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    with opened_store(args.store, create=True) as store, _open_file(args.file, "r") as source:
        with _progress("load", "records") as progress:
            try:
                config = load(store, args.name, source, progress)
            except DumpError as error:
                raise CliError(str(error)) from None
            except UnicodeDecodeError:
                raise CliError("not a fusefs dump: it is not UTF-8 text") from None
    print(
        f"loaded filesystem '{config.name}' (id {config.fs_id}) into {printable(store.url)}; it uses the "
        f"block directories {', '.join(map(printable, config.block_dirs))} (chunk files are not copied)"
    )
    return 0


def _filesystem_options(parser: argparse.ArgumentParser) -> None:
    store_option(parser)
    name_option(parser)


def add_fsck_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    check = add_command(
        commands, common, "fsck", cmd_fsck, "check a filesystem's metadata and chunk files (and repair them)"
    )
    _filesystem_options(check)
    check.add_argument(
        "--repair",
        action="store_true",
        help="fix what is safe to fix (unreachable inodes go to /lost+found, counts are recomputed, "
        "dangling entries removed); refused while the filesystem is mounted",
    )


def add_dump_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    out = add_command(
        commands,
        common,
        "dump",
        cmd_dump,
        "write a filesystem's metadata as JSON lines (the filesystem unmounted)",
    )
    _filesystem_options(out)
    out.add_argument("file", metavar="FILE", help="output file, or - for standard output")


def add_load_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    into = add_command(
        commands,
        common,
        "load",
        cmd_load,
        "recreate a dumped filesystem in a store; it uses the same block directories (chunk files are "
        "not copied)",
    )
    _filesystem_options(into)
    into.add_argument("file", metavar="FILE", help="a file written by 'fusefs dump', or - for standard input")
