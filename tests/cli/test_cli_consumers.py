"""``fusefs log --json --consumer`` and ``fusefs consumer list|remove`` on the command line: cursors that
survive the command, one-line errors for bad names, unknown consumers and a store a sole daemon owns."""

from __future__ import annotations

import json

from metadata.model import ROOT_CALLER, ROOT_INODE
from metadata.namespace import Namespace, load_config
from metadata.urls import open_store


def _mkfs(cli, tmp_path, *options: str) -> str:
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), *options, "fs")
    assert result.returncode == 0, result.stderr
    return url


def _create(url: str, *names: bytes) -> None:
    store = open_store(url)
    try:
        ns = Namespace(load_config(store, "fs"))
        first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", len(names)))
        for offset, name in enumerate(names):
            store.transact(lambda tr: ns.create(tr, ROOT_INODE, name, first + offset, 0o100644, ROOT_CALLER))
    finally:
        store.close()


def test_a_consumer_goes_on_where_it_stopped(cli, tmp_path):
    url = _mkfs(cli, tmp_path, "--log-hold", "2")
    assert "(for consumers up to 2 h)" in cli("status", "--store", url).stdout
    _create(url, b"a", b"b\xff")
    log = ["log", "--store", url, "--name", "fs", "--json", "--consumer", "c"]
    first = [json.loads(line) for line in cli(*log, "--limit", "1").stdout.splitlines()]
    assert [(r["op"], r["path"]) for r in first] == [("create", "/a")]
    rest = [json.loads(line) for line in cli(*log).stdout.splitlines()]
    assert [r["path"] for r in rest] == ["/b\udcff"] and rest[0]["id"] > first[0]["id"]
    assert cli(*log).stdout == ""
    listing = cli("consumer", "list", "--store", url, "--name", "fs")
    assert listing.returncode == 0
    assert listing.stdout.splitlines() == [
        line for line in listing.stdout.splitlines() if line.startswith("c\tcursor " + rest[0]["id"])
    ] + ["1 consumer(s) of the change log of 'fs'"]
    removed = cli("consumer", "remove", "--store", url, "--name", "fs", "c")
    assert removed.returncode == 0 and "removed consumer c" in removed.stdout
    again = cli("consumer", "remove", "--store", url, "--name", "fs", "c")
    assert again.returncode == 1
    assert again.one_line_error() == "no log consumer named 'c' in filesystem 'fs'"
    # Removed, then used again: a new consumer, starting from the oldest record kept.
    assert len(cli(*log).stdout.splitlines()) == 2


def test_bad_consumer_names_are_usage_errors(cli, tmp_path):
    url = _mkfs(cli, tmp_path)
    for args in (["log", "--consumer", "a/b"], ["consumer", "remove", "a b"]):
        result = cli(*args, "--store", url, "--name", "fs")
        assert result.returncode == 2
        assert "invalid consumer name" in result.one_line_error()


def test_a_consumer_beside_a_sole_owner_mount_is_refused_in_one_line(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    try:
        (fuse_mountpoint / "f").write_text("x")
        refused = cli("log", "--store", url, "--name", "fs", "--consumer", "c")
        assert refused.returncode == 1
        assert "-o shared" in refused.one_line_error()
        plain = cli("log", "--store", url, "--name", "fs", "--json")  # reading needs no cursor
        assert any(json.loads(line)["path"] == "/f" for line in plain.stdout.splitlines())
    finally:
        assert cli("umount", str(fuse_mountpoint)).returncode == 0
