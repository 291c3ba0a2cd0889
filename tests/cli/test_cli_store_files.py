"""What the commands create on the embedded store: private files, and nothing at all for a mistyped
store path (only ``mkfs`` and the first mount of the default store create a store)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from metadata.sqlite_store import SqliteStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(
    "args",
    [
        ("mount", "--foreground", "MOUNTPOINT"),
        ("mount", "MOUNTPOINT"),
        ("mount", "-o", "shared", "MOUNTPOINT"),
        ("gc",),
        ("log",),
        ("status",),
        ("blocks", "add", "BLOCKS"),
    ],
    ids=lambda args: "-".join(a.lower() for a in args if a != "MOUNTPOINT"),
)
def test_a_mistyped_store_path_creates_nothing(
    cli, tmp_path: Path, mountpoint: Path, args: tuple[str, ...]
) -> None:
    where = tmp_path / "stores"
    where.mkdir()
    (tmp_path / "blocks").mkdir()
    url = f"sqlite://{where}/mistyped.db"
    concrete = [
        str(mountpoint) if a == "MOUNTPOINT" else str(tmp_path / "blocks") if a == "BLOCKS" else a
        for a in args
    ]
    if concrete[0] == "blocks":
        command = [*concrete[:2], "--store", url, *concrete[2:]]
    else:
        command = [concrete[0], "--store", url, *concrete[1:]]
    result = cli(*command)
    assert result.returncode == 1
    assert result.one_line_error() == f"no store at {where}/mistyped.db: create one with fusefs mkfs"
    assert os.listdir(where) == []


def test_store_files_are_private(cli, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = cli("mkfs")  # the default store, in a data directory made for it
        assert result.returncode == 0, result.stderr
        assert _mode(cli.data_dir) == 0o700
        db = cli.data_dir / "meta.db"
        store = SqliteStore(str(db))  # while open, the WAL and its index exist
        try:
            store.transact(lambda tr: tr.set(b"k", b"v"))
            for suffix in ("", "-wal", "-shm", ".lock", ".reserve"):
                assert _mode(Path(f"{db}{suffix}")) == 0o600, suffix
        finally:
            store.close()
        fresh = tmp_path / "fresh.db"
        SqliteStore(str(fresh), shared=True).close()
        assert _mode(fresh) == 0o600 and _mode(Path(f"{fresh}.lock")) == 0o600
    finally:
        os.umask(old)
