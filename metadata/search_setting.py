"""Turning on the search indexes of an existing filesystem: the setting, then the records of what exists.

The namespace transactions keep the indexes only when the settings they were opened with say so
(``FsConfig.search_index``), so a mount started before ``enable`` keeps none until it is remounted: the
command refuses while a mount is alive."""

from __future__ import annotations

from metadata import index
from metadata.keys import FsKeys
from metadata.model import FsConfig
from metadata.namespace import UnknownFilesystem
from metadata.store import Store, Transaction


def enable(store: Store, name: str) -> FsConfig:
    """Record the setting, then index every entry and xattr in bounded transactions.

    The setting comes first: a mount started meanwhile writes the records of its own changes, and
    ``index.build`` is safe beside it.  Running it again (after an interruption) finishes the build."""
    config = store.transact(lambda tr: _turn_on(tr, FsKeys(name)))
    index.build(store, FsKeys(name))
    return config


def check(store: Store, name: str) -> list[str]:
    """What is wrong with the indexes of filesystem `name` (``index.check``); empty when they are exact."""
    return index.check(store, FsKeys(name))


def _turn_on(tr: Transaction, keys: FsKeys) -> FsConfig:
    raw = tr.get(keys.config())
    if raw is None:
        raise UnknownFilesystem(f"no filesystem named '{keys.name}'")
    config = FsConfig.decode(raw)
    config.search_index = True
    tr.set(keys.config(), config.encode())
    return config
