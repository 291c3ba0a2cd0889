"""Store round trips per query, counted on the embedded store's latency emulation (each read round there
stands for one FoundationDB network round trip): a query costs a number of rounds set by the tree's
depth and the predicates, not by how many files it returns."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, Fs

from metadata.emulation import StoreEmulation
from metadata.find import Query, find
from metadata.sqlite_store import SqliteStore


@pytest.fixture
def fs(tmp_path: Path):
    store = SqliteStore(
        str(tmp_path / "meta.db"), shared=True, emulation=StoreEmulation(read_delay_s=0.00001)
    )
    yield Fs(store, search_index=True)
    store.close()


def _tree(fs: Fs, files_per_dir: int) -> None:
    """/a/b{0..3}/c/f{n}.parquet and .csv, each file with user.batch=x."""
    paths = ["a/"]
    for b in range(4):
        paths += [f"a/b{b}/", f"a/b{b}/c/"]
        paths += [f"a/b{b}/c/f{n}.{ext}" for n in range(files_per_dir) for ext in ("parquet", "csv")]
    made = fs.tree(*paths)
    for path, ino in made.items():
        if path.endswith(".parquet"):
            fs.setxattr(ino, b"user.batch", b"x", ROOT)


def _rounds(fs: Fs, query: Query) -> tuple[int, int]:
    """(read rounds, matches) of one query."""
    before = fs.store.emulated_read_rounds
    found = fs.run(lambda tr: find(tr, fs.keys, query))
    return fs.store.emulated_read_rounds - before, len(found.matches)


@pytest.mark.parametrize("attributes", [False, True])
def test_query_rounds_do_not_grow_with_the_answer(fs, attributes):
    _tree(fs, 3)
    small = {
        "xattr": _rounds(fs, Query(xattrs=[(b"user.batch", b"x")], attributes=attributes)),
        "extension under": _rounds(fs, Query(name_glob=b"*.parquet", under=b"/a", attributes=attributes)),
    }
    _tree_more(fs)
    large = {
        "xattr": _rounds(fs, Query(xattrs=[(b"user.batch", b"x")], attributes=attributes)),
        "extension under": _rounds(fs, Query(name_glob=b"*.parquet", under=b"/a", attributes=attributes)),
    }
    for question in small:
        assert large[question][1] > small[question][1] * 5, question
        assert large[question][0] == small[question][0], question


def _tree_more(fs: Fs) -> None:
    c = {b: fs.lookup(fs.lookup(fs.lookup(1, b"a").ino, f"b{b}".encode()).ino, b"c").ino for b in range(4)}
    for b, directory in c.items():
        for n in range(3, 30):
            ino = fs.make(directory, f"f{n}.parquet".encode()).ino
            fs.setxattr(ino, b"user.batch", b"x", ROOT)


def test_xattr_query_rounds(fs):
    """The start directory (/: its attributes), the value index, the matches' names, their directories
    a level at a time (the c, the b*, a; the root is known); with attributes one round more."""
    _tree(fs, 3)
    assert _rounds(fs, Query(xattrs=[(b"user.batch", b"x")])) == (1 + 1 + 1 + 3, 12)
    assert _rounds(fs, Query(xattrs=[(b"user.batch", b"x")], attributes=True)) == (1 + 1 + 1 + 3 + 1, 12)


def test_extension_under_a_subtree_rounds(fs):
    """The start directory /a (the root's attributes with the entry of a, then a's attributes), the
    subdirectory index a level at a time (a, the b*, the c), and the extension index of every directory
    at once: the paths of the matches cost no read, their directories' names came with the levels."""
    _tree(fs, 3)
    assert _rounds(fs, Query(name_glob=b"*.parquet", under=b"/a")) == (2 + 3 + 1, 12)
    # /a/b1/c: three levels of entries and a last attribute read, one empty level below, the extension.
    assert _rounds(fs, Query(name_glob=b"*.parquet", under=b"/a/b1/c")) == (4 + 1 + 1, 3)
