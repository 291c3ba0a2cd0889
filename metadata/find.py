"""Find files by their metadata, answered from the indexes (metadata/index.py) in one snapshot.

A ``Query``'s predicates are combined with AND.  The xattr and JSON-field predicates each read one
index range and give a set of inodes; the name predicates read the name index (an exact name or a glob
with a literal start) or the extension index (a glob ending in a literal ``.ext``, such as
``*.parquet``); a glob with neither reads the whole name index, still without walking a directory.
``under`` keeps the paths inside one directory by walking up from each match (metadata/paths.py); for
an extension, the directories below ``under`` are listed first from the subdirectory index (up to
``SUBTREE_DIRS_MAX`` of them: no file entry is read) and the extension index is read per directory, so
the answer costs what lies in the subtree, not in the whole filesystem.

Reads are batched so that a query costs a number of store round trips set by the predicates and the
depth of the tree, not by the number of matches: the matches' names are one batch of range reads, their
directories' paths one batch per level (those listed from the subdirectory index cost none), the
directories below ``under`` one batch per level, and their extension ranges one batch.  Attributes are
read (one batch) and decoded only when asked for (``Query.attributes``): paths need none.

``find`` is one transaction function: every answer comes from one consistent snapshot.  It returns at
most ``limit`` matches and says whether more exist (a result larger than a transaction can read is
narrowed with predicates rather than paged across snapshots).
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import json
import operator
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from metadata import index
from metadata.keys import FsKeys, extension
from metadata.model import ROOT_INODE, FsConfig, FSError, InodeAttr
from metadata.paths import Paths, join
from metadata.store import Store, Transaction

#: A subtree with more directories is answered from the whole extension range, filtered by ancestry.
SUBTREE_DIRS_MAX = 10_000
_GLOB_CHARS = re.compile(rb"[*?\[\]]")
_CONDITION = re.compile(r"^\s*(?P<field>[^\s<>=!]+)\s*(?P<op><=|>=|==|=|<|>)\s*(?P<value>\S.*?)\s*$")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "==": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.")


class QueryError(ValueError):
    """A malformed query (the message says what is wrong)."""


class NotIndexed(Exception):
    """The filesystem keeps no search indexes (``FsConfig.search_index`` is off): nothing to answer from."""

    def __init__(self, fs_name: str) -> None:
        super().__init__(
            f"filesystem '{fs_name}' has no search indexes: turn them on with "
            f"'fusefs index enable --name {fs_name}' (unmounted), or make it with "
            "'fusefs mkfs --search-index'"
        )


@dataclass(frozen=True)
class JsonCondition:
    """``field op value`` on the JSON object in xattr ``xattr``."""

    xattr: bytes
    path: str
    op: str
    value: index.JsonScalar

    def holds(self, document: dict[str, Any]) -> bool:
        item: Any = document
        for part in self.path.split("."):
            if not isinstance(item, dict) or part not in item:
                return False
            item = item[part]
        return _same_type(item, self.value) and bool(_OPERATORS[self.op](item, self.value))


@dataclass
class Query:
    name: bytes | None = None
    name_glob: bytes | None = None
    under: bytes = b"/"
    #: (xattr name, exact value or None for any value)
    xattrs: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    json_fields: list[JsonCondition] = field(default_factory=list)
    limit: int = 10_000
    #: Read each match's attributes (``Match.attr``): one more batch of reads and a decode per match.
    attributes: bool = False

    def check(self) -> None:
        if not (self.name or self.name_glob or self.xattrs or self.json_fields):
            raise QueryError("give at least one of --name, --name-glob, --xattr, --json-field")
        if self.limit < 1:
            raise QueryError(f"the limit must be at least 1, not {self.limit}")
        if not self.under.startswith(b"/"):
            raise QueryError(f"--under needs a path inside the filesystem starting with '/': {self.under!r}")
        for name in (self.name, self.name_glob):
            if name is not None and (not name or b"/" in name):
                raise QueryError(f"a name cannot be empty or contain '/': {name!r}")


@dataclass
class Match:
    path: bytes
    ino: int
    #: The inode's attributes, read only when the query asks for them (``Query.attributes``).
    attr: InodeAttr | None = None


@dataclass
class Found:
    matches: list[Match]
    #: More matches exist than ``limit``.
    truncated: bool


# -- parsing ---------------------------------------------------------------------------------------------
def parse_xattr(text: bytes) -> tuple[bytes, bytes | None]:
    """``NAME`` or ``NAME=VALUE``."""
    name, equals, value = text.partition(b"=")
    if not name.startswith(_XATTR_NAMESPACES) or name in _XATTR_NAMESPACES:
        raise QueryError(f"not an xattr name (user.*, trusted.* or security.*): {name!r}")
    return name, value if equals else None


def parse_json_condition(text: str) -> JsonCondition:
    """``FIELD OP VALUE``: FIELD is ``a.b.c`` (field ``b.c`` of xattr ``user.a``) or ``XATTR:b.c``; OP
    one of = < <= > >=; VALUE a JSON scalar (strings in double quotes)."""
    found = _CONDITION.match(text)
    if found is None:
        raise QueryError(f"not a condition 'FIELD OP VALUE' (OP one of = < <= > >=): {text!r}")
    xattr, path = _field(found["field"])
    try:
        value = json.loads(found["value"])
    except ValueError:
        raise QueryError(f"not a JSON value (quote strings): {found['value']!r}") from None
    if isinstance(value, list | dict):
        raise QueryError(f"compare with a string, number, true, false or null: {found['value']!r}")
    op = found["op"]
    if value is None and op not in ("=", "=="):
        raise QueryError("null can only be compared with =")
    return JsonCondition(xattr, path, op, value)


def _field(text: str) -> tuple[bytes, str]:
    if ":" in text:
        xattr, _, path = text.partition(":")
    else:
        first, _, path = text.partition(".")
        xattr = "user." + first
    if not xattr.startswith("user.") or xattr == "user." or not path or "" in path.split("."):
        raise QueryError(f"not a field 'XATTR.FIELD' or 'user.XATTR:FIELD': {text!r}")
    return xattr.encode(), path


def _same_type(item: Any, value: Any) -> bool:
    if isinstance(value, bool) or isinstance(item, bool):
        return isinstance(item, bool) and isinstance(value, bool)
    if isinstance(value, int | float):
        return isinstance(item, int | float)
    return type(item) is type(value)


# -- answering --------------------------------------------------------------------------------------------
def search(store: Store, fs_name: str, query: Query) -> Found:
    """The Python API: the matches of ``query`` in filesystem ``fs_name``, in one transaction; raises
    ``NotIndexed`` if the filesystem keeps no search indexes (an empty answer would be a wrong one)."""
    return store.transact(functools.partial(_search, keys=FsKeys(fs_name), query=query))


def _search(tr: Transaction, keys: FsKeys, query: Query) -> Found:
    raw = tr.get(keys.config(), snapshot=True)
    if raw is not None and not FsConfig.decode(raw).search_index:
        raise NotIndexed(keys.name)
    return find(tr, keys, query)


def find(tr: Transaction, keys: FsKeys, query: Query) -> Found:
    """The matches of ``query``, sorted by path (a transaction function: snapshot reads only)."""
    query.check()
    paths = Paths(tr, keys)
    under = posixpath.normpath(query.under)
    top = paths.resolve(under)
    if not top.is_dir:
        raise FSError(errno.ENOTDIR)
    candidates = _inodes(tr, keys, query)
    if candidates is None:
        links = _named_links(tr, keys, query, paths, top.ino)
    else:
        inos = sorted(candidates)
        links = [
            (parent, name, ino)
            for ino, named in zip(inos, paths.links_of(inos), strict=True)
            for parent, name in named
            if _name_matches(query, name)
        ]
    paths.resolve_directories({parent for parent, _, _ in links})
    chosen: list[tuple[bytes, int]] = []
    if top.ino != ROOT_INODE and _name_matches(query, posixpath.basename(under)):
        # The starting directory itself, as find(1) reports it (the root has no name to match).
        if candidates is None or top.ino in candidates:
            chosen.append((under, top.ino))
    # Each directory's path, or None outside ``under``: worked out once, not once per match in it.
    places: dict[int, bytes | None] = {}
    for parent, name, ino in links:
        if parent not in places:
            places[parent] = paths.directory(parent) if paths.is_within(parent, top.ino) else None
        directory = places[parent]
        if directory is not None:
            chosen.append((join(directory, name), ino))
    chosen.sort()
    shown = chosen[: query.limit]
    matches = _with_attributes(tr, keys, shown) if query.attributes else [Match(*m) for m in shown]
    return Found(matches, len(chosen) > query.limit)


def _with_attributes(tr: Transaction, keys: FsKeys, shown: list[tuple[bytes, int]]) -> list[Match]:
    """The matches with their inodes' attributes, read in one batch (an inode gone from under its
    entry, in damaged metadata, is left out)."""
    attrs = tr.get_many([keys.attr(ino) for _, ino in shown], snapshot=True)
    return [
        Match(path, ino, InodeAttr.decode(ino, raw))
        for (path, ino), raw in zip(shown, attrs, strict=True)
        if raw is not None
    ]


def _name_matches(query: Query, name: bytes) -> bool:
    if query.name is not None and name != query.name:
        return False
    return query.name_glob is None or fnmatch.fnmatchcase(name, query.name_glob)


def _named_links(
    tr: Transaction, keys: FsKeys, query: Query, paths: Paths, top: int
) -> list[tuple[int, bytes, int]]:
    """(parent, name, ino) of the entries the name predicates match, from the name or extension index
    (those of the directories below ``top`` only, when that is cheaper)."""
    decode = keys.name_index_of
    if query.name is not None:
        ranges = [keys.names_equal(query.name)]
    else:
        assert query.name_glob is not None
        glob = query.name_glob
        start = _GLOB_CHARS.search(glob)
        prefix = glob if start is None else glob[: start.start()]
        suffix = re.split(rb"[*?\[\]]", glob)[-1]
        if prefix or b"." not in suffix:
            ranges = [keys.names_with_prefix(prefix)]
        else:
            decode = keys.extension_index_of
            ext = extension(suffix)
            directories = None if top == ROOT_INODE else _directories_below(tr, keys, paths, top)
            if directories is not None:
                return _links_in_directories(tr, keys, query, ext, directories)
            ranges = [keys.names_with_extension(ext)]
    links = []
    for rows in tr.get_ranges(ranges, snapshot=True):
        for key, value in rows:
            name, parent = decode(key)
            if _name_matches(query, name):
                links.append((parent, name, int.from_bytes(value, "little")))
    return links


def _links_in_directories(
    tr: Transaction, keys: FsKeys, query: Query, ext: bytes, directories: list[int]
) -> list[tuple[int, bytes, int]]:
    """(parent, name, ino) of the entries of ``directories`` with extension ``ext`` that the name
    predicates match.  Each range holds one directory's names, so a key's name is the rest of it; and
    each ends in ``.ext``, so a glob saying just that (``*.parquet``) is not matched name by name."""
    ranges = [keys.names_with_extension(ext, directory) for directory in directories]
    every = bool(ext) and query.name is None and query.name_glob == b"*." + ext
    links = []
    for directory, (begin, _), rows in zip(directories, ranges, tr.get_ranges(ranges, snapshot=True)):
        for key, value in rows:
            name = keys.name_after(key, begin)
            if every or _name_matches(query, name):
                links.append((directory, name, int.from_bytes(value, "little")))
    return links


def _directories_below(tr: Transaction, keys: FsKeys, paths: Paths, top: int) -> list[int] | None:
    """``top`` and every directory below it, from the subdirectory index, read a level at a time (None:
    more than ``SUBTREE_DIRS_MAX``).  ``paths`` learns their names: their paths cost no more reads."""
    found, level = [top], [top]
    while level:
        below = []
        for parent, rows in zip(level, tr.get_ranges([keys.subdirectories(d) for d in level], snapshot=True)):
            for key, value in rows:
                ino = int.from_bytes(value, "little")
                paths.learn(ino, parent, keys.subdirectory_name(key))
                below.append(ino)
        found += below
        if len(found) > SUBTREE_DIRS_MAX:
            return None
        level = below
    return found


def _inodes(tr: Transaction, keys: FsKeys, query: Query) -> set[int] | None:
    """The inodes every xattr and JSON-field predicate matches (None: there are none of those)."""
    found: set[int] | None = None
    for name, value in query.xattrs:
        found = _intersect(found, _xattr_inodes(tr, keys, name, value))
    for condition in query.json_fields:
        found = _intersect(found, _json_inodes(tr, keys, condition))
    return found


def _intersect(found: set[int] | None, more: Iterable[int]) -> set[int]:
    return set(more) if found is None else found.intersection(more)


def _xattr_inodes(tr: Transaction, keys: FsKeys, name: bytes, value: bytes | None) -> set[int]:
    if value is None:
        ranges = [keys.xattr_values(name), keys.xattr_hashes(name)]
    elif len(value) <= index.VALUE_INDEX_MAX_BYTES:
        ranges = [keys.xattr_values(name, value)]
    else:
        ranges = [keys.xattr_hashes(name, index.value_digest(value))]
    rows = (row for begin, end in ranges for row in tr.iter_range(begin, end, snapshot=True))
    inos = {keys.last_ino(key) for key, _ in rows}
    if value is not None and len(value) > index.VALUE_INDEX_MAX_BYTES:
        # A hash match is a candidate: the value itself decides.
        stored = tr.get_many([keys.xattr(ino, name) for ino in inos], snapshot=True)
        inos = {ino for ino, raw in zip(inos, stored, strict=True) if raw == value}
    return inos


def _json_inodes(tr: Transaction, keys: FsKeys, condition: JsonCondition) -> set[int]:
    """Candidates from a range of the field's records, each then checked against its stored value (a
    string's key holds only its start; a big integer's key is rounded)."""
    typed = index.typed_element(condition.value)
    if typed is None:
        return set()
    everything = keys.json_fields(condition.xattr, condition.path, typed[0])
    at = keys.json_field_at(condition.xattr, condition.path, typed)
    after = keys.json_field_at(condition.xattr, condition.path, typed) + b"\xff"
    begin, end = {
        "=": (at, after),
        "==": (at, after),
        "<": (everything[0], after),
        "<=": (everything[0], after),
        ">": (at, everything[1]),
        ">=": (at, everything[1]),
    }[condition.op]
    inos = sorted({keys.last_ino(key) for key, _ in tr.iter_range(begin, end, snapshot=True)})
    stored = tr.get_many([keys.xattr(ino, condition.xattr) for ino in inos], snapshot=True)
    found = set()
    for ino, raw in zip(inos, stored, strict=True):
        document = None if raw is None else index.parse_json_object(raw)
        if document is not None and condition.holds(document):
            found.add(ino)
    return found
