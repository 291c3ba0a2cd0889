"""fsck on a mounted filesystem reads in pages, not one snapshot: each finding carries a re-check, run
in one transaction, that confirms it still holds before it is reported.  A finding the filesystem has
moved past since the scan (the record changed, the entry went) is not confirmed."""

from __future__ import annotations

import stat

from metadata import fsck
from metadata.model import ROOT_INODE, InodeAttr, pack


def _findings(store, config, kind):
    return [finding for finding in fsck.check(store, config).findings if finding.kind == kind]


def _set_nlink(store, keys, ino, nlink):
    def change(tr):
        attr = InodeAttr.decode(ino, tr.get(keys.attr(ino)))
        attr.nlink = nlink
        tr.set(keys.attr(ino), attr.encode())

    store.transact(change)


def test_a_finding_still_true_is_confirmed_and_one_since_changed_is_not(store, fs):
    ino = fs.make(ROOT_INODE, b"file").ino
    keys, config = fs.ns.keys, fs.ns.config
    _set_nlink(store, keys, ino, 3)
    store.transact(lambda tr: tr.set(keys.entry(ROOT_INODE, b"ghost"), pack([424242, stat.S_IFREG])))

    (links,) = _findings(store, config, fsck.LINKS)
    (dangling,) = _findings(store, config, fsck.DANGLING)
    assert store.transact(links.recheck) and store.transact(dangling.recheck)

    # What a mount would do between the scan and the re-check: the inode is written, the entry goes.
    _set_nlink(store, keys, ino, 1)
    store.transact(lambda tr: tr.clear(keys.entry(ROOT_INODE, b"ghost")))
    assert not store.transact(links.recheck)
    assert not store.transact(dangling.recheck)


def test_a_clean_filesystem_has_no_findings(store, fs):
    directory = fs.mkdir(ROOT_INODE, b"d").ino
    fs.make(directory, b"f")
    result = fsck.check(store, fs.ns.config)
    assert result.findings == [] and result.inode_count == 3
