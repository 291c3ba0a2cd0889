"""The daemon's cache of attributes and directory entries, in front of the store.

The kernel drops a directory's attributes whenever an entry in it changes, and forgets entries and
attributes when their timeout passes, then asks again: a `touch` of a new file is getattr(directory),
lookup(name) and create.  On FoundationDB each question to the store is a network round trip (~0.5 ms);
this cache answers the first two from what this mount's own transactions read and wrote.

Where its facts come from, and how long it trusts them:
- only from the store: the notes a transaction attempt takes of what it read and wrote
  (metadata/written.py), applied after that attempt committed (``Observation``);
- each fact is answered for at most ``timeout_s`` after it was learned: the timeout the kernel is
  given for what it caches (1 s on a shared store, 60 s when this daemon owns the store and every
  change passes through it), so an answer is never staler than the kernel's own cache may be;
- other mounts' changes arrive through the change log (fusefs/invalidation.py), which calls
  ``forget`` before it invalidates the kernel's copy; a transaction that was running meanwhile may have
  read the old state, so its notes are then not trusted (the ``epoch``);
- a directory created by this mount is *complete*: every name in it is known, so a lookup of any other
  name is answered "no such entry".  It stays complete while its attributes, as this mount's transactions
  find them, are the ones its last known change left (every entry change stamps the directory's mtime and
  ctime), and for ``timeout_s`` after it was last found so;
- ``-o strict`` (timeout 0) answers nothing from here.  Hints are kept in every mode where a read is a
  round trip (a shared store): the inode a name named when last seen, which lookup, unlink and rename
  read in the same round trip as the entry and verify there, saving a round trip while the name still
  names it.  Other mounts' change-log records leave hints too: a name another mount created or renamed
  costs this mount one round trip at its first lookup, not two.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from metadata.changelog import LogRecord
from metadata.model import InodeAttr
from metadata.written import Written

K = TypeVar("K")
V = TypeVar("V")

MAX_ATTRS = 20_000
MAX_ENTRIES = 20_000
MAX_COMPLETE_DIRS = 1_000
#: A complete directory with more names than this stops being tracked (memory).
MAX_NAMES_PER_DIR = 10_000
MAX_LOGGED_HINTS = 20_000
#: Change-log operations after which a record's names name no inode.
_REMOVALS = frozenset({"unlink", "rmdir"})


class _Lru(Generic[K, V]):
    """A dict that keeps its ``capacity`` most recently stored keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _token(attr: InodeAttr) -> tuple[int, int]:
    return attr.mtime_ns, attr.ctime_ns


@dataclasses.dataclass
class _Listing:
    """Every name of a complete directory, exact when the directory's attributes had ``token``."""

    names: dict[bytes, int]
    token: tuple[int, int]
    learned: float


class NamespaceCache:
    def __init__(
        self, timeout_s: float, clock: Callable[[], float] = time.monotonic, *, hints: bool = True
    ) -> None:
        self.timeout_s = timeout_s
        #: Hints save a network round trip; where a read costs microseconds (the embedded store owned by
        #: this daemon) the extra keys they read cost more than they save.
        self.hints = hints
        self._clock = clock
        self._attrs: _Lru[int, tuple[float, InodeAttr]] = _Lru(MAX_ATTRS)
        self._entries: _Lru[tuple[int, bytes], tuple[float, int | None]] = _Lru(MAX_ENTRIES)
        self._complete: _Lru[int, _Listing] = _Lru(MAX_COMPLETE_DIRS)
        #: What names other mounts' changes gave, from their change-log records: hints only.
        self._logged: _Lru[tuple[int, bytes], int] = _Lru(MAX_LOGGED_HINTS)
        #: Counts other mounts' changes: notes taken across one are not trusted.
        self.epoch = 0
        self.hits = 0
        self.misses = 0

    def _fresh(self, learned: float) -> bool:
        return self._clock() - learned < self.timeout_s

    # -- answers (hits and misses count the getattr and lookup requests answered here or not) ---------
    def attr(self, ino: int) -> InodeAttr | None:
        """A copy of the attributes of ``ino``, if known fresh (callers adjust what they answer)."""
        attr = self._attr(ino)
        self._count(attr is not None)
        return attr

    def lookup(self, parent: int, name: bytes) -> tuple[bool, InodeAttr | None]:
        """(known, attributes): whether the answer for ``name`` in ``parent`` is known fresh, and the
        attributes of the inode it names (None: no such entry)."""
        known, ino = self.entry(parent, name)
        attr = None if ino is None else self._attr(ino)
        known = known and (ino is None or attr is not None)
        self._count(known)
        return known, attr

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def _attr(self, ino: int) -> InodeAttr | None:
        found = self._attrs.get(ino)
        if found is None or not self._fresh(found[0]):
            return None
        return found[1].copy()

    def entry(self, parent: int, name: bytes) -> tuple[bool, int | None]:
        """(known, inode): whether what ``name`` in ``parent`` names is known fresh, and the inode (None:
        no such entry)."""
        listing = self._complete.get(parent)
        if listing is not None and self._fresh(listing.learned):
            return True, listing.names.get(name)
        found = self._entries.get((parent, name))
        if found is not None and self._fresh(found[0]):
            return True, found[1]
        return False, None

    def hint(self, parent: int, name: bytes) -> int | None:
        """The inode ``name`` in ``parent`` named when last seen, however long ago (to be verified)."""
        if not self.hints:
            return None
        listing = self._complete.get(parent)
        if listing is not None and name in listing.names:
            return listing.names[name]
        found = self._entries.get((parent, name))
        return self._logged.get((parent, name)) if found is None else found[1]

    # -- learning -----------------------------------------------------------------------------------
    def observe(self) -> Observation:
        return Observation(self)

    def apply(self, notes: Written, learned: float, epoch: int) -> None:
        """What one committed transaction attempt read and wrote; ``learned``: when it started."""
        if epoch != self.epoch:
            self._drop_noted(notes)
            return
        for ino, attr in notes.read_attrs.items():
            self._check_listing(ino, attr, learned)
            self._put_attr(attr, learned)
        for (parent, name), named in notes.read_entries.items():
            self._entries.put((parent, name), (learned, named))
        for ino, written in notes.attrs.items():
            if written is None:
                self._attrs.pop(ino)
                self._complete.pop(ino)
            else:
                self._put_attr(written, learned)
        for (parent, name), named in notes.entries.items():
            self._entries.put((parent, name), (learned, named))
            self._rename_in_listing(parent, name, named)
        for ino in notes.new_dirs:
            created = notes.attrs.get(ino)
            if created is not None:
                self._complete.put(ino, _Listing({}, _token(created), learned))
        for ino, written in notes.attrs.items():
            listing = self._complete.get(ino)
            if written is not None and listing is not None and ino not in notes.new_dirs:
                # Found as the last known change left it (checked above, or the listing is gone), then
                # changed by this transaction only: still exact, as of this transaction.
                listing.token, listing.learned = _token(written), learned

    def _put_attr(self, attr: InodeAttr, learned: float) -> None:
        known = self._attrs.get(attr.ino)
        # Two transactions of this mount that changed one inode may finish in either order here; the
        # later commit read the earlier's change, so its ctime (or its atime) is not older.
        if known is not None and (known[1].ctime_ns, known[1].atime_ns) > (attr.ctime_ns, attr.atime_ns):
            return
        self._attrs.put(attr.ino, (learned, attr))

    def _check_listing(self, ino: int, attr: InodeAttr, learned: float) -> None:
        listing = self._complete.get(ino)
        if listing is None:
            return
        if listing.token == _token(attr):
            listing.learned = learned
        else:
            self._complete.pop(ino)  # changed by someone else since: no longer known complete

    def _rename_in_listing(self, parent: int, name: bytes, ino: int | None) -> None:
        listing = self._complete.get(parent)
        if listing is None:
            return
        if ino is None:
            listing.names.pop(name, None)
        elif len(listing.names) < MAX_NAMES_PER_DIR:
            listing.names[name] = ino
        else:
            self._complete.pop(parent)

    def _drop_noted(self, notes: Written) -> None:
        for ino in [*notes.read_attrs, *notes.attrs]:
            self._attrs.pop(ino)
            self._complete.pop(ino)
        for parent, name in [*notes.read_entries, *notes.entries]:
            self._entries.pop((parent, name))
            self._complete.pop(parent)

    # -- forgetting ---------------------------------------------------------------------------------
    def forget(self, record: LogRecord) -> None:
        """Another mount changed what ``record`` names: its inode, and the directories and entries."""
        self.epoch += 1
        self._attrs.pop(record.ino)
        places = [(record.parent, record.name), (record.new_parent, record.new_name)]
        for parent, name in places:
            if parent is not None:
                self._attrs.pop(parent)
                self._complete.pop(parent)
                if name is not None:
                    self._entries.pop((parent, name))
                    self._logged.pop((parent, name))
        named = [(parent, name) for parent, name in places if parent is not None and name is not None]
        if self.hints and named and record.op not in _REMOVALS:
            self._logged.put(named[-1], record.ino)  # the last place names the inode (a rename's new one)

    def clear(self) -> None:
        self.epoch += 1
        self._attrs.clear()
        self._entries.clear()
        self._complete.clear()
        self._logged.clear()


class Observation:
    """Notes of one ``StoreRunner.run``: a fresh ``Written`` per attempt, applied once committed."""

    def __init__(self, cache: NamespaceCache) -> None:
        self._cache = cache
        self._epoch = cache.epoch
        self._started = cache._clock()
        self._notes: Written | None = None

    def attempt(self) -> Written:
        self._notes = Written()
        return self._notes

    def committed(self, uncertain: bool) -> None:
        """The last attempt committed; ``uncertain``: an earlier one may have too, and a retry may have
        returned its recorded result without writing (metadata/idempotency.py)."""
        if uncertain:
            self._cache.clear()
        elif self._notes is not None:
            self._cache.apply(self._notes, self._started, self._epoch)

    def failed(self, uncertain: bool) -> None:
        if uncertain:
            self._cache.clear()  # it may have committed: what it changed is unknown
