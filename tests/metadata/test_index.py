"""Secondary indexes (metadata/index.py), paths from inodes (metadata/paths.py) and queries
(metadata/find.py) through the namespace transactions of a real embedded store, with retry chaos off and
on; after every scenario ``index.check`` proves the indexes match the namespace exactly."""

from __future__ import annotations

import errno
import json

import pytest
from conftest import ROOT, Fs, commit_unknown_once

from metadata import fsck, index
from metadata.dump import dump, load
from metadata.find import Query, QueryError, find, parse_json_condition, parse_xattr
from metadata.find import search as search_api
from metadata.keys import FsKeys
from metadata.model import ROOT_INODE, FSError
from metadata.paths import Paths
from metadata.store import CorruptValue


@pytest.fixture
def fs(store):
    """A filesystem made with its search indexes on (``fusefs mkfs --search-index``)."""
    return Fs(store, search_index=True)


def search(fs, **query):
    found = search_api(fs.store, fs.config.name, Query(**query))
    return [match.path.decode() for match in found.matches]


def paths_of(fs, ino):
    return fs.run(lambda tr: Paths(tr, fs.keys).paths(ino))


def assert_consistent(fs):
    assert index.check(fs.store, fs.keys) == []


def test_names_exact_prefix_suffix_and_under(fs):
    t = fs.tree("a/", "a/x.parquet", "a/b/", "a/b/y.parquet", "a/b/y.csv", "c/", "c/x.parquet", "a/xyz")
    assert search(fs, name=b"x.parquet") == ["/a/x.parquet", "/c/x.parquet"]
    assert search(fs, name_glob=b"*.parquet", under=b"/a") == ["/a/b/y.parquet", "/a/x.parquet"]
    assert search(fs, name_glob=b"x*") == ["/a/x.parquet", "/a/xyz", "/c/x.parquet"]
    assert search(fs, name_glob=b"?.*") == ["/a/b/y.csv", "/a/b/y.parquet", "/a/x.parquet", "/c/x.parquet"]
    assert search(fs, name_glob=b"b", under=b"/a/b/") == ["/a/b"]  # the start itself, as find(1)
    assert search(fs, name_glob=b"*", under=b"/a/b/..//b") == ["/a/b", "/a/b/y.csv", "/a/b/y.parquet"]
    assert paths_of(fs, t["a/b/y.csv"]) == [b"/a/b/y.csv"]
    assert paths_of(fs, ROOT_INODE) == [b"/"]
    assert_consistent(fs)


def test_names_follow_renames_links_and_unlinks(fs):
    t = fs.tree("d/", "e/", "d/f.txt")
    fs.link(t["d/f.txt"], t["e"], b"g.txt", ROOT)
    assert paths_of(fs, t["d/f.txt"]) == [b"/d/f.txt", b"/e/g.txt"]
    fs.rename(t["d"], b"f.txt", ROOT_INODE, b"top.txt", ROOT)
    fs.rename(ROOT_INODE, b"e", t["d"], b"e2", ROOT)  # a directory: its files' paths change too
    assert search(fs, name_glob=b"*.txt") == ["/d/e2/g.txt", "/top.txt"]
    assert paths_of(fs, t["d/f.txt"]) == [b"/d/e2/g.txt", b"/top.txt"]
    fs.unlink(ROOT_INODE, b"top.txt", ROOT)
    assert search(fs, name_glob=b"*.txt") == ["/d/e2/g.txt"]
    assert_consistent(fs)


def test_rename_replacing_and_exchanging(fs):
    t = fs.tree("a", "b", "d/", "d/c")
    fs.run(lambda tr: fs.ns.setxattr(tr, t["b"], b"user.k", b"v", ROOT))
    fs.rename(ROOT_INODE, b"a", ROOT_INODE, b"b", ROOT, still_open=lambda ino: False)  # b is deleted
    assert search(fs, xattrs=[(b"user.k", None)]) == []
    assert search(fs, name=b"b") == ["/b"] and paths_of(fs, t["a"]) == [b"/b"]
    fs.rename(ROOT_INODE, b"b", t["d"], b"c", ROOT, exchange=True)
    assert paths_of(fs, t["a"]) == [b"/d/c"] and paths_of(fs, t["d/c"]) == [b"/b"]
    assert_consistent(fs)


def xattrs(**named):
    return [(name.encode(), value) for name, value in named.items()]


def test_xattr_values_short_and_long(fs):
    t = fs.tree("a", "b", "c")
    long_value = b"L" * (index.VALUE_INDEX_MAX_BYTES + 1)
    for name, value in (("a", b"red"), ("b", long_value), ("c", long_value[:-1] + b"M")):
        fs.setxattr(t[name], b"user.color", value, ROOT)
    assert search(fs, xattrs=[(b"user.color", b"red")]) == ["/a"]
    assert search(fs, xattrs=[(b"user.color", long_value)]) == ["/b"]
    assert search(fs, xattrs=[(b"user.color", None)]) == ["/a", "/b", "/c"]
    fs.setxattr(t["a"], b"user.color", b"blue", ROOT)
    fs.removexattr(t["b"], b"user.color", ROOT)
    assert search(fs, xattrs=[(b"user.color", b"red")]) == []
    assert search(fs, xattrs=[(b"user.color", None)]) == ["/a", "/c"]
    assert search(fs, xattrs=[(b"user.color", b"blue")], name_glob=b"[ab]") == ["/a"]
    assert_consistent(fs)


def test_a_long_value_whose_hash_prefix_matches_is_checked(fs):
    """Two values share a hash record only by collision: planted here by writing the record by hand."""
    t = fs.tree("a")
    value = b"x" * 1000
    fs.setxattr(t["a"], b"user.v", value, ROOT)
    other = b"y" * 1000
    fs.raw_set(fs.keys.xattr_hash(b"user.v", index.value_digest(other), t["a"]), b"")
    assert search(fs, xattrs=[(b"user.v", other)]) == []
    assert search(fs, xattrs=[(b"user.v", value)]) == ["/a"]


def meta(fs, ino, document, name=b"user.experiment"):
    fs.setxattr(ino, name, json.dumps(document).encode(), ROOT)


def json_search(fs, *conditions):
    return search(fs, json_fields=[parse_json_condition(c) for c in conditions])


def test_json_fields_typed_ranges(fs):
    t = fs.tree("a", "b", "c", "d", "e")
    meta(fs, t["a"], {"lr": 0.001, "owner": {"team": "vision"}, "done": True})
    meta(fs, t["b"], {"lr": 0.1, "owner": {"team": "speech"}, "done": False})
    meta(fs, t["c"], {"lr": 0, "owner": {"team": "vision"}, "tags": ["x"], "n": None})
    meta(fs, t["d"], {"lr": "0.001"})  # a string: never a number's match
    fs.setxattr(t["e"], b"user.experiment", b"{not json", ROOT)  # a plain xattr, not an error
    assert json_search(fs, "experiment.lr < 0.01") == ["/a", "/c"]
    assert json_search(fs, "experiment.lr >= 0.001") == ["/a", "/b"]
    assert json_search(fs, "experiment.lr <= 0") == ["/c"]
    assert json_search(fs, "experiment.lr > 0.1") == []
    assert json_search(fs, 'experiment.lr = "0.001"') == ["/d"]
    assert json_search(fs, 'experiment.owner.team = "vision"') == ["/a", "/c"]
    assert json_search(fs, 'user.experiment:owner.team > "t"') == ["/a", "/c"]
    assert json_search(fs, "experiment.done = true", 'experiment.owner.team == "vision"') == ["/a"]
    assert json_search(fs, "experiment.n = null") == ["/c"]
    assert json_search(fs, "experiment.tags = 1") == []
    assert search(fs, xattrs=[(b"user.experiment", b"{not json")]) == ["/e"]
    meta(fs, t["a"], {"lr": 0.5})  # replaced: the old fields are gone
    assert json_search(fs, "experiment.lr < 0.01") == ["/c"]
    assert json_search(fs, 'experiment.owner.team = "vision"') == ["/c"]
    assert_consistent(fs)


def test_json_long_strings_and_big_numbers_compare_exactly(fs):
    t = fs.tree("a", "b", "c")
    base = "s" * index.JSON_STRING_INDEX_BYTES
    meta(fs, t["a"], {"k": base + "a", "n": 2**53 + 1})
    meta(fs, t["b"], {"k": base + "b", "n": 2**53})
    meta(fs, t["c"], {"k": base, "n": 10**400})  # beyond a double: not indexed
    assert json_search(fs, f'experiment.k = "{base}b"') == ["/b"]
    assert json_search(fs, f'experiment.k > "{base}a"') == ["/b"]
    assert json_search(fs, f'experiment.k < "{base}b"') == ["/a", "/c"]
    assert json_search(fs, f"experiment.n = {2**53 + 1}") == ["/a"]
    assert json_search(fs, "experiment.n > 0") == ["/a", "/b"]
    assert_consistent(fs)


def test_json_field_limits(fs):
    ino = fs.tree("a")["a"]
    last = index.JSON_FIELDS_MAX - 1
    document = {f"f{i:04}": i for i in range(index.JSON_FIELDS_MAX + 10)}
    document["p" * (index.JSON_PATH_MAX_BYTES + 1)] = 1
    meta(fs, ino, document)
    assert json_search(fs, f"experiment.f{last:04} = {last}") == ["/a"]
    assert json_search(fs, f"experiment.f{last + 1:04} = {last + 1}") == []  # beyond the indexed fields
    assert_consistent(fs)


def test_hard_links_and_orphans(fs):
    t = fs.tree("d/", "f")
    fs.link(t["f"], t["d"], b"g", ROOT)
    fs.setxattr(t["f"], b"user.tag", b"t", ROOT)
    assert search(fs, xattrs=[(b"user.tag", b"t")]) == ["/d/g", "/f"]
    assert search(fs, xattrs=[(b"user.tag", b"t")], under=b"/d") == ["/d/g"]
    assert search(fs, xattrs=[(b"user.tag", b"t")], name=b"f") == ["/f"]
    fs.unlink(ROOT_INODE, b"f", ROOT)
    fs.unlink(t["d"], b"g", ROOT)  # still open: an orphan keeps its xattrs, but has no path
    assert search(fs, xattrs=[(b"user.tag", b"t")]) == []
    assert_consistent(fs)
    fs.reclaim(t["f"])
    assert fs.raw_range(fs.keys.index_ranges()["V"]) == []
    assert_consistent(fs)


def test_deleting_an_inode_drops_its_xattr_records(fs):
    t = fs.tree("f")
    meta(fs, t["f"], {"a": 1})
    fs.unlink(ROOT_INODE, b"f", ROOT, still_open=lambda ino: False)
    for kind, (begin, end) in fs.keys.index_ranges().items():
        assert fs.raw_range((begin, end)) == [], kind
    assert_consistent(fs)


@pytest.mark.parametrize(
    "operation",
    [
        lambda fs, t: fs.make(ROOT_INODE, b"new"),
        lambda fs, t: fs.link(t["f"], ROOT_INODE, b"l", ROOT),
        lambda fs, t: fs.rename(ROOT_INODE, b"f", t["d"], b"moved", ROOT),
        lambda fs, t: fs.unlink(ROOT_INODE, b"f", ROOT, still_open=lambda ino: False),
        lambda fs, t: fs.setxattr(t["f"], b"user.j", b'{"a": 2}', ROOT),
        lambda fs, t: fs.removexattr(t["f"], b"user.j", ROOT),
    ],
    ids=["create", "link", "rename", "unlink", "setxattr", "removexattr"],
)
def test_retried_commits_leave_the_indexes_exact(fs, operation):
    t = fs.tree("d/", "f")
    fs.setxattr(t["f"], b"user.j", b'{"a": 1}', ROOT)
    with commit_unknown_once(fs.store):
        operation(fs, t)
    assert_consistent(fs)


def test_check_finds_missing_stray_and_wrong_records(fs):
    t = fs.tree("f")
    fs.setxattr(t["f"], b"user.k", b"v", ROOT)
    fs.run(lambda tr: tr.clear(fs.keys.xattr_value(b"user.k", b"v", t["f"])))
    fs.raw_set(fs.keys.name_index(b"ghost", ROOT_INODE), b"\0" * 8)
    fs.raw_set(fs.keys.extension_index(b"f", ROOT_INODE), (999).to_bytes(8, "little"))
    problems = index.check(fs.store, fs.keys)
    assert len(problems) == 3
    assert any("missing" in p for p in problems)
    assert any("matches no entry" in p for p in problems)
    assert any("has value" in p for p in problems)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "at least one"),
        ({"name": b"a/b"}, "cannot be empty or contain"),
        ({"name": b"a", "limit": 0}, "at least 1"),
        ({"name": b"a", "under": b"rel"}, "starting with '/'"),
    ],
)
def test_malformed_queries(fs, query, message):
    with pytest.raises(QueryError, match=message):
        search(fs, **query)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "not a condition"),
        ("experiment.lr ~ 1", "not a condition"),
        ("experiment.lr < abc", "not a JSON value"),
        ("experiment.lr < [1]", "compare with"),
        ("experiment.lr < null", "null can only"),
        ("experiment < 1", "not a field"),
        ("trusted.x:a = 1", "not a field"),
        ("experiment..a = 1", "not a field"),
    ],
)
def test_malformed_conditions(text, message):
    with pytest.raises(QueryError, match=message):
        parse_json_condition(text)


def test_xattr_predicates_parse():
    assert parse_xattr(b"user.a=b=c") == (b"user.a", b"b=c")
    assert parse_xattr(b"user.a") == (b"user.a", None)
    assert parse_xattr(b"user.a=") == (b"user.a", b"")
    for bad in (b"user.", b"a", b"system.posix_acl_access"):
        with pytest.raises(QueryError, match="not an xattr name"):
            parse_xattr(bad)


def test_under_must_be_a_directory_that_exists(fs):
    fs.tree("f")
    for under, code in ((b"/f", errno.ENOTDIR), (b"/nope", errno.ENOENT), (b"/f/x", errno.ENOTDIR)):
        with pytest.raises(FSError) as caught:
            search(fs, name=b"f", under=under)
        assert caught.value.errno == code


def test_limit_says_more_exist(fs):
    fs.tree(*(f"f{i}" for i in range(5)))
    found = fs.run(lambda tr: find(tr, fs.keys, Query(name_glob=b"f*", limit=3)))
    assert [m.path for m in found.matches] == [b"/f0", b"/f1", b"/f2"] and found.truncated
    found = fs.run(lambda tr: find(tr, fs.keys, Query(name_glob=b"f*", limit=5)))
    assert len(found.matches) == 5 and not found.truncated


def test_a_loaded_dump_has_its_indexes(fs):
    t = fs.tree("d/", "d/a.parquet")
    fs.setxattr(t["d/a.parquet"], b"user.j", b'{"x": 1}', ROOT)
    fs.link(t["d/a.parquet"], ROOT_INODE, b"b.parquet", ROOT)
    lines = list(dump(fs.store, fs.config.name))
    fs.run(lambda tr: tr.clear_range(*fs.keys.whole_filesystem()))
    load(fs.store, "copy", lines)
    keys = FsKeys("copy")
    assert index.check(fs.store, keys) == []
    query = Query(json_fields=[parse_json_condition("j.x = 1")])
    found = fs.run(lambda tr: find(tr, keys, query))
    assert [m.path for m in found.matches] == [b"/b.parquet", b"/d/a.parquet"]


def test_fsck_repair_of_a_dangling_entry_drops_its_index_records(fs):
    ino = fs.tree("f")["f"]
    fs.run(lambda tr: tr.clear(fs.keys.attr(ino)))  # damage: the entry now names no inode
    (dangling,) = [f for f in fsck.check(fs.store, fs.config).findings if f.kind == fsck.DANGLING]
    fs.run(dangling.repair)
    assert index.check(fs.store, fs.keys) == []
    assert search(fs, name=b"f") == []


# -- clones, the trash, ACLs and fsck keep or prove the indexes ------------------------------------------


def test_a_cloned_tree_is_indexed(fs):
    from metadata import clone

    t = fs.tree("src/", "src/a.parquet", "src/sub/", "src/sub/b.csv")
    fs.setxattr(t["src/a.parquet"], b"user.meta", b'{"team": "vision"}', ROOT)
    with commit_unknown_once(fs.store):
        clone.clone(fs.store, fs.ns, t["src"], ROOT_INODE, b"dst", ROOT)
    assert_consistent(fs)
    assert search(fs, name_glob=b"*.parquet") == ["/dst/a.parquet", "/src/a.parquet"]
    assert search(fs, name=b"b.csv", under=b"/dst") == ["/dst/sub/b.csv"]
    query = [parse_json_condition('meta.team = "vision"')]
    assert search(fs, json_fields=query) == ["/dst/a.parquet", "/src/a.parquet"]


def test_the_trash_and_restore_keep_the_indexes(store):
    from metadata import trash

    fs = Fs(store, "trashy", search_index=True, trash_days=1)
    trash.make_trash_dir(store, fs.ns)
    t = fs.tree("d/", "d/f.txt", "d/g.txt")
    fs.setxattr(t["d/f.txt"], b"user.k", b"v", ROOT)
    fs.unlink(t["d"], b"f.txt", ROOT)
    fs.rename(t["d"], b"g.txt", t["d"], b"f2.txt", ROOT)
    fs.make(t["d"], b"f2b.txt")
    fs.rename(t["d"], b"f2b.txt", t["d"], b"f2.txt", ROOT)  # the replaced g.txt goes to the trash
    fs.unlink(t["d"], b"f2.txt", ROOT)
    fs.rmdir(ROOT_INODE, b"d", ROOT)
    assert_consistent(fs)
    trash_ino = fs.run(lambda tr: trash.trash_dir(tr, fs.ns))
    (trashed,) = [p for p in search(fs, xattrs=[(b"user.k", b"v")])]
    assert trashed.startswith("/.trash/") and trashed.endswith("-f.txt")
    entry = trashed.rsplit("/", 1)[1].encode()
    fs.rename(trash_ino, entry, ROOT_INODE, b"back.txt", ROOT, noreplace=True)  # as trash restore does
    assert search(fs, xattrs=[(b"user.k", b"v")]) == ["/back.txt"]
    assert_consistent(fs)


def test_acls_are_not_indexed_and_stay_consistent(fs):
    from metadata import acl

    t = fs.tree("d/", "d/f")
    entries = [acl.Entry(acl.USER_OBJ, 7), acl.Entry(acl.GROUP_OBJ, 5), acl.Entry(acl.OTHER, 5)]
    fs.setxattr(t["d"], acl.DEFAULT, acl.encode(entries), ROOT)
    child = fs.make(t["d"], b"inherits")  # gets the default ACL as its own
    owner, group, other = entries
    named = [owner, acl.Entry(acl.USER, 6, 1000), group, acl.Entry(acl.MASK, 7), other]
    fs.setxattr(t["d/f"], acl.ACCESS, acl.encode(named), ROOT)
    assert child.ino and search(fs, xattrs=[(acl.DEFAULT, None)]) == []
    assert_consistent(fs)
    fs.removexattr(t["d"], acl.DEFAULT, ROOT)
    assert_consistent(fs)


def test_fsck_reports_damaged_index_records_by_class_and_repairs_them(fs):
    t = fs.tree("d/", "d/f.csv", "g")
    fs.setxattr(t["d/f.csv"], b"user.j", b'{"x": 2}', ROOT)
    missing = fs.keys.extension_index(b"f.csv", t["d"])
    extra = fs.keys.name_index(b"ghost", t["d"])
    wrong = fs.keys.name_index(b"g", ROOT_INODE)
    stale = fs.keys.json_field(b"user.j", "x", index.typed_element(3), t["d/f.csv"])
    fs.run(lambda tr: tr.clear(missing))
    fs.raw_set(extra, (99).to_bytes(8, "little"))
    fs.raw_set(wrong, (99).to_bytes(8, "little"))
    fs.raw_set(stale, b"")
    findings = [f for f in fsck.check(fs.store, fs.config).findings if f.kind == fsck.INDEXES]
    assert sorted(f.text for f in findings) == sorted(
        [
            f"index record {missing!r} is missing",
            f"index record {extra!r} matches no entry or xattr",
            f"index record {stale!r} matches no entry or xattr",
            f"index record {wrong!r} has value {(99).to_bytes(8, 'little')!r}",
        ]
    )
    assert all(fs.run(finding.recheck) for finding in findings)
    for finding in findings:
        fs.run(finding.repair)
    assert not any(fs.run(finding.recheck) for finding in findings)
    assert_consistent(fs)
    assert [f for f in fsck.check(fs.store, fs.config).findings if f.kind == fsck.INDEXES] == []
    assert search(fs, name_glob=b"*.csv") == ["/d/f.csv"]


def test_fsck_recheck_drops_an_index_finding_a_later_change_explains(fs):
    t = fs.tree("a")
    fs.run(lambda tr: tr.clear(fs.keys.name_index(b"a", ROOT_INODE)))
    (finding,) = [f for f in fsck.check(fs.store, fs.config).findings if f.kind == fsck.INDEXES]
    fs.unlink(ROOT_INODE, b"a", ROOT)  # the entry is gone: the record should not exist any more
    assert t["a"] and not fs.run(finding.recheck)


@pytest.mark.parametrize("dirs_max", [1, 1000], ids=["whole-extension", "per-directory"])
def test_an_extension_under_a_subtree_is_read_per_directory_or_whole(fs, monkeypatch, dirs_max):
    from metadata import find as find_module

    monkeypatch.setattr(find_module, "SUBTREE_DIRS_MAX", dirs_max)
    fs.tree("a/", "a/b/", "a/b/c/", "a/b/c/x.tar.gz", "a/y.gz", "a/z.tar", "e/", "e/w.tar.gz", "a/b/.gz")
    assert search(fs, name_glob=b"*.tar.gz", under=b"/a") == ["/a/b/c/x.tar.gz"]
    assert search(fs, name_glob=b"*.gz", under=b"/a/b") == ["/a/b/.gz", "/a/b/c/x.tar.gz"]
    assert search(fs, name_glob=b"*.gz") == ["/a/b/.gz", "/a/b/c/x.tar.gz", "/a/y.gz", "/e/w.tar.gz"]
    fs.rename(ROOT_INODE, b"e", fs.lookup(ROOT_INODE, b"a").ino, b"e", ROOT)  # a directory moves in
    assert search(fs, name_glob=b"*.tar.gz", under=b"/a") == ["/a/b/c/x.tar.gz", "/a/e/w.tar.gz"]
    assert_consistent(fs)


def test_matches_carry_attributes_only_when_asked(fs):
    t = fs.tree("d/", "d/a.parquet", "d/b.parquet")
    fs.setxattr(t["d/a.parquet"], b"user.k", b"v", ROOT)
    for query in (dict(name_glob=b"*.parquet"), dict(xattrs=[(b"user.k", b"v")])):
        bare = search_api(fs.store, fs.config.name, Query(**query)).matches
        assert [(m.path, m.ino, m.attr) for m in bare][:1] == [(b"/d/a.parquet", t["d/a.parquet"], None)]
        full = search_api(fs.store, fs.config.name, Query(**query, attributes=True)).matches
        assert [(m.path, m.ino, m.attr.ino, m.attr.is_dir) for m in full][:1] == [
            (b"/d/a.parquet", t["d/a.parquet"], t["d/a.parquet"], False)
        ]


def test_many_matches_deep_hard_linked_and_moved_get_every_path(fs):
    """Paths resolved a level at a time for many matches at once: every depth, every hard link, and
    the new paths after a directory above them moves."""
    t = fs.tree("a/", "a/b/", "a/b/c/", "a/b/c/d/", "x/", "a/1.dat", "a/b/2.dat", "a/b/c/d/3.dat")
    fs.link(t["a/b/c/d/3.dat"], t["x"], b"3.dat", ROOT)
    for path in ("a/1.dat", "a/b/2.dat", "a/b/c/d/3.dat"):
        fs.setxattr(t[path], b"user.tag", b"t", ROOT)
    everywhere = ["/a/1.dat", "/a/b/2.dat", "/a/b/c/d/3.dat", "/x/3.dat"]
    assert search(fs, xattrs=[(b"user.tag", b"t")]) == everywhere
    assert search(fs, xattrs=[(b"user.tag", b"t")], under=b"/a/b") == ["/a/b/2.dat", "/a/b/c/d/3.dat"]
    assert search(fs, name_glob=b"*.dat", under=b"/a/b") == ["/a/b/2.dat", "/a/b/c/d/3.dat"]
    fs.rename(t["a"], b"b", t["x"], b"moved", ROOT)
    assert search(fs, xattrs=[(b"user.tag", b"t")]) == [
        "/a/1.dat", "/x/3.dat", "/x/moved/2.dat", "/x/moved/c/d/3.dat"
    ]
    assert search(fs, name_glob=b"*.dat", under=b"/x") == ["/x/3.dat", "/x/moved/2.dat", "/x/moved/c/d/3.dat"]
    assert_consistent(fs)


def test_a_glob_of_an_empty_extension_under_a_subtree_matches_names_ending_in_a_dot(fs):
    fs.tree("a/", "a/x", "a/y.", "a/z.txt", "b.")
    assert search(fs, name_glob=b"*.", under=b"/a") == ["/a/y."]
    assert search(fs, name_glob=b"*.txt", under=b"/a") == ["/a/z.txt"]
    assert search(fs, name_glob=b"z*.txt", under=b"/a") == ["/a/z.txt"]  # a literal start: the name index


def test_a_loop_of_back_references_in_damaged_metadata_is_an_error_not_a_hang(fs):
    t = fs.tree("a/", "a/b/", "a/b/f")
    fs.setxattr(t["a/b/f"], b"user.k", b"v", ROOT)

    def damage(tr):  # a's back-reference now names b as its parent: a and b are each other's parent
        tr.clear(fs.keys.link(t["a"], ROOT_INODE, b"a"))
        tr.set(fs.keys.link(t["a"], t["a/b"], b"a"), b"")

    fs.run(damage)
    with pytest.raises(CorruptValue, match="no way up to the root"):
        search(fs, xattrs=[(b"user.k", b"v")])
