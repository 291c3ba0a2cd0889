"""An example change-log consumer: mirror a filesystem's names into SQLite FTS5 for full-text search, and
print how far behind the filesystem the mirror is.

It reads the change log as a named consumer (metadata/consumers.py: a cursor kept in the fusefs store)
and applies each page of records to the mirror in one SQLite transaction that also records the id of the
last record applied; only then does it acknowledge the page to the store.  Killed at any point, it
resumes without losing a record: a page applied but not acknowledged comes again and is recognised by its
ids (they are in commit order: an id at or before the last applied one is a duplicate) and skipped.

The mirror holds the names created since the consumer was first run (a name and its path per entry;
renaming a directory rewrites the paths below it).  Records trimmed before it read them (it lagged past
the filesystem's ``--log-hold``) are reported: the mirror may then miss names, and can be rebuilt by
deleting it and removing the consumer (``fusefs consumer remove NAME``).  Usage:

    python scripts/fts_consumer.py follow --store URL [--name FS] [--consumer fts] --db names.db [--once]
    python scripts/fts_consumer.py search --db names.db 'QUERY'      # FTS5 syntax: report*, "a b", x OR y

Beside a mount of the embedded store, the mount must be shared (``-o shared``), since the cursor is
written to the store; on FoundationDB it runs on any host.
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import sys
import time

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metadata import consumers  # noqa: E402
from metadata.changelog import LogRecord  # noqa: E402
from metadata.keys import FsKeys  # noqa: E402
from metadata.log_reader import Page, RecordPaths, read_page  # noqa: E402
from metadata.model import now_ns  # noqa: E402
from metadata.namespace import load_config  # noqa: E402
from metadata.urls import open_store  # noqa: E402

PAGE_RECORDS = 500
CREATES = {"create", "mkdir", "symlink", "mknod", "clone", "link"}
#: The entries in a plain table (looked up by parent and name, or path), full-text indexed by an FTS5
#: table kept in step by triggers (SQLite's external-content pattern).
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY, parent INTEGER, name TEXT, ino INTEGER, path TEXT, UNIQUE(parent, name));
CREATE INDEX IF NOT EXISTS entries_path ON entries(path);
CREATE VIRTUAL TABLE IF NOT EXISTS names USING fts5(name, path, content='entries', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    INSERT INTO names(rowid, name, path) VALUES (new.id, new.name, new.path);
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    INSERT INTO names(names, rowid, name, path) VALUES ('delete', old.id, old.name, old.path);
END;
CREATE TRIGGER IF NOT EXISTS entries_changed AFTER UPDATE ON entries BEGIN
    INSERT INTO names(names, rowid, name, path) VALUES ('delete', old.id, old.name, old.path);
    INSERT INTO names(rowid, name, path) VALUES (new.id, new.name, new.path);
END;
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


class Mirror:
    """The FTS5 mirror of the names, and what it has applied."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript(SCHEMA)

    def state(self, key: str, default: object) -> object:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def apply(self, page: Page) -> tuple[int, int]:
        """Apply the records of ``page`` not applied yet, in one transaction; returns (applied, skipped)."""
        last = str(self.state("last_id", ""))
        applied = skipped = 0
        self.db.execute("BEGIN IMMEDIATE")
        for record, paths in zip(page.records, page.paths, strict=True):
            record_id = record.versionstamp.hex()
            if record_id <= last:
                skipped += 1  # a duplicate: applied before the last run could acknowledge it
                continue
            self._apply(record, paths)
            last = record_id
            applied += 1
        self._set("last_id", last)
        self._set("duplicates", int(self.state("duplicates", 0)) + skipped)  # type: ignore[call-overload]
        self.db.execute("COMMIT")
        return applied, skipped

    def _apply(self, record: LogRecord, paths: RecordPaths) -> None:
        if record.op in CREATES:
            self._add(record.ino, record.parent, record.name, paths.path)
        elif record.op in ("unlink", "rmdir"):
            self._remove(record.parent, record.name)
        elif record.op == "rename":
            self._remove(record.new_parent, record.new_name)  # a replaced target
            self._move(record.parent, record.name, record.new_parent, record.new_name, paths.new_path)
        elif record.op == "exchange":
            self._move(record.parent, record.name, -1, record.name, None)  # out of the way
            self._move(record.new_parent, record.new_name, record.parent, record.name, paths.path)
            self._move(-1, record.name, record.new_parent, record.new_name, paths.new_path)

    def _add(self, ino: int, parent: int | None, name: bytes | None, path: bytes | None) -> None:
        self._remove(parent, name)
        self.db.execute(
            "INSERT INTO entries(name, path, ino, parent) VALUES (?, ?, ?, ?)",
            (_text(name), _text(path), ino, parent),
        )

    def _remove(self, parent: int | None, name: bytes | None) -> None:
        self.db.execute("DELETE FROM entries WHERE parent = ? AND name = ?", (parent, _text(name)))

    def _move(
        self, parent: int | None, name: bytes | None, new_parent: int | None, new_name: bytes | None,
        new_path: bytes | None,
    ) -> None:
        row = self.db.execute(
            "SELECT path FROM entries WHERE parent = ? AND name = ?", (parent, _text(name))
        ).fetchone()
        self.db.execute(
            "UPDATE entries SET parent = ?, name = ?, path = ? WHERE parent = ? AND name = ?",
            (new_parent, _text(new_name), _text(new_path), parent, _text(name)),
        )
        old, new = (row[0] if row else None), _text(new_path)
        if old and new:  # a directory: what lies below it moved too
            self.db.execute(
                "UPDATE entries SET path = ? || substr(path, ?) WHERE path >= ? AND path < ?",
                (new, len(old) + 1, old + "/", old + "0"),  # '0' follows '/': the paths below ``old``
            )

    def _set(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (key, value))

    def search(self, query: str) -> list[str]:
        rows = self.db.execute(
            "SELECT e.path, e.name FROM names JOIN entries e ON e.id = names.rowid WHERE names MATCH ? "
            "ORDER BY rank",
            (query,),
        )
        return [path or name for path, name in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM entries").fetchone()[0])


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else os.fsdecode(raw)


def follow(args: argparse.Namespace) -> int:
    mirror = Mirror(args.db)
    store = open_store(args.store, shared=True)
    try:
        config = load_config(store, args.name)
        keys = FsKeys(config.name)
        store.transact(functools.partial(consumers.join, keys=keys, name=args.consumer, now_ns=now_ns()))
        read = functools.partial(
            read_page, keys=keys, after=None, consumer=args.consumer, limit=PAGE_RECORDS,
            indexed=config.search_index,
        )
        while True:
            page = store.transact(read)
            if page.missed_through is not None:
                print(
                    f"fts_consumer: missed records up to {page.missed_through.hex()} (trimmed before they "
                    "were read): the mirror may lack names",
                    file=sys.stderr,
                )
            applied, skipped = mirror.apply(page)
            last = page.records[-1].versionstamp if page.records else page.missed_through
            if last is not None:
                store.transact(
                    functools.partial(
                        consumers.acknowledge, keys=keys, name=args.consumer, through=last, now_ns=now_ns()
                    )
                )
            lag = (now_ns() - page.records[-1].time_ns) / 1e9 if page.records else 0.0
            print(
                f"lag {lag:.3f} s: applied {applied} records, skipped {skipped} duplicates, "
                f"{mirror.count()} names",
                file=sys.stderr,
                flush=True,
            )
            if len(page.records) < PAGE_RECORDS:
                if args.once:
                    return 0
                time.sleep(args.interval)
    finally:
        store.close()


def search(args: argparse.Namespace) -> int:
    for path in Mirror(args.db).search(args.query):
        print(path)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("follow", help="mirror the names, following the change log")
    run.add_argument("--store", required=True, metavar="URL")
    run.add_argument("--name", default="default", help="filesystem name (default: default)")
    run.add_argument("--consumer", default="fts", help="the consumer's name in the store (default: fts)")
    run.add_argument("--db", required=True, help="the SQLite file of the mirror (created)")
    run.add_argument("--once", action="store_true", help="stop once caught up")
    run.add_argument("--interval", type=float, default=0.5, help="seconds between polls (default: 0.5)")
    run.set_defaults(run=follow)
    find = commands.add_parser("search", help="names matching an FTS5 query")
    find.add_argument("--db", required=True)
    find.add_argument("query")
    find.set_defaults(run=search)
    args = parser.parse_args()
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
