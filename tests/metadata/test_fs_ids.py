"""Filesystem ids and the checks on stored settings: every filesystem gets a uuid4 when formatted; one
made before ids gets one, once, from ``assign_fs_id`` (retry-safe: the store's chaos reruns it); settings
that decode but hold impossible values are corrupt."""

from __future__ import annotations

import uuid

import pytest

from metadata.keys import FsKeys
from metadata.model import FsConfig, pack
from metadata.namespace import UnknownFilesystem, assign_fs_id, format_filesystem, load_config
from metadata.store import CorruptValue


def test_format_gives_every_filesystem_its_own_id(store):
    format_filesystem(store, FsConfig("a"))
    format_filesystem(store, FsConfig("b"))
    first, second = load_config(store, "a").fs_id, load_config(store, "b").fs_id
    assert uuid.UUID(first).version == 4 and uuid.UUID(second).version == 4
    assert first != second
    format_filesystem(store, FsConfig("c", fs_id="chosen"))
    assert load_config(store, "c").fs_id == "chosen"


def test_assign_fs_id_gives_an_id_once(store):
    format_filesystem(store, FsConfig("old"))
    settings = load_config(store, "old").__dict__
    del settings["fs_id"]  # as written before filesystems had ids
    store.transact(lambda tr: tr.set(FsKeys("old").config(), pack(settings)))
    assert load_config(store, "old").fs_id == ""
    assert assign_fs_id(store, "old", "first").fs_id == "first"
    assert assign_fs_id(store, "old", "second").fs_id == "first"
    assert load_config(store, "old").fs_id == "first"
    with pytest.raises(UnknownFilesystem, match="no filesystem named 'ghost'"):
        assign_fs_id(store, "ghost", "x")


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"name": ""}, "name is ''"),
        ({"block_dirs": ["/a", 3]}, "block_dirs is ['/a', 3]"),
        ({"chunk_size_bytes": True}, "chunk_size_bytes is True"),
        ({"log_retention_s": 0}, "log_retention_s is 0"),
        ({"created_ns": -5, "fs_id": None}, "created_ns is -5; fs_id is None"),
        ({"format_version": 0}, "format_version is 0"),
        ({"format_version": "2"}, "format_version is '2'"),
        ({"search_index": 1}, "search_index is 1"),
    ],
)
def test_impossible_settings_are_corrupt(store, changes, problem):
    format_filesystem(store, FsConfig("fs"))
    settings = load_config(store, "fs").__dict__ | changes
    store.transact(lambda tr: tr.set(FsKeys("fs").config(), pack(settings)))
    with pytest.raises(CorruptValue) as caught:
        load_config(store, "fs")
    name = settings["name"]
    assert str(caught.value) == f"corrupt settings of filesystem {name!r}: {problem}"
