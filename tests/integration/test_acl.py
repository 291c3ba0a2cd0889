"""POSIX ACLs through the kernel (FUSE_POSIX_ACL): setfacl/getfacl, the mode kept in step, default ACL
inheritance, enforcement for an unprivileged user exactly as on ext4 (``FUSEFS_TEST_LOCAL=1``), and
round trips through ``setfacl -R``, ``cp -a`` and ``rsync -A``."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ._util import expect_errno, write_file

pytestmark = pytest.mark.chaos


@pytest.fixture
def mnt(mount_fs) -> Path:
    return mount_fs(options=("acl",))


@pytest.fixture
def mnt_shared(mount_fs) -> Path:
    return mount_fs(options=("acl", "allow_other"))


def _run(*cmd: str, cwd: Path | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert res.returncode == 0, f"{cmd}: rc {res.returncode}\n{res.stderr}"
    return res.stdout


def _acl(path: Path, *flags: str) -> list[str]:
    """getfacl's entries for ``path`` (the access ACL unless ``-d`` asks for the default one)."""
    out = _run("getfacl", "--omit-header", "--numeric", *(flags or ("--access",)), str(path))
    return [line for line in out.splitlines() if line]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_setfacl_getfacl_and_the_mode(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"x", 0o640)
    os.chmod(f, 0o640)
    assert _acl(f) == ["user::rw-", "group::r--", "other::---"]
    _run("setfacl", "-m", "u:1234:rwx,g:4321:r", str(f))
    assert _acl(f) == [
        "user::rw-",
        "user:1234:rwx",
        "group::r--",
        "group:4321:r--",
        "mask::rwx",
        "other::---",
    ]
    assert _mode(f) == 0o670  # the group bits show the mask
    assert "system.posix_acl_access" in os.listxattr(f)
    os.chmod(f, 0o604)  # chmod rewrites the mask entry, not the owning group's
    assert _acl(f, "--access", "--no-effective") == [
        "user::rw-",
        "user:1234:rwx",
        "group::r--",
        "group:4321:r--",
        "mask::---",
        "other::r--",
    ]
    _run("setfacl", "-m", "o::rw", str(f))
    assert _mode(f) == 0o676  # setfacl recalculates the mask
    _run("setfacl", "-b", str(f))  # back to a minimal ACL: no xattr, the mode says everything
    assert _acl(f) == ["user::rw-", "group::r--", "other::rw-"]
    assert "system.posix_acl_access" not in os.listxattr(f)
    _run("setfacl", "-m", "g::rwx", str(f))  # a minimal ACL only sets the mode
    assert _mode(f) == 0o676 and "system.posix_acl_access" not in os.listxattr(f)


def test_chmod_without_mask_sets_the_owning_group(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"")
    _run("setfacl", "-m", "u:1234:r", str(f))
    os.chmod(f, 0o750)
    assert _acl(f, "--access", "--no-effective") == [
        "user::rwx",
        "user:1234:r--",
        "group::r--",
        "mask::r-x",
        "other::---",
    ]


def test_default_acl_is_inherited(mnt: Path) -> None:
    os.umask(0)  # the umask is the next test's subject (the fixture restores it)
    d = mnt / "d"
    d.mkdir(0o755)
    _run("setfacl", "-d", "-m", "u:1234:rwx,g::rwx,o::r", str(d))
    assert _acl(d, "-d") == ["user::rwx", "user:1234:rwx", "group::rwx", "mask::rwx", "other::r--"]
    sub = d / "sub"
    sub.mkdir(0o777)
    assert _acl(sub, "-d") == _acl(d, "-d")
    assert _acl(sub) == ["user::rwx", "user:1234:rwx", "group::rwx", "mask::rwx", "other::r--"]
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o640)
    os.close(fd)
    # The mode asked for narrows the inherited ACL (the mask takes the group bits).
    assert _acl(d / "f", "--access", "--no-effective") == [
        "user::rw-",
        "user:1234:rwx",
        "group::rwx",
        "mask::r--",
        "other::---",
    ]
    assert _mode(d / "f") == 0o640
    assert _acl(d / "f", "-d") == []  # files take no default ACL
    os.symlink("f", d / "link")
    assert stat.S_IMODE(os.lstat(d / "link").st_mode) == 0o777
    expect_errno(
        errno.EACCES,
        os.setxattr,
        d / "f",
        "system.posix_acl_default",
        os.getxattr(d, "system.posix_acl_default"),
    )
    _run("setfacl", "-k", str(d))
    assert _acl(d, "-d") == []
    (d / "g").touch()
    assert _mode(d / "g") == 0o666 and "system.posix_acl_access" not in os.listxattr(d / "g")


def test_umask_under_a_default_acl(mnt: Path, fs_target: str) -> None:
    """POSIX ignores the umask under a default ACL (ext4 does); FUSE applies it in the kernel before the
    request reaches fusefs, since pyfuse3 does not negotiate FUSE_DONT_MASK: the mode is narrowed by both."""
    d = mnt / "d"
    d.mkdir()
    _run("setfacl", "-d", "-m", "g::rwx,o::rwx", str(d))
    old = os.umask(0o077)
    try:
        (d / "f").touch()
        (mnt / "plain").touch()
    finally:
        os.umask(old)
    assert _mode(d / "f") == (0o666 if fs_target == "local" else 0o600)
    assert _mode(mnt / "plain") == 0o600


def test_acl_grants_and_denials_for_a_user(mnt_shared: Path, unpriv_user) -> None:
    m = mnt_shared
    os.chmod(m, 0o755)
    d = m / "d"
    d.mkdir(0o700)
    write_file(d / "f", b"secret", 0o600)
    ops = {
        "list": "os.listdir('d')",
        "read": "open('d/f').read()",
        "write": "open('d/f', 'a').write('x')",
        "create": "open('d/new', 'w').close()",
    }
    assert unpriv_user.try_ops(ops, cwd=m) == dict.fromkeys(ops, "EACCES")
    _run("setfacl", "-m", f"u:{unpriv_user.uid}:rx", str(d))
    _run("setfacl", "-m", f"g:{unpriv_user.group}:r", str(d / "f"))
    assert unpriv_user.try_ops(ops, cwd=m) == {
        "list": "OK",
        "read": "OK",
        "write": "EACCES",
        "create": "EACCES",
    }
    _run("setfacl", "-m", f"u:{unpriv_user.uid}:rwx", str(d))
    _run("setfacl", "-m", f"u:{unpriv_user.uid}:rw", str(d / "f"))
    assert unpriv_user.try_ops(ops, cwd=m) == dict.fromkeys(ops, "OK")
    os.chmod(d / "f", 0o640)  # the mask (group bits) now caps the named user at r
    _run("setfacl", "-n", "-m", f"g:{unpriv_user.other_group}:rw", str(d / "f"))
    result = unpriv_user.try_ops({"read": ops["read"], "write": ops["write"]}, cwd=m)
    assert result == {"read": "OK", "write": "EACCES"}
    # Only the owner may change an ACL.
    denied = unpriv_user.run(["setfacl", "-m", "o::rwx", str(d / "f")])
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr


def test_setfacl_recursive_and_copies_keep_acls(mnt: Path, tmp_path: Path) -> None:
    src = mnt / "src"
    (src / "a" / "b").mkdir(parents=True)
    write_file(src / "a" / "f", b"data")
    write_file(src / "a" / "b" / "g", b"more")
    _run("setfacl", "-R", "-m", "u:1234:rX,d:u:1234:rwx", str(src))
    dumped = _run("getfacl", "-R", "--numeric", "src", cwd=mnt)
    assert dumped.count("user:1234:r-x") == 3 and dumped.count("user:1234:r--") == 2
    assert dumped.count("default:user:1234:rwx") == 3
    _run("cp", "-a", str(src), str(mnt / "cp"))
    assert _run("getfacl", "-R", "--numeric", "cp", cwd=mnt) == dumped.replace("# file: src", "# file: cp")
    _run("rsync", "-aAX", f"{src}/", f"{mnt / 'rsync'}/")
    assert _run("getfacl", "-R", "--numeric", "rsync", cwd=mnt) == dumped.replace(
        "# file: src", "# file: rsync"
    )
    # and out of the mount and back, through another filesystem
    outside = tmp_path / "outside"
    _run("rsync", "-aAX", f"{src}/", f"{outside}/")
    _run("setfacl", "-R", "-b", str(src))
    assert "user:1234" not in _run("getfacl", "-R", "--numeric", "src", cwd=mnt)
    _run("rsync", "-aAX", f"{outside}/", f"{src}/")
    assert _run("getfacl", "-R", "--numeric", "src", cwd=mnt) == dumped


def test_without_the_acl_option_acls_are_refused(mount_fs, fs_target: str) -> None:
    if fs_target != "fusefs":
        pytest.skip("the acl mount option is fusefs's")
    m = mount_fs(options=("acl",))
    d = m / "d"
    d.mkdir()
    _run("setfacl", "-m", "u:1234:rwx,d:u:1234:rwx", str(d))
    m = mount_fs.remount(m, options=())
    d = m / "d"
    # Stored ACLs are hidden and new ones refused: an ACL the kernel would not enforce would mislead.
    assert os.listxattr(d) == []
    expect_errno(errno.EOPNOTSUPP, os.getxattr, d, "system.posix_acl_access")
    expect_errno(errno.EOPNOTSUPP, os.setxattr, d, "system.posix_acl_access", b"\2\0\0\0")
    expect_errno(errno.EOPNOTSUPP, os.removexattr, d, "system.posix_acl_default")
    m = mount_fs.remount(m, options=("acl",))
    assert "user:1234:rwx" in _run("getfacl", "--numeric", str(m / "d"))


def test_an_acl_changed_on_one_mount_is_enforced_on_another(mount_fs, unpriv_user) -> None:
    """The change log invalidates the other mount's cached ACL (shared store)."""
    if mount_fs.target != "fusefs":
        pytest.skip("two read-write mounts of one filesystem are fusefs' (on a shared store)")
    options = ("acl", "allow_other", *(("shared",) if mount_fs.store_mode == "sole" else ()))
    a = mount_fs(options=options)
    b = mount_fs.mount_again(a, options)
    os.chmod(a, 0o755)
    (a / "d").mkdir(0o700)
    listing = {"list": "os.listdir('d')"}
    assert unpriv_user.try_ops(listing, cwd=b) == {"list": "EACCES"}
    _run("setfacl", "-m", f"u:{unpriv_user.uid}:rx", str(a / "d"))
    _eventually(lambda: unpriv_user.try_ops(listing, cwd=b) == {"list": "OK"})
    _run("setfacl", "-x", f"u:{unpriv_user.uid}", str(a / "d"))
    _eventually(lambda: unpriv_user.try_ops(listing, cwd=b) == {"list": "EACCES"})


def _eventually(check, timeout: float = 60.0) -> None:
    """Wait for ``check()`` to be true, with a deadline generous for a loaded machine."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {timeout} s"
        time.sleep(0.1)
