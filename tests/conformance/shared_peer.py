"""A second process on an embedded store, driven line by line (for tests/conformance/test_sqlite_shared.py).

    python shared_peer.py PATH shared|sole

Prints ``ready`` (or ``error CLASS MESSAGE``), then answers each command on stdin with one line:
``begin``; ``get KEY`` (-> VALUE or ``none``); ``set KEY VALUE``; ``stamp PREFIX VALUE`` (a versionstamped
key); ``commit`` (-> ``ok`` or ``error CLASS MESSAGE``); ``write KEY VALUE`` (a whole transaction).
Keys and values are hex."""

from __future__ import annotations

import sys

from metadata.sqlite_store import SqliteStore
from metadata.store import StoreError, Transaction, versionstamped_key


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    try:
        store = SqliteStore(path, shared=mode == "shared")
    except StoreError as error:
        print(f"error {type(error).__name__} {error}", flush=True)
        return
    print("ready", flush=True)
    tr: Transaction | None = None
    for line in sys.stdin:
        command, *args = line.split()
        raw = [bytes.fromhex(arg) for arg in args]
        reply = "ok"
        try:
            if command == "begin":
                tr = store.begin()
            elif command == "get":
                assert tr is not None
                value = tr.get(raw[0])
                reply = "none" if value is None else value.hex()
            elif command == "set":
                assert tr is not None
                tr.set(raw[0], raw[1])
            elif command == "stamp":
                assert tr is not None
                tr.set_versionstamped_key(versionstamped_key(raw[0]), raw[1])
            elif command == "commit":
                assert tr is not None
                tr.commit()
            elif command == "write":
                store.transact(lambda t, k=raw[0], v=raw[1]: t.set(k, v))
            else:
                reply = f"error ValueError unknown command {command}"
        except StoreError as error:
            reply = f"error {type(error).__name__} {error}"
        print(reply, flush=True)
    store.close()


if __name__ == "__main__":
    main()
