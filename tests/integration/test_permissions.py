"""Permission semantics as an unprivileged user (``fusefs-test``) on a mount with ``-o allow_other``:
EACCES/EPERM, sticky directories, setgid inheritance, supplementary groups, setuid clearing, and what
root may do."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ._util import expect_errno, write_file

pytestmark = pytest.mark.chaos


def _mkdir(path: Path, mode: int, uid: int = 0, gid: int = 0) -> Path:
    path.mkdir()
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def _mkfile(path: Path, mode: int, uid: int = 0, gid: int = 0, data: bytes = b"data") -> Path:
    write_file(path, data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def test_eacces_for_other_users(mnt_shared: Path, unpriv_user) -> None:
    m = mnt_shared
    priv = _mkdir(m / "private", 0o700)
    _mkfile(priv / "f", 0o644)
    ro = _mkdir(m / "readonly", 0o755)
    _mkfile(ro / "f", 0o644)
    xonly = _mkdir(m / "xonly", 0o711)
    _mkfile(xonly / "known", 0o644)
    ronly = _mkdir(m / "ronly", 0o744)
    _mkfile(ronly / "f", 0o644)
    res = unpriv_user.try_ops({
        "list private": f"os.listdir({str(priv)!r})",
        "stat in private": f"os.stat({str(priv / 'f')!r})",
        "open in private": f"os.open({str(priv / 'f')!r}, os.O_RDONLY)",
        "create in private": f"os.open({str(priv / 'new')!r}, os.O_CREAT|os.O_WRONLY)",
        "chdir private": f"os.chdir({str(priv)!r})",
        "read 0644": f"open({str(ro / 'f')!r}, 'rb').read()",
        "write 0644": f"os.open({str(ro / 'f')!r}, os.O_WRONLY)",
        "trunc 0644": f"os.open({str(ro / 'f')!r}, os.O_RDONLY|os.O_TRUNC)",
        "truncate 0644": f"os.truncate({str(ro / 'f')!r}, 0)",
        "create in 0755": f"os.open({str(ro / 'new')!r}, os.O_CREAT|os.O_WRONLY)",
        "mkdir in 0755": f"os.mkdir({str(ro / 'newdir')!r})",
        "unlink in 0755": f"os.unlink({str(ro / 'f')!r})",
        "rename in 0755": f"os.rename({str(ro / 'f')!r}, {str(ro / 'g')!r})",
        "symlink in 0755": f"os.symlink('x', {str(ro / 'l')!r})",
        "list 0711": f"os.listdir({str(xonly)!r})",
        "stat in 0711": f"os.stat({str(xonly / 'known')!r})",
        "list 0744": f"os.listdir({str(ronly)!r})",
        "stat in 0744": f"os.stat({str(ronly / 'f')!r})",
        "access W 0644": f"assert not os.access({str(ro / 'f')!r}, os.W_OK)",
        "access R 0644": f"assert os.access({str(ro / 'f')!r}, os.R_OK)",
        "xattr on 0644": f"os.setxattr({str(ro / 'f')!r}, 'user.k', b'v')",
    })
    assert res == {
        "list private": "EACCES",
        "stat in private": "EACCES",
        "open in private": "EACCES",
        "create in private": "EACCES",
        "chdir private": "EACCES",
        "read 0644": "OK",
        "write 0644": "EACCES",
        "trunc 0644": "EACCES",
        "truncate 0644": "EACCES",
        "create in 0755": "EACCES",
        "mkdir in 0755": "EACCES",
        "unlink in 0755": "EACCES",
        "rename in 0755": "EACCES",
        "symlink in 0755": "EACCES",
        "list 0711": "EACCES",
        "stat in 0711": "OK",
        "list 0744": "OK",
        "stat in 0744": "EACCES",
        "access W 0644": "OK",
        "access R 0644": "OK",
        "xattr on 0644": "EACCES",
    }
    assert sorted(os.listdir(ro)) == ["f"] and (ro / "f").read_bytes() == b"data"


def test_files_created_by_user_belong_to_user(mnt_shared: Path, unpriv_user) -> None:
    w = _mkdir(mnt_shared / "w", 0o777)
    unpriv_user.py(
        "import os\n"
        f"os.chdir({str(w)!r})\n"
        "open('f', 'w').write('mine')\nos.mkdir('d')\nos.symlink('f', 'l')\nos.mkfifo('p')\n"
        "os.link('f', 'h')\nos.rename('h', 'h2')\nos.chmod('f', 0o600)\n"
        "os.setxattr('f', 'user.k', b'v')\nassert os.getxattr('f', 'user.k') == b'v'\n"
        "os.utime('f', ns=(10**18, 10**18))\n"
    )
    u = unpriv_user
    for name in ("f", "d", "l", "p"):
        st = os.lstat(w / name)
        assert (st.st_uid, st.st_gid) == (u.uid, u.gid), name
    assert stat.S_IMODE(os.stat(w / "f").st_mode) == 0o600
    assert os.stat(w / "f").st_mtime_ns == 10**18
    assert (w / "h2").read_text() == "mine"


def test_sticky_directory(mnt_shared: Path, unpriv_user) -> None:
    t = _mkdir(mnt_shared / "tmp", 0o1777)
    rootfile = _mkfile(t / "rootfile", 0o666)
    _mkdir(t / "rootdir", 0o777)
    res = unpriv_user.try_ops({
        "unlink root's": f"os.unlink({str(rootfile)!r})",
        "rename root's": f"os.rename({str(rootfile)!r}, {str(t / 'stolen')!r})",
        "rmdir root's": f"os.rmdir({str(t / 'rootdir')!r})",
        "write root's 0666": f"open({str(rootfile)!r}, 'ab').write(b'+')",
        "create own": f"open({str(t / 'mine')!r}, 'w').close()",
        "replace root's": f"os.rename({str(t / 'mine')!r}, {str(rootfile)!r})",
        "rename own": f"os.rename({str(t / 'mine')!r}, {str(t / 'mine2')!r})",
        "unlink own": f"os.unlink({str(t / 'mine2')!r})",
        "create own again": f"open({str(t / 'kept')!r}, 'w').close()",
    })
    assert res == {
        "unlink root's": "EPERM",
        "rename root's": "EPERM",
        "rmdir root's": "EPERM",
        "write root's 0666": "OK",
        "create own": "OK",
        "replace root's": "EPERM",
        "rename own": "OK",
        "unlink own": "OK",
        "create own again": "OK",
    }
    assert rootfile.read_bytes() == b"data+"
    os.unlink(t / "kept")  # root may delete anyone's file
    assert sorted(os.listdir(t)) == ["rootdir", "rootfile"]


def test_setgid_directory_inheritance(mnt_shared: Path, unpriv_user) -> None:
    u = unpriv_user
    g = _mkdir(mnt_shared / "g", 0o2775, 0, u.group)  # writable through a supplementary group
    u.py(
        "import os\n"
        f"os.chdir({str(g)!r})\n"
        "open('f', 'w').close()\nos.mkdir('sub')\nos.mkdir('sub/deeper')\nos.mkfifo('p')\n"
    )
    for name in ("f", "sub", "sub/deeper", "p"):
        st = os.lstat(g / name)
        assert st.st_uid == u.uid and st.st_gid == u.group, (name, st.st_gid)
    assert os.stat(g / "sub").st_mode & stat.S_ISGID
    assert os.stat(g / "sub" / "deeper").st_mode & stat.S_ISGID
    assert not os.stat(g / "f").st_mode & stat.S_ISGID
    # root's creations inherit too
    write_file(g / "byroot", b"")
    assert os.stat(g / "byroot").st_gid == u.group


def test_setgid_bit_dropped_for_non_members(mnt_shared: Path, unpriv_user) -> None:
    u = unpriv_user
    w = _mkdir(mnt_shared / "w", 0o755, u.uid, u.gid)
    _mkfile(w / "other", 0o755, u.uid, u.other_group)  # user owns it, but is not in its group
    _mkfile(w / "member", 0o755, u.uid, u.group)
    u.py(
        "import os\n"
        f"os.chmod({str(w / 'other')!r}, 0o2755)\n"
        f"os.chmod({str(w / 'member')!r}, 0o2755)\n"
    )
    assert stat.S_IMODE(os.stat(w / "other").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(w / "member").st_mode) == 0o2755


def test_owner_only_operations(mnt_shared: Path, unpriv_user) -> None:
    u = unpriv_user
    w = _mkdir(mnt_shared / "w", 0o777)
    rootfile = _mkfile(w / "rootfile", 0o666)
    readonly = _mkfile(w / "readonly", 0o644)
    _mkfile(w / "own", 0o644, u.uid, u.gid)
    res = u.try_ops({
        "chmod root's": f"os.chmod({str(rootfile)!r}, 0o777)",
        "chown root's to self": f"os.chown({str(rootfile)!r}, {u.uid}, -1)",
        "chown own to root": f"os.chown({str(w / 'own')!r}, 0, -1)",
        "chgrp own to member group": f"os.chown({str(w / 'own')!r}, -1, {u.group})",
        "chgrp own to other group": f"os.chown({str(w / 'own')!r}, -1, {u.other_group})",
        "utime explicit on root's": f"os.utime({str(rootfile)!r}, ns=(1, 1))",
        "utime now on writable root's": f"os.utime({str(rootfile)!r})",
        "utime now on readonly root's": f"os.utime({str(readonly)!r})",
        "mknod char": f"os.mknod({str(w / 'chr')!r}, 0o20600, os.makedev(1, 3))",
        "set trusted": f"os.setxattr({str(w / 'own')!r}, 'trusted.k', b'v')",
        "link to root's": f"os.link({str(rootfile)!r}, {str(w / 'hl')!r})",
    })
    assert res == {
        "chmod root's": "EPERM",
        "chown root's to self": "EPERM",
        "chown own to root": "EPERM",
        "chgrp own to member group": "OK",
        "chgrp own to other group": "EPERM",
        "utime explicit on root's": "EPERM",
        "utime now on writable root's": "OK",
        "utime now on readonly root's": "EACCES",
        "mknod char": "EPERM",
        "set trusted": "EPERM",
        # fs.protected_hardlinks forbids linking to files one neither owns nor can read+write; a
        # 0666 file is readable and writable, so the link is allowed
        "link to root's": "OK",
    }
    assert os.stat(w / "own").st_gid == u.group
    assert stat.S_IMODE(os.stat(rootfile).st_mode) == 0o666


def test_trusted_xattrs_invisible_to_users(mnt_shared: Path, unpriv_user) -> None:
    f = _mkfile(mnt_shared / "f", 0o666)
    os.setxattr(f, "trusted.secret", b"s")
    os.setxattr(f, "user.public", b"p")
    out = unpriv_user.py(
        "import os, errno\n"
        f"p = {str(f)!r}\n"
        "print(sorted(os.listxattr(p)))\n"
        "try:\n    os.getxattr(p, 'trusted.secret')\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
        "print(os.getxattr(p, 'user.public'))\n"
    )
    assert out.splitlines() == ["['user.public']", "ENODATA", "b'p'"]


def test_supplementary_groups(mnt_shared: Path, unpriv_user) -> None:
    u = unpriv_user
    member = _mkdir(mnt_shared / "member", 0o070, 0, u.group)
    _mkfile(member / "f", 0o040, 0, u.group, b"group readable")
    other = _mkdir(mnt_shared / "other", 0o070, 0, u.other_group)
    w = _mkdir(mnt_shared / "w", 0o777)
    _mkfile(w / "ownergroup", 0o070, u.uid, u.group)  # owner class wins over group class
    res = u.try_ops({
        "list member dir": f"os.listdir({str(member)!r})",
        "read in member dir": f"assert open({str(member / 'f')!r}, 'rb').read() == b'group readable'",
        "create in member dir": f"open({str(member / 'new')!r}, 'w').close()",
        "list other dir": f"os.listdir({str(other)!r})",
        "read own 0070 file": f"open({str(w / 'ownergroup')!r}, 'rb').read()",
    })
    assert res == {
        "list member dir": "OK",
        "read in member dir": "OK",
        "create in member dir": "OK",
        "list other dir": "EACCES",
        "read own 0070 file": "EACCES",
    }


def test_write_by_non_owner_clears_setuid(mnt_shared: Path, unpriv_user) -> None:
    f = _mkfile(mnt_shared / "suid", 0o6777)
    g = _mkfile(mnt_shared / "suid2", 0o4777)
    unpriv_user.py(
        "import os\n"
        f"fd = os.open({str(f)!r}, os.O_WRONLY)\nos.write(fd, b'x')\nos.close(fd)\n"
        f"os.truncate({str(g)!r}, 1)\n"
    )
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o777
    assert stat.S_IMODE(os.stat(g).st_mode) == 0o777


def test_root_privileges(mnt_shared: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    m = mnt_shared
    locked = _mkfile(m / "locked", 0o000, 1234, 1234, b"root reads anyway")
    assert locked.read_bytes() == b"root reads anyway"
    with open(locked, "ab") as f:
        f.write(b"!")
    d = _mkdir(m / "lockeddir", 0o000, 1234, 1234)
    write_file(d / "inside", b"")
    assert os.listdir(d) == ["inside"]
    os.chmod(locked, 0o4755)
    os.chown(locked, 0, 0)
    script = _mkfile(m / "script.sh", 0o644, data=b"#!/bin/sh\necho ran\n")
    expect_errno(errno.EACCES, subprocess.run, [str(script)])  # root needs an x bit to execute
    os.chmod(script, 0o755)
    assert subprocess.run([str(script)], capture_output=True, text=True).stdout == "ran\n"


def test_owner_chgrp_clears_setid_and_failures_leave_ctime(mnt_shared: Path, unpriv_user) -> None:
    u = unpriv_user
    w = _mkdir(mnt_shared / "w", 0o755, u.uid, u.gid)
    f = _mkfile(w / "suid", 0o6755, u.uid, u.gid)
    rootfile = _mkfile(mnt_shared / "rootfile", 0o644)
    ctime = os.stat(rootfile).st_ctime_ns
    res = u.try_ops({
        "chgrp own setid file": f"os.chown({str(f)!r}, -1, {u.group})",
        "chmod root's": f"os.chmod({str(rootfile)!r}, 0o600)",
        "utime root's": f"os.utime({str(rootfile)!r}, ns=(5, 5))",
        "xattr root's": f"os.setxattr({str(rootfile)!r}, 'user.k', b'v')",
    })
    assert res == {"chgrp own setid file": "OK", "chmod root's": "EPERM", "utime root's": "EPERM",
                   "xattr root's": "EACCES"}
    st = os.stat(f)
    assert st.st_gid == u.group and stat.S_IMODE(st.st_mode) == 0o755
    assert os.stat(rootfile).st_ctime_ns == ctime


def test_directory_moves_need_write_on_the_directory(mnt_shared: Path, unpriv_user) -> None:
    u = unpriv_user
    a = _mkdir(mnt_shared / "a", 0o777)
    b = _mkdir(mnt_shared / "b", 0o777)
    _mkdir(a / "rootdir", 0o755)  # moving it to another parent rewrites its '..'
    _mkdir(a / "rootdir2", 0o755)
    _mkfile(a / "rootfile", 0o644)
    noexec = _mkdir(mnt_shared / "noexec", 0o776)  # writable, not searchable
    res = u.try_ops({
        "move root's dir to other parent": f"os.rename({str(a / 'rootdir')!r}, {str(b / 'moved')!r})",
        "rename root's dir in place": f"os.rename({str(a / 'rootdir2')!r}, {str(a / 'renamed')!r})",
        "move root's file": f"os.rename({str(a / 'rootfile')!r}, {str(b / 'file')!r})",
        "create in unsearchable": f"open({str(noexec / 'f')!r}, 'w').close()",
        "list unsearchable": f"os.listdir({str(noexec)!r})",
    })
    assert res == {
        "move root's dir to other parent": "EACCES",
        "rename root's dir in place": "OK",
        "move root's file": "OK",
        "create in unsearchable": "EACCES",
        "list unsearchable": "OK",
    }
    assert sorted(os.listdir(a)) == ["renamed", "rootdir"] and os.listdir(b) == ["file"]


def test_access_checks(mnt_shared: Path, unpriv_user) -> None:
    m = mnt_shared
    _mkfile(m / "r", 0o644)
    _mkfile(m / "x", 0o711)
    _mkfile(m / "none", 0o000)
    _mkfile(m / "group", 0o070, 0, unpriv_user.group)
    out = unpriv_user.py(
        "import os, json\n"
        f"m = {str(m)!r}\n"
        "res = {n: [os.access(os.path.join(m, n), k) for k in (os.R_OK, os.W_OK, os.X_OK)]\n"
        "       for n in ('r', 'x', 'none', 'group')}\n"
        "print(json.dumps(res, sort_keys=True))\n"
    )
    import json

    assert json.loads(out) == {"r": [True, False, False], "x": [False, False, True],
                               "none": [False, False, False], "group": [True, True, True]}
    # root: read and write always, execute only with some x bit
    assert os.access(m / "none", os.R_OK | os.W_OK) and not os.access(m / "none", os.X_OK)
    assert os.access(m / "x", os.X_OK) and not os.access(m / "r", os.X_OK)


def test_other_users_shut_out_without_allow_other(mnt: Path, unpriv_user, fs_target: str) -> None:
    if fs_target == "local":
        pytest.skip("a property of FUSE mounts")
    os.chmod(mnt, 0o777)
    write_file(mnt / "f", b"")
    os.chmod(mnt / "f", 0o666)
    res = unpriv_user.try_ops({"stat root": f"os.stat({str(mnt)!r})",
                               "open file": f"open({str(mnt / 'f')!r}).read()"})
    assert res == {"stat root": "EACCES", "open file": "EACCES"}
