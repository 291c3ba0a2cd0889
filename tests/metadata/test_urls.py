"""Store URLs: what each form opens, and the one-line error for everything else."""

from __future__ import annotations

import os

import pytest

from metadata.emulation import StoreEmulation
from metadata.sqlite_store import SqliteStore
from metadata.store import StoreError, StoreLocked
from metadata.urls import StoreUrlError, data_dir, default_store_url, open_store


def test_sqlite_url_opens_the_embedded_store(tmp_path):
    path = tmp_path / "meta.db"
    store = open_store(f"sqlite://{path}", create=True)
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == str(path)
        # The URL a store reports parses back to the same store.
        assert store.url == f"sqlite://{path}"
        store.transact(lambda tr: tr.set(b"k", b"v"))
    finally:
        store.close()
    reopened = open_store(f"sqlite://{path}", read_only=True)
    try:
        assert reopened.transact(lambda tr: tr.get(b"k")) == b"v"
    finally:
        reopened.close()


def test_sqlite_url_is_exclusive_unless_asked(tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    owner = open_store(url, create=True)
    try:
        with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
            open_store(url)
        open_store(url, exclusive=False).close()
        open_store(url, read_only=True).close()
    finally:
        owner.close()


def test_sqlite_url_with_chaos_fails_some_commits_retryably(tmp_path):
    store = open_store(f"sqlite://{tmp_path}/meta.db", create=True, emulation=StoreEmulation(chaos_conflict_rate=0.5))
    attempts = []

    def write(tr):
        attempts.append(1)
        tr.set(b"k", b"v")

    try:
        for _ in range(20):
            store.transact(write)
    finally:
        store.close()
    assert len(attempts) > 20


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlite://meta.db", "relative path"),
        ("sqlite://relative/dir/meta.db", "relative path"),
        ("sqlite://", "relative path"),
        ("sqlite:///no/such/dir/meta.db", "directory /no/such/dir does not exist"),
        ("sqlite:///tmp/", "names a directory"),
        ("sqlite:///tmp", "names a directory"),
        ("postgres://localhost/db", "unsupported store URL 'postgres://localhost/db'"),
        ("/tmp/meta.db", "use sqlite:///ABSOLUTE/PATH or fdb://"),
        ("", "unsupported store URL ''"),
        ("fdb://localhost:4500", "cluster file"),
        ("fdb:///no/such/fdb.cluster", "cluster file /no/such/fdb.cluster does not exist"),
    ],
)
def test_bad_urls_raise_one_clear_error(url, message):
    with pytest.raises(StoreUrlError, match=message) as caught:
        open_store(url)
    assert isinstance(caught.value, StoreError)
    assert "\n" not in str(caught.value)


def test_default_store_url_lives_in_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    url = default_store_url()
    assert url == f"sqlite://{tmp_path}/xdg/fusefs/meta.db"
    assert os.path.isdir(tmp_path / "xdg" / "fusefs")
    open_store(url, create=True).close()


def test_default_data_dir_ignores_a_relative_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == f"{tmp_path}/.local/share/fusefs"
    assert os.path.isdir(data_dir())
