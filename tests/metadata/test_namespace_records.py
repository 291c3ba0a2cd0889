"""Namespace model: the change log, several filesystems in one store, and corrupt stored values."""

from __future__ import annotations

import errno
import stat

import pytest
from conftest import REG, ROOT, USER, Fs

from metadata import changelog, filedata
from metadata.model import ROOT_INODE, FsConfig, SetAttrRequest, now_ns, pack
from metadata.namespace import (
    FilesystemExists,
    Namespace,
    UnknownFilesystem,
    format_filesystem,
    list_filesystems,
    load_config,
    save_config,
)
from metadata.store import CorruptValue, StoreError

# -- change log ---------------------------------------------------------------------------------------


def record_fields(record):
    return (record.op, record.ino, record.parent, record.name, record.new_parent, record.new_name)


def test_every_mutation_logs_one_record_in_commit_order(fs):
    started = now_ns()
    expected = []

    def logged(fields, method, *args, **kwargs):
        result = getattr(fs, method)(*args, **kwargs)
        expected.append(fields(result) if callable(fields) else fields)
        return result

    d = logged(lambda a: ("mkdir", a.ino, ROOT_INODE, b"d", None, None), "mkdir", ROOT_INODE, b"d").ino
    f = logged(lambda a: ("create", a.ino, d, b"f", None, None), "make", d, b"f", REG, USER).ino
    s = logged(lambda a: ("symlink", a.ino, ROOT_INODE, b"s", None, None), "make", ROOT_INODE, b"s",
               stat.S_IFLNK | 0o777, target=b"d/f").ino
    logged(lambda a: ("mknod", a.ino, d, b"p", None, None), "make", d, b"p", stat.S_IFIFO | 0o600)
    logged(("link", f, ROOT_INODE, b"g", None, None), "link", f, ROOT_INODE, b"g", USER)
    fs.fails(errno.EEXIST, "link", f, ROOT_INODE, b"g", USER)  # failures log nothing
    logged(("rename", f, d, b"f", ROOT_INODE, b"h"), "rename", d, b"f", ROOT_INODE, b"h", USER)
    logged(("exchange", f, ROOT_INODE, b"h", ROOT_INODE, b"s"), "rename", ROOT_INODE, b"h", ROOT_INODE,
           b"s", USER, exchange=True)
    logged(("setattr", f, None, None, None, None), "setattr", f, SetAttrRequest(mode=0o600), USER)
    logged(("setxattr", f, None, b"user.x", None, None), "setxattr", f, b"user.x", b"1", USER)
    logged(("removexattr", f, None, b"user.x", None, None), "removexattr", f, b"user.x", USER)
    logged(("write", f, None, None, None, None), "write_back", fs.attr(f), USER)
    logged(("unlink", f, ROOT_INODE, b"g", None, None), "unlink", ROOT_INODE, b"g", USER)
    logged(("unlink", s, ROOT_INODE, b"h", None, None), "unlink", ROOT_INODE, b"h", USER)
    fs.fails(errno.ENOTEMPTY, "rmdir", ROOT_INODE, b"d", USER)
    logged(("unlink", fs.lookup(d, b"p").ino, d, b"p", None, None), "unlink", d, b"p", USER)
    logged(("rmdir", d, ROOT_INODE, b"d", None, None), "rmdir", ROOT_INODE, b"d", USER)

    records = fs.log()
    assert [record_fields(record) for record in records] == expected
    stamps = [record.versionstamp for record in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    times = [record.time_ns for record in records]
    assert times == sorted(times) and times[0] >= started
    assert {record.uid for record in records[4:]} == {USER.uid}
    # Resuming after a versionstamp returns exactly the later records.
    assert [record_fields(r) for r in fs.log(after=stamps[5])] == expected[6:]
    assert fs.log(after=stamps[-1]) == []
    assert "rename" in records[5].describe() and "-> 1/h" in records[5].describe()


def test_trim_log_removes_old_records(fs):
    for i in range(5):
        fs.make(ROOT_INODE, b"old%d" % i)
    cutoff = now_ns()
    for i in range(3):
        fs.make(ROOT_INODE, b"new%d" % i)
    trimmed = [fs.run(lambda tr: changelog.trim_log(tr, fs.keys, cutoff, batch=2)) for _ in range(4)]
    assert trimmed == [2, 2, 1, 0]
    assert [record.name for record in fs.log()] == [b"new0", b"new1", b"new2"]


# -- several filesystems in one store -----------------------------------------------------------------


def test_two_filesystems_share_a_store(store):
    alpha, beta = Fs(store, "alpha"), Fs(store, "beta")
    prefix_named = Fs(store, "alph")  # a name that is a prefix of another stays apart from it
    assert sorted(config.name for config in list_filesystems(store)) == ["alph", "alpha", "beta"]
    in_alpha = alpha.make(ROOT_INODE, b"f")
    in_beta = beta.mkdir(ROOT_INODE, b"f")
    assert alpha.lookup(ROOT_INODE, b"f") == in_alpha and not in_alpha.is_dir
    assert beta.lookup(ROOT_INODE, b"f") == in_beta and in_beta.is_dir
    prefix_named.fails(errno.ENOENT, "lookup", ROOT_INODE, b"f")
    alpha.unlink(ROOT_INODE, b"f", ROOT)
    assert beta.lookup(ROOT_INODE, b"f").ino == in_beta.ino
    assert [r.op for r in alpha.log()] == ["create", "unlink"]
    assert [r.op for r in beta.log()] == ["mkdir"]
    assert prefix_named.log() == []
    assert (alpha.statfs()[0], beta.statfs()[0], prefix_named.statfs()[0]) == (2, 2, 1)


def test_format_and_load_config(store):
    config = FsConfig("gamma", block_dirs=["/srv/a", "/srv/b"], inline_max_bytes=1000,
                      chunk_size_bytes=1 << 20, log_retention_s=60)
    format_filesystem(store, config, USER)
    loaded = load_config(store, "gamma")
    assert loaded == config and loaded.created_ns > 0
    with pytest.raises(FilesystemExists):
        format_filesystem(store, FsConfig("gamma"))
    with pytest.raises(UnknownFilesystem, match="nope"):
        load_config(store, "nope")
    assert issubclass(FilesystemExists, StoreError) and issubclass(UnknownFilesystem, StoreError)
    loaded.log_retention_s = 3600
    save_config(store, loaded)
    assert load_config(store, "gamma").log_retention_s == 3600
    root = store.transact(lambda tr: Namespace(loaded).getattr(tr, ROOT_INODE))
    assert (root.uid, root.gid, root.nlink, stat.S_IFMT(root.mode)) == (USER.uid, USER.gid, 2, stat.S_IFDIR)


# -- corrupt values -----------------------------------------------------------------------------------

GARBAGE = {
    "invalid-msgpack": b"\xc1",
    "random-bytes": bytes(range(7, 250, 13)),
    "trailing-data": b"garbage!",
    "truncated": pack([stat.S_IFREG | 0o644, 1, 0, 0, 0])[:4],
    "an-integer": pack(7),
    "a-map": pack({"mode": 1}),
    "empty-list": pack([]),
    "too-many-fields": pack([1] * 20),
}

OPERATIONS_ON_F = {
    "getattr": lambda fs, t: fs.getattr(t["d/f"]),
    "lookup": lambda fs, t: fs.lookup(t["d"], b"f"),
    "setattr": lambda fs, t: fs.setattr(t["d/f"], SetAttrRequest(mode=0o600), ROOT),
    "unlink": lambda fs, t: fs.unlink(t["d"], b"f", ROOT),
    "link": lambda fs, t: fs.link(t["d/f"], ROOT_INODE, b"g", ROOT),
    "rename": lambda fs, t: fs.rename(t["d"], b"f", ROOT_INODE, b"g", ROOT),
    "rename-over": lambda fs, t: fs.rename(ROOT_INODE, b"x", t["d"], b"f", ROOT),
    "setxattr": lambda fs, t: fs.setxattr(t["d/f"], b"user.a", b"v", ROOT),
    "getxattr": lambda fs, t: fs.getxattr(t["d/f"], b"user.a"),
    "reclaim": lambda fs, t: fs.reclaim(t["d/f"]),
}


def corrupt_attr(fs, ino, garbage):
    fs.raw_set(fs.keys.attr(ino), garbage)


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_corrupt_attribute_value_raises_corrupt_value_naming_the_inode(fs, garbage):
    made = fs.tree("d/", "d/f", "x", "a/", "a/b/", "m/")
    corrupt_attr(fs, made["d/f"], garbage)
    for name, operation in OPERATIONS_ON_F.items():
        with pytest.raises(CorruptValue, match=f"inode {made['d/f']}\\b"):
            operation(fs, made)
            pytest.fail(f"{name} did not notice the corrupt attributes")
    # A listing leaves the damaged inode out (and logs it) rather than failing the whole directory.
    fs.make(made["d"], b"sibling")
    assert [name for name, _ in fs.readdir(made["d"], None, 10)] == [b"sibling"]
    corrupt_attr(fs, made["a"], garbage)
    with pytest.raises(CorruptValue, match=f"inode {made['a']}\\b"):
        fs.make(made["a"], b"new")
    with pytest.raises(CorruptValue, match=f"inode {made['a']}\\b"):
        fs.rename(ROOT_INODE, b"m", made["a/b"], b"m", ROOT)  # the loop check walks through a
    assert fs.lookup(ROOT_INODE, b"x").is_reg  # the rest of the filesystem still works


def test_attribute_value_with_wrong_field_types_raises_corrupt_value(fs):
    made = fs.tree("d/", "d/f")
    corrupt_attr(fs, made["d/f"], pack(["x"] * 12))
    corrupt_attr(fs, made["d"], pack([None] * 12))
    with pytest.raises(CorruptValue, match=f"inode {made['d/f']}\\b"):
        fs.getattr(made["d/f"])
    with pytest.raises(CorruptValue, match=f"inode {made['d']}\\b"):
        fs.make(made["d"], b"g")


def _corrupt_entry(fs):
    made = fs.tree("d/", "d/f")
    fs.raw_set(fs.keys.entry(made["d"], b"f"), pack(7))
    return lambda: fs.lookup(made["d"], b"f")


def _corrupt_chunk_record(fs):
    ino = fs.make(ROOT_INODE, b"f").ino
    fs.run(lambda tr: filedata.put_chunk(tr, fs.keys, ino, 0, filedata.ChunkRecord(9, 0)))
    fs.raw_set(fs.keys.chunk(ino, 0), pack(7))
    fs.unlink(ROOT_INODE, b"f", ROOT)
    return lambda: fs.reclaim(ino)


def _corrupt_config(fs):
    fs.raw_set(fs.keys.config(), pack(7))
    return lambda: load_config(fs.store, fs.config.name)


def _corrupt_log_record(fs):
    fs.make(ROOT_INODE, b"f")
    key, _ = fs.raw_range(fs.keys.log())[0]
    fs.raw_set(key, pack(7))
    return lambda: fs.log()


@pytest.mark.parametrize("corrupt",
                         [_corrupt_entry, _corrupt_chunk_record, _corrupt_config, _corrupt_log_record],
                         ids=["directory-entry", "chunk-record", "config", "log-record"])
def test_other_wrong_shaped_records_raise_corrupt_value(fs, corrupt):
    operation = corrupt(fs)
    with pytest.raises(CorruptValue):
        operation()
