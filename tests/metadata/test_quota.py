"""Directory quotas in the namespace model: usage counted on create, write (size) and delete, EDQUOT
with nothing changed, EXDEV for renames and links between quota directories, set/unset/check
(metadata/quota.py)."""

from __future__ import annotations

import errno
import stat

import pytest
from conftest import REG, ROOT

from metadata import quota
from metadata.model import ROOT_INODE, SetAttrRequest


def _quota(fs, ino):
    (found,) = fs.run(lambda tr: quota.read_quotas(tr, fs.keys, [ino]))
    return found.used_bytes, found.used_inodes


def _set(fs, ino, max_bytes=0, max_inodes=0):
    fs.run(lambda tr: quota.set_quota(tr, fs.ns, ino, max_bytes, max_inodes))


def _grow(fs, ino, size):
    return fs.setattr(ino, SetAttrRequest(size=size), ROOT)


def test_usage_follows_creates_sizes_and_deletes(fs):
    made = fs.tree("q/", "q/old", "q/sub/")
    _grow(fs, made["q/old"], 100)
    _set(fs, made["q"])
    assert _quota(fs, made["q"]) == (100, 2)  # what was there already is counted
    f = fs.make(made["q/sub"], b"f").ino
    _grow(fs, f, 50)
    assert _quota(fs, made["q"]) == (150, 3)
    fs.unlink(made["q/sub"], b"f", ROOT, still_open=lambda ino: False)
    assert _quota(fs, made["q"]) == (100, 2)
    outside = fs.make(ROOT_INODE, b"outside").ino
    _grow(fs, outside, 10**6)
    assert _quota(fs, made["q"]) == (100, 2)


def test_limits_refuse_and_change_nothing(fs):
    q = fs.mkdir(ROOT_INODE, b"q").ino
    _set(fs, q, max_bytes=100, max_inodes=2)
    a = fs.make(q, b"a").ino
    fs.mkdir(q, b"d")
    fs.fails(errno.EDQUOT, "create", q, b"c", fs.new_ino(), REG, ROOT)
    _grow(fs, a, 100)
    fs.fails(errno.EDQUOT, "setattr", a, SetAttrRequest(size=101), ROOT)
    _grow(fs, a, 20)  # shrinking is always allowed
    assert _quota(fs, q) == (20, 2)


def test_nested_quotas_each_count(fs):
    outer = fs.mkdir(ROOT_INODE, b"outer").ino
    _set(fs, outer, max_inodes=3)
    inner = fs.mkdir(outer, b"inner").ino
    _set(fs, inner, max_bytes=10)
    f = fs.make(inner, b"f").ino
    assert _quota(fs, outer) == (0, 2) and _quota(fs, inner) == (0, 1)
    fs.fails(errno.EDQUOT, "setattr", f, SetAttrRequest(size=11), ROOT)
    fs.make(inner, b"g")
    fs.fails(errno.EDQUOT, "create", inner, b"h", fs.new_ino(), REG, ROOT)  # the outer limit


def test_renames_and_links_across_quotas_are_exdev(fs):
    made = fs.tree("a/", "a/f", "a/d/", "b/", "free/")
    _set(fs, made["a"])
    _set(fs, made["b"])
    for target in (made["b"], made["free"]):
        fs.fails(errno.EXDEV, "rename", made["a"], b"f", target, b"f", ROOT)
        fs.fails(errno.EXDEV, "link", made["a/f"], target, b"l", ROOT)
    fs.rename(made["a"], b"f", made["a/d"], b"f", ROOT)  # inside one quota: fine
    fs.rename(ROOT_INODE, b"a", made["free"], b"a", ROOT)  # a quota directory moves with its usage
    assert _quota(fs, made["a"]) == (0, 2)


def test_unset_check_and_list(fs):
    made = fs.tree("q/", "q/f")
    _set(fs, made["q"], max_bytes=5)
    fs.raw_set(fs.keys.quota_usage(made["q"], quota.INODES, 3), (7).to_bytes(8, "little"))  # a drift
    assert _quota(fs, made["q"]) == (0, 8)
    assert fs.run(lambda tr: quota.check_quotas(tr, fs.ns)) == 1
    assert _quota(fs, made["q"]) == (0, 1)
    assert fs.run(lambda tr: quota.check_quotas(tr, fs.ns)) == 0
    assert [(q.ino, q.max_bytes) for q in fs.run(lambda tr: quota.list_quotas(tr, fs.keys))] == [
        (made["q"], 5)
    ]
    fs.run(lambda tr: quota.unset_quota(tr, fs.ns, made["q"]))
    assert fs.run(lambda tr: quota.list_quotas(tr, fs.keys)) == []
    assert fs.run(lambda tr: tr.get(fs.keys.quota_charges(made["q/f"]))) is None
    assert not fs.getattr(made["q/f"]).quota_charged
    fs.rename(made["q"], b"f", ROOT_INODE, b"f", ROOT)  # no quota any more: no EXDEV
    with pytest.raises(Exception) as caught:
        fs.run(lambda tr: quota.unset_quota(tr, fs.ns, made["q"]))
    assert getattr(caught.value, "errno", None) == errno.ENODATA


def test_bad_quota_requests(fs):
    f = fs.make(ROOT_INODE, b"f").ino
    d = fs.mkdir(ROOT_INODE, b"d").ino
    with pytest.raises(Exception) as caught:
        _set(fs, f, 1)
    assert getattr(caught.value, "errno", None) == errno.ENOTDIR
    with pytest.raises(Exception) as caught:
        _set(fs, d, -1)
    assert getattr(caught.value, "errno", None) == errno.EINVAL


def test_removing_a_quota_directory_removes_its_quota(fs):
    q = fs.mkdir(ROOT_INODE, b"q").ino
    _set(fs, q, max_inodes=1)
    fs.rmdir(ROOT_INODE, b"q", ROOT)
    fs.reclaim(q)
    assert fs.run(lambda tr: quota.list_quotas(tr, fs.keys)) == []
    assert stat.S_ISDIR(fs.make(ROOT_INODE, b"q2", stat.S_IFDIR | 0o755).mode)


def test_set_quota_needs_an_existing_directory(fs):
    with pytest.raises(Exception) as caught:
        _set(fs, 999_999)
    assert getattr(caught.value, "errno", None) == errno.ENOENT


def test_charged_inodes_are_marked_and_room_is_what_the_quota_has_left(fs):
    made = fs.tree("q/", "q/old", "free")
    _set(fs, made["q"], max_bytes=100)
    new = fs.make(made["q"], b"new").ino
    assert fs.getattr(made["q/old"]).quota_charged and fs.getattr(new).quota_charged
    assert not fs.getattr(made["q"]).quota_charged and not fs.getattr(made["free"]).quota_charged
    _grow(fs, new, 30)
    assert fs.run(lambda tr: quota.room(tr, fs.keys, new)) == 70
    assert fs.run(lambda tr: quota.room(tr, fs.keys, made["free"])) is None
    _set(fs, made["q"], max_bytes=10)  # lowered below the usage: no room, never negative
    assert fs.run(lambda tr: quota.room(tr, fs.keys, new)) == 0
    fs.run(lambda tr: quota.unset_quota(tr, fs.ns, made["q"]))
    assert not fs.getattr(new).quota_charged
