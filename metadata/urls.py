"""Store URLs: which backend holds a filesystem's metadata, and where.

    sqlite:///ABSOLUTE/PATH/meta.db   the embedded store (one SQLite file; its directory must exist)
    fdb://                            FoundationDB through the default cluster file
    fdb:///PATH/fdb.cluster           FoundationDB through that cluster file

The path after ``sqlite://`` is taken verbatim (no percent-decoding), so the URL a store reports
(``SqliteStore.url``) parses back to the same file.  Relative paths are refused: a daemon changes its
working directory to ``/``, and a URL recorded in a log or typed on another shell must mean one file.
"""

from __future__ import annotations

import os

from metadata.emulation import StoreEmulation
from metadata.store import Store, StoreError

SQLITE_PREFIX = "sqlite://"
FDB_PREFIX = "fdb://"
_USAGE_HINT = "use sqlite:///ABSOLUTE/PATH or fdb://[/CLUSTER_FILE]"
DEFAULT_DB_NAME = "meta.db"


class StoreUrlError(StoreError):
    """A store URL that names no usable store."""


def data_dir(*, create: bool = True) -> str:
    """``$XDG_DATA_HOME/fusefs`` (default ``~/.local/share/fusefs``), created if missing unless
    ``create`` is false (for help texts, which must not change anything).

    Holds the default store, the default block directories and the daemons' log files."""
    base = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    path = os.path.join(base, "fusefs")
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def default_store_url(*, create: bool = True) -> str:
    return SQLITE_PREFIX + os.path.join(data_dir(create=create), DEFAULT_DB_NAME)


def sqlite_path(url: str) -> str:
    """The database file a ``sqlite://`` URL names, checked enough for a one-line error."""
    path = url[len(SQLITE_PREFIX) :]
    if not path.startswith("/"):
        raise StoreUrlError(
            f"store URL {url!r} has a relative path: write it with three slashes and an absolute path, "
            f"as in sqlite:///{os.path.abspath(path or DEFAULT_DB_NAME).lstrip('/')}"
        )
    if path.endswith("/") or os.path.isdir(path):
        example = f"{path.rstrip('/')}/{DEFAULT_DB_NAME}"
        raise StoreUrlError(f"store URL {url!r} names a directory: name the database file, e.g. {example}")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise StoreUrlError(f"store URL {url!r}: directory {directory} does not exist")
    return path


def fdb_cluster_file(url: str) -> str | None:
    """The cluster file an ``fdb://`` URL names; ``None`` for FoundationDB's default cluster file."""
    rest = url[len(FDB_PREFIX) :]
    if not rest:
        return None
    if not rest.startswith("/"):
        raise StoreUrlError(
            f"store URL {url!r}: give a cluster file as fdb:///ABSOLUTE/PATH (coordinators are read from "
            "the cluster file, not the URL)"
        )
    if not os.path.isfile(rest):
        raise StoreUrlError(f"store URL {url!r}: cluster file {rest} does not exist")
    return rest


def check_store_url(url: str) -> None:
    """Raise ``StoreUrlError`` unless ``url`` names a store that could be opened (nothing is opened)."""
    _parse(url)


def _parse(url: str) -> tuple[str, str | None]:
    """(backend, location): ("sqlite", database path) or ("fdb", cluster file or None)."""
    if url.startswith(SQLITE_PREFIX):
        return "sqlite", sqlite_path(url)
    if url.startswith(FDB_PREFIX):
        return "fdb", fdb_cluster_file(url)
    raise StoreUrlError(f"unsupported store URL {url!r}: {_USAGE_HINT}")


def open_store(
    url: str,
    *,
    read_only: bool = False,
    exclusive: bool = True,
    shared: bool = False,
    create: bool = False,
    emulation: StoreEmulation | None = None,
) -> Store:
    """Open the store ``url`` names.

    ``read_only``, ``exclusive`` and ``shared`` concern the embedded store (one writing owner at a time,
    or several writers in shared mode; read-only handles beside either; ``create`` a missing store file,
    which only ``mkfs`` and the first mount of the default store do); FoundationDB is shared by
    design and ignores them, as it ignores ``emulation``, which exists to make the embedded store
    produce the conflicts, latency and outages FoundationDB produces anyway."""
    backend, location = _parse(url)
    if backend == "sqlite":
        from metadata.sqlite_store import NO_EMULATION, SqliteStore

        assert location is not None
        return SqliteStore(
            location,
            read_only=read_only,
            exclusive=exclusive,
            shared=shared,
            create=create,
            emulation=emulation or NO_EMULATION,
        )
    # Imported here: loading the FoundationDB client library is needless (and may fail) for users of
    # the embedded store.
    from metadata.fdb_store import FdbStore

    return FdbStore(location)
