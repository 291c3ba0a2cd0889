"""``fusefs dump`` and ``fusefs load``: a round trip through real mounts compares identical, damaged or
truncated input loads nothing, and names and filesystem ids already in the target store are refused."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess

import pytest
from fsck_tree import build

from metadata.keys import FsKeys
from metadata.sqlite_store import SqliteStore


@pytest.fixture
def made(cli, tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), "--chunk-size", "64K", "fs")
    assert result.returncode == 0, result.stderr
    return url


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


def _populate(root):
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


def test_round_trip_through_a_dump_mounts_identical(cli, tmp_path, made, fuse_mountpoint):
    url = made
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    _populate(fuse_mountpoint)
    refused = cli("dump", "--store", url, "--name", "fs", str(tmp_path / "early.jsonl"))
    assert refused.returncode == 1 and "fs is mounted" in refused.one_line_error()
    assert not (tmp_path / "early.jsonl").exists()
    assert cli("umount", str(fuse_mountpoint)).returncode == 0

    assert cli("mount", "--store", url, "--name", "fs", "-o", "ro", str(fuse_mountpoint)).returncode == 0
    original = _snapshot(fuse_mountpoint)
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert len(original) == 8

    dumped = cli("dump", "--store", url, "--name", "fs", str(tmp_path / "fs.jsonl"))
    assert dumped.returncode == 0, dumped.stderr
    other = f"sqlite://{tmp_path}/other.db"
    loaded = cli("load", "--store", other, "--name", "copy", str(tmp_path / "fs.jsonl"))
    assert loaded.returncode == 0, loaded.stderr
    assert f"uses the block directories {tmp_path}/blocks (chunk files are not copied)" in loaded.stdout
    assert cli("fsck", "--store", other, "--name", "copy").returncode == 0

    assert cli("mount", "--store", other, "--name", "copy", str(fuse_mountpoint)).returncode == 0
    try:
        assert _snapshot(fuse_mountpoint) == original
        # The copy is writable: a new large file gets chunk ids after the dumped ones.
        (fuse_mountpoint / "more").write_bytes(b"m" * 200_000)
        assert (fuse_mountpoint / "more").read_bytes() == b"m" * 200_000
    finally:
        assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert cli("fsck", "--store", other, "--name", "copy").returncode == 0


def test_dump_to_stdout_and_load_from_stdin_reproduce_the_dump(cli, tmp_path, made):
    build(str(tmp_path / "meta.db"), "fs")
    dumped = cli("dump", "--store", made, "--name", "fs", "-")
    assert dumped.returncode == 0, dumped.stderr
    header = json.loads(dumped.stdout.splitlines()[0])
    assert header["format"] == "fusefs-dump" and header["version"] == 1 and header["config"]["fs_id"]
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


CASES = {
    "truncated": (lambda lines: lines[:-4], "truncated dump: it ends after"),
    "no-end": (lambda lines: lines[:-1], "truncated dump"),
    "damaged-field": (_damaged, "damaged dump: line 4:"),
    "bad-json": (_bad_json, "damaged dump: line 6 is not JSON"),
    "wrong-count": (_wrong_count, "counts 2 records"),
    "not-a-dump": (lambda lines: ["hello"], "not a fusefs dump"),
    "empty": (lambda lines: [], "not a fusefs dump"),
    "other-version": (
        lambda lines: [lines[0].replace('"version": 1', '"version": 9'), *lines[1:]],
        "version 9",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_damaged_or_truncated_input_loads_nothing(cli, tmp_path, made, case):
    build(str(tmp_path / "meta.db"), "fs")
    lines = cli("dump", "--store", made, "--name", "fs", "-").stdout.splitlines()
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
