"""``fusefs dump`` and ``fusefs load``: a round trip through real mounts compares identical, damaged or
truncated input loads nothing, and names and filesystem ids already in the target store are refused."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import subprocess

import fdb.tuple
import pytest
from fsck_tree import build

from metadata import acl, quota
from metadata.keys import FsKeys
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord
from metadata.namespace import Namespace, load_config
from metadata.sqlite_store import SqliteStore

ACL_UNDEFINED_ID = 0xFFFFFFFF


def _mkfs(cli, tmp_path, *options):
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    result = cli(
        "mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), "--chunk-size", "64K", *options, "fs"
    )
    assert result.returncode == 0, result.stderr
    return url


@pytest.fixture
def made(cli, tmp_path):
    return _mkfs(cli, tmp_path)


def _snapshot(root):
    """Everything a user can see of a tree: names, attributes, xattrs, contents, link targets."""
    seen = {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            entry = {
                "ino": info.st_ino,
                "mode": info.st_mode,
                "nlink": info.st_nlink,
                "uid": info.st_uid,
                "gid": info.st_gid,
                "size": info.st_size,
                "mtime": info.st_mtime_ns,
                "xattrs": {
                    n: os.getxattr(path, n, follow_symlinks=False)
                    for n in os.listxattr(path, follow_symlinks=False)
                },
            }
            if stat.S_ISLNK(info.st_mode):
                entry["target"] = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as file:
                    entry["sha256"] = hashlib.sha256(file.read()).hexdigest()
            seen[os.path.relpath(path, root)] = entry
    return seen


def _populate(cli, root):
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "small").write_bytes(b"small file\n")
    (root / "big").write_bytes(os.urandom(300_000))  # five 64 KiB chunks
    (root / "sparse").write_bytes(b"")
    os.truncate(root / "sparse", 1_000_000)
    os.link(root / "dir" / "small", root / "dir" / "sub" / "again")
    os.symlink("dir/small", root / "link")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "dir" / "small", "user.colour", b"blue")
    os.setxattr(root / "dir", "user.empty", b"")
    os.chmod(root / "big", 0o640)
    os.chown(root / "dir" / "sub", 1234, 5678)
    os.utime(root / "dir" / "small", ns=(1_000_000_000, 2_000_000_000))
    subprocess.run(["setfacl", "-m", "u:1234:rw,m::rw", str(root / "big")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "g:5678:rx", str(root / "dir" / "sub")], check=True)
    (root / "doomed").write_bytes(b"kept in the trash")
    os.unlink(root / "doomed")
    quota = cli("quota", "set", str(root / "dir"), "--bytes", "1M", "--inodes", "50")
    assert quota.returncode == 0, quota.stderr


def _described(cli, url, name):
    """What the commands say of an unmounted filesystem beyond its tree: quotas, trash, search index."""
    said = {}
    for command in (
        ("quota", "list"),
        ("trash", "list"),
        ("find", "--fs", name, "--name-glob", "*a*"),
    ):
        name_option = () if command[0] == "find" else ("--name", name)
        result = cli(*command, "--store", url, *name_option)
        assert result.returncode == 0, result.stderr
        said[command[0]] = result.stdout
    return said


def _fdb_url():
    if os.environ.get("FUSEFS_TEST_STORE") != "fdb" or not os.environ.get("FDB_CLUSTER_FILE"):
        pytest.skip("FoundationDB: set FUSEFS_TEST_STORE=fdb and FDB_CLUSTER_FILE to run this round trip")
    return "fdb://" + os.path.abspath(os.environ["FDB_CLUSTER_FILE"])


@pytest.mark.parametrize("via", ["embedded", "shared", "fdb"])
def test_round_trip_through_a_dump_mounts_identical(cli, tmp_path, fuse_mountpoint, via):
    """embedded -> dump -> load -> embedded, sole or in shared mode; with FoundationDB configured,
    embedded -> FoundationDB -> embedded.  Everything compares identical: the tree with attributes,
    xattrs and ACLs, contents, the trash, quotas with their usage, and the search index's answers."""
    target = _fdb_url() if via == "fdb" else f"sqlite://{tmp_path}/other.db"
    options = "acl,shared" if via == "shared" else "acl"
    url = _mkfs(cli, tmp_path, "--trash-days", "7", "--search-index")

    def mount(store, name, extra=""):
        result = cli("mount", "--store", store, "--name", name, "-o", options + extra, str(fuse_mountpoint))
        assert result.returncode == 0, result.stderr

    def umount():
        assert cli("umount", str(fuse_mountpoint)).returncode == 0

    mount(url, "fs")
    _populate(cli, fuse_mountpoint)
    refused = cli("dump", "--store", url, "--name", "fs", str(tmp_path / "early.jsonl"))
    assert refused.returncode == 1 and "fs is mounted" in refused.one_line_error()
    assert not (tmp_path / "early.jsonl").exists()
    umount()

    mount(url, "fs", ",ro")  # nothing changes what is compared
    original = _snapshot(fuse_mountpoint)
    umount()
    assert len(original) == 10, sorted(original)  # with /.trash and its entry
    assert "system.posix_acl_access" in original["big"]["xattrs"]
    described = _described(cli, url, "fs")
    assert "inode 3: bytes 11/1048576, inodes 2/50" in described["quota"]
    assert "as doomed" in described["trash"]
    assert "/dir/small\n" in described["find"] and "/sparse\n" in described["find"]

    copy = f"copy-{os.getpid()}-{tmp_path.name}"
    dumped = cli("dump", "--store", url, "--name", "fs", str(tmp_path / "fs.jsonl"))
    assert dumped.returncode == 0, dumped.stderr
    loaded = cli("load", "--store", target, "--name", copy, str(tmp_path / "fs.jsonl"))
    assert loaded.returncode == 0, loaded.stderr
    assert f"uses the block directories {tmp_path}/blocks (chunk files are not copied)" in loaded.stdout
    if via == "fdb":  # checked there, and back: FoundationDB -> embedded
        assert cli("fsck", "--store", target, "--name", copy).returncode == 0
        assert _described(cli, target, copy) == described
        again = cli("dump", "--store", target, "--name", copy, str(tmp_path / "copy.jsonl"))
        assert again.returncode == 0, again.stderr
        target = f"sqlite://{tmp_path}/other.db"
        loaded = cli("load", "--store", target, "--name", copy, str(tmp_path / "copy.jsonl"))
        assert loaded.returncode == 0, loaded.stderr
    assert cli("fsck", "--store", target, "--name", copy).returncode == 0
    assert _described(cli, target, copy) == described

    mount(target, copy)
    try:
        assert _snapshot(fuse_mountpoint) == original
        # The copy is writable: a new large file gets chunk ids after the dumped ones.
        (fuse_mountpoint / "more").write_bytes(b"m" * 200_000)
        assert (fuse_mountpoint / "more").read_bytes() == b"m" * 200_000
        # The quota holds in the copy: its usage came along.
        with pytest.raises(OSError) as over:
            (fuse_mountpoint / "dir" / "huge").write_bytes(b"h" * 2_000_000)
        assert over.value.errno == errno.EDQUOT
    finally:
        umount()
    assert cli("fsck", "--store", target, "--name", copy).returncode == 0


def test_dump_to_stdout_and_load_from_stdin_reproduce_the_dump(cli, tmp_path, made):
    build(str(tmp_path / "meta.db"), "fs")
    dumped = cli("dump", "--store", made, "--name", "fs", "-")
    assert dumped.returncode == 0, dumped.stderr
    header = json.loads(dumped.stdout.splitlines()[0])
    assert header["format"] == "fusefs-dump" and header["version"] == 2 and header["config"]["fs_id"]
    assert json.loads(dumped.stdout.splitlines()[-1])["t"] == "end"
    other = f"sqlite://{tmp_path}/other.db"
    loaded = subprocess.run(
        cli.command("load", "--store", other, "--name", "fs", "-"),
        input=dumped.stdout,
        capture_output=True,
        text=True,
        env=cli.env,
        cwd=cli.home,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    again = cli("dump", "--store", other, "--name", "fs", "-")
    assert again.stdout == dumped.stdout


#: Record kinds that stay out of a dump: runtime state (mount sessions, idempotency records, the change
#: log and its head), and the search indexes, which a load derives anew (metadata/keys.py's table).
NOT_DUMPED = {"s", "op", "L", "H", "N", "R", "P", "V", "VH", "J"}


def _filesystem_records(db, name):
    keys = FsKeys(name)
    return [
        (key, value)
        for key, value in _keys_under(db, name)
        if fdb.tuple.unpack(key[len(keys.prefix) :])[0] not in NOT_DUMPED
    ]


def test_a_load_restores_every_record_but_runtime_state(cli, tmp_path):
    """Record for record: a kind the dump forgot (quotas were) shows up here, whatever its kind.  The
    filesystem has everything a filesystem can hold: a trash with an entry, a quota, ACL and user
    xattrs, search indexes, chunk records with object versions, orphans and counters."""
    db = tmp_path / "meta.db"
    (tmp_path / "blocks").mkdir()
    made = cli(
        "mkfs", "--store", f"sqlite://{db}", "--blocks", str(tmp_path / "blocks"), "--chunk-size", "64K",
        "--trash-days", "7", "--search-index", "fs",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    tree = build(str(db), "fs")
    store = SqliteStore(str(db))
    try:
        ns = Namespace(load_config(store, "fs"))
        store.transact(lambda tr: quota.set_quota(tr, ns, tree.dir, 1 << 30, 100))
        store.transact(lambda tr: ns.unlink(tr, ROOT_INODE, b"link", ROOT_CALLER))  # into the trash
        access = acl.encode([acl.Entry(tag, 6, ACL_UNDEFINED_ID) for tag in (1, 4, 32)])
        store.transact(lambda tr: ns.setxattr(tr, tree.small, acl.ACCESS, access, ROOT_CALLER))

        def uploaded(tr):  # as a data tier records an upload: the chunk's object version
            record = ChunkRecord.decode(tr.get(ns.keys.chunk(tree.big, 0)))
            record.version = 12345
            tr.set(ns.keys.chunk(tree.big, 0), record.encode())

        store.transact(uploaded)
    finally:
        store.close()
    original = _filesystem_records(str(db), "fs")
    kinds = {fdb.tuple.unpack(key[len(FsKeys("fs").prefix) :])[0] for key, _ in original}
    assert {"q", "qc", "qu", "qf", "t", "x", "c", "b", "n", "id"} <= kinds

    dumped = cli("dump", "--store", f"sqlite://{db}", "--name", "fs", str(tmp_path / "fs.jsonl"))
    assert dumped.returncode == 0, dumped.stderr
    other = tmp_path / "other.db"
    loaded = cli("load", "--store", f"sqlite://{other}", "--name", "fs", str(tmp_path / "fs.jsonl"))
    assert loaded.returncode == 0, loaded.stderr
    assert _filesystem_records(str(other), "fs") == original
    checked = cli("index", "check", "--store", f"sqlite://{other}", "--name", "fs")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _keys_under(db, name):
    store = SqliteStore(db, read_only=True, exclusive=False)
    try:
        return store.transact(lambda tr: tr.get_range(*FsKeys(name).whole_filesystem()))
    finally:
        store.close()


def _damaged(lines):
    return (
        lines[:3] + ['{"t": "entry", "parent": 1, "name": "!!not base64", "ino": 2, "type": 0}'] + lines[3:]
    )


def _bad_json(lines):
    return lines[:5] + ["{not json"] + lines[5:]


def _wrong_count(lines):
    return lines[:-1] + ['{"t": "end", "records": 2}']


def _version_1(lines, **settings):
    """The dump as version 1 wrote it: no chunk object versions (and no quotas: none here)."""
    header = json.loads(lines[0])
    header["version"] = 1
    header["config"].update(settings)
    records = [json.loads(line) for line in lines[1:]]
    for record in records:
        record.pop("version", None)
    return [json.dumps(header), *map(json.dumps, records)]


CASES = {
    "truncated": (lambda lines: lines[:-4], "truncated dump: it ends after"),
    "no-end": (lambda lines: lines[:-1], "truncated dump"),
    "damaged-field": (_damaged, "damaged dump: line 4:"),
    "bad-json": (_bad_json, "damaged dump: line 6 is not JSON"),
    "wrong-count": (_wrong_count, "counts 2 records"),
    "not-a-dump": (lambda lines: ["hello"], "not a fusefs dump"),
    "empty": (lambda lines: [], "not a fusefs dump"),
    "version-1-of-a-data-tier": (
        lambda lines: _version_1(lines, data_url="s3://bucket/fs", s3_endpoint="http://127.0.0.1:1"),
        "a version-1 dump of a filesystem with an object data tier lacks its chunks' object versions",
    ),
    "other-version": (
        lambda lines: [lines[0].replace('"version": 2', '"version": 9'), *lines[1:]],
        "version 9",
    ),
}


@pytest.fixture(scope="module")
def dump_lines(module_cli):
    """The lines of a dump of the fsck tree (tests/cli/fsck_tree.py), made once for the tests that spoil
    copies of it."""
    url = _mkfs(module_cli, module_cli.home)
    build(str(module_cli.home / "meta.db"), "fs")
    dumped = module_cli("dump", "--store", url, "--name", "fs", "-")
    assert dumped.returncode == 0, dumped.stderr
    return dumped.stdout.splitlines()


@pytest.mark.parametrize("case", CASES)
def test_damaged_or_truncated_input_loads_nothing(cli, tmp_path, dump_lines, case):
    lines = dump_lines
    spoil, message = CASES[case]
    (tmp_path / "bad.jsonl").write_text("".join(line + "\n" for line in spoil(lines)))
    other = tmp_path / "other.db"
    result = cli("load", "--store", f"sqlite://{other}", "--name", "fs", str(tmp_path / "bad.jsonl"))
    assert result.returncode == 1
    assert message in result.one_line_error()
    assert _keys_under(str(other), "fs") == []
    # And the name is free: the intact dump loads.
    (tmp_path / "good.jsonl").write_text("".join(line + "\n" for line in lines))
    assert (
        cli("load", "--store", f"sqlite://{other}", "--name", "fs", str(tmp_path / "good.jsonl")).returncode
        == 0
    )


def test_a_version_1_dump_loads(cli, tmp_path, made):
    tree = build(str(tmp_path / "meta.db"), "fs")
    lines = cli("dump", "--store", made, "--name", "fs", "-").stdout.splitlines()
    (tmp_path / "v1.jsonl").write_text("".join(line + "\n" for line in _version_1(lines)))
    other = f"sqlite://{tmp_path}/other.db"
    loaded = cli("load", "--store", other, "--name", "fs", str(tmp_path / "v1.jsonl"))
    assert loaded.returncode == 0, loaded.stderr
    assert _filesystem_records(str(tmp_path / "other.db"), "fs") == _filesystem_records(
        str(tmp_path / "meta.db"), "fs"
    )
    assert tree.chunk_ids  # chunk records were in it


def test_load_refuses_a_taken_name_and_a_filesystem_id_already_in_the_store(cli, tmp_path, made):
    dump_file = str(tmp_path / "fs.jsonl")
    assert cli("dump", "--store", made, "--name", "fs", dump_file).returncode == 0
    taken = cli("load", "--store", made, "--name", "fs", dump_file)
    assert taken.returncode == 1 and "a filesystem named 'fs' already exists" in taken.one_line_error()
    same_id = cli("load", "--store", made, "--name", "twin", dump_file)
    assert same_id.returncode == 1
    assert "filesystem 'fs'" in same_id.one_line_error() and "already has id" in same_id.one_line_error()
    assert _keys_under(str(tmp_path / "meta.db"), "twin") == []


def test_dump_and_load_errors_are_one_line(cli, tmp_path, made):
    unknown = cli("dump", "--store", made, "--name", "nope", "-")
    assert unknown.returncode == 1 and "no filesystem named 'nope'" in unknown.one_line_error()
    missing = cli("load", "--store", made, "--name", "x", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 1 and "No such file or directory" in missing.one_line_error()
    usage = cli("load", "--store", made)
    assert usage.returncode == 2 and "required: FILE" in usage.one_line_error()
    for command in ("dump", "load"):
        helped = cli(command, "--help")
        assert helped.returncode == 0 and "FILE" in helped.stdout
