"""The trash (mkfs --trash-days: removed files and trees kept in /.trash, restored and purged) and instant
clones (fusefs clone: inline data copied, chunks shared and copied on write), through real mounts."""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SMALL, wait_for

TRASH = ("--trash-days", "3")


def _trash_names(data_mounts, mp: Path) -> list[str]:
    out = data_mounts.cli(mp, "trash", "list").stdout
    return [line.split("\t")[0] for line in out.splitlines()]


def _tree(root: Path) -> dict[str, bytes | None]:
    """Relative path → contents (None for a directory) of everything under ``root``."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return found


def test_removed_file_goes_to_the_trash_and_is_restored(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("shared",), mkfs_args=TRASH)
    trash = mp / ".trash"
    assert stat.S_IMODE(trash.stat().st_mode) == 0o700 and trash.stat().st_uid == 0
    (mp / "d").mkdir()
    big, small = os.urandom(200_000), b"small file"
    (mp / "d" / "big").write_bytes(big)
    (mp / "d" / "small").write_bytes(small)
    chunks = set(data_mounts.chunk_files(mp))
    os.unlink(mp / "d" / "big")
    (mp / "d" / "new").write_bytes(b"replacing")
    os.rename(mp / "d" / "new", mp / "d" / "small")  # rename over: the old file goes to the trash too
    assert sorted(os.listdir(mp / "d")) == ["small"]
    names = _trash_names(data_mounts, mp)
    assert [name.rsplit("-", 1)[1] for name in names] == ["big", "small"], names
    assert sorted(os.listdir(trash)) == names
    assert set(data_mounts.chunk_files(mp)) == chunks  # nothing deleted
    m = data_mounts.factory.mounts[mp]
    status = subprocess.run(
        [sys.executable, "-m", "fusefs", "status", "--store", m.store],
        env=data_mounts.factory._env(m),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"trash: 2 entries, {len(big) + len(small)} bytes" in status, status
    data_mounts.cli(mp, "trash", "restore", names[0])
    assert wait_for(lambda: (mp / "d" / "big").exists())
    assert (mp / "d" / "big").read_bytes() == big
    data_mounts.cli(mp, "trash", "restore", names[1], "/d/old-small")
    assert wait_for(lambda: (mp / "d" / "old-small").exists())
    assert (mp / "d" / "old-small").read_bytes() == small
    assert (mp / "d" / "small").read_bytes() == b"replacing"
    assert _trash_names(data_mounts, mp) == []


def test_a_removed_tree_is_restored_as_a_tree(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("shared",), mkfs_args=TRASH)
    root = mp / "project"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "deep" / "big").write_bytes(os.urandom(150_000))
    (root / "src" / "a.txt").write_bytes(b"a")
    (root / "empty").mkdir()
    os.symlink("src/a.txt", root / "link")
    before = _tree(root)
    os.system(f"rm -rf {root}")
    assert not root.exists()
    top = [name for name in _trash_names(data_mounts, mp) if name.endswith("-project")]
    assert len(top) == 1
    out = data_mounts.cli(mp, "trash", "restore", top[0]).stdout
    assert out.strip() == "restored 7 entries", out
    assert wait_for(lambda: root.exists())
    assert _tree(root) == before
    assert os.readlink(root / "link") == "src/a.txt"
    assert _trash_names(data_mounts, mp) == []


def test_restore_errors_are_one_line(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("shared",), mkfs_args=TRASH)
    (mp / "f").write_bytes(b"1")
    os.unlink(mp / "f")
    (mp / "f").write_bytes(b"2")
    (name,) = _trash_names(data_mounts, mp)
    res = data_mounts.cli(mp, "trash", "restore", name, check=False)
    assert (
        res.returncode == 1
        and res.stderr.strip() == f"fusefs: error: cannot restore {name}: the name is taken"
    )
    res = data_mounts.cli(mp, "trash", "restore", name, "/no/such/dir/f", check=False)
    assert res.returncode == 1 and res.stderr.strip().endswith("No such file or directory"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = data_mounts.cli(mp, "trash", "restore", "nothing-such", check=False)
    assert res.returncode == 1 and "no entry 'nothing-such' in the trash" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(OSError) as removing:
        os.rmdir(mp / ".trash")
    assert removing.value.errno in (errno.EBUSY, errno.ENOTEMPTY)


def test_purge_deletes_for_good(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("shared",), mkfs_args=TRASH)
    (mp / "big").write_bytes(os.urandom(200_000))
    os.unlink(mp / "big")
    assert len(data_mounts.chunk_files(mp)) == 4
    out = data_mounts.cli(mp, "trash", "purge", "--older-than", "1").stdout
    assert out.strip() == "purged 0 entries"
    assert data_mounts.cli(mp, "trash", "purge").stdout.strip() == "purged 1 entry"
    assert _trash_names(data_mounts, mp) == []
    assert wait_for(lambda: os.listdir(mp / ".trash") == [])
    assert data_mounts.chunk_files(mp) == {}


def test_the_daemon_purges_old_entries(data_mounts) -> None:
    env = {"FUSEFS_TRASH_DAY_S": "0.1", "FUSEFS_TRASH_PURGE_INTERVAL_S": "0.2"}
    mp = data_mounts.mount(**SMALL, mkfs_args=("--trash-days", "1"), env=env)
    (mp / "big").write_bytes(os.urandom(200_000))
    (mp / "dir").mkdir()
    os.unlink(mp / "big")
    os.rmdir(mp / "dir")
    assert wait_for(lambda: os.listdir(mp / ".trash") == [], timeout=30)
    assert wait_for(lambda: data_mounts.chunk_files(mp) == {}, timeout=30)


def test_no_trash_by_default(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    (mp / "big").write_bytes(os.urandom(200_000))
    os.unlink(mp / "big")
    assert not (mp / ".trash").exists()
    assert wait_for(lambda: data_mounts.chunk_files(mp) == {})


# -- clones ---------------------------------------------------------------------------------------------
def test_clone_then_modify_both_sides(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    (mp / "src" / "sub").mkdir(parents=True)
    big, small = os.urandom(300_000), os.urandom(5000)
    (mp / "src" / "sub" / "big").write_bytes(big)
    (mp / "src" / "small").write_bytes(small)
    os.setxattr(mp / "src" / "small", "user.k", b"v")
    before = _tree(mp / "src")
    chunks = set(data_mounts.chunk_files(mp))
    data_mounts.unmount(mp)
    out = data_mounts.cli(mp, "clone", "/src", "/copy").stdout
    assert out.startswith("cloned 4 inodes"), out
    data_mounts.start(mp)
    assert _tree(mp / "copy") == before
    assert os.getxattr(mp / "copy" / "small", "user.k") == b"v"
    assert set(data_mounts.chunk_files(mp)) == chunks  # no chunk copied
    # Writes to either side: a new chunk for the one touched, the other side intact.
    with open(mp / "copy" / "sub" / "big", "r+b") as f:
        f.seek(70_000)
        f.write(b"X" * 100)
    with open(mp / "src" / "sub" / "big", "ab") as f:
        f.write(b"appended")
    with open(mp / "copy" / "small", "ab") as f:
        f.write(b"more")
    expected_copy = bytearray(big)
    expected_copy[70_000:70_100] = b"X" * 100
    assert (mp / "copy" / "sub" / "big").read_bytes() == bytes(expected_copy)
    assert (mp / "src" / "sub" / "big").read_bytes() == big + b"appended"
    assert (mp / "copy" / "small").read_bytes() == small + b"more"
    assert (mp / "src" / "small").read_bytes() == small
    os.truncate(mp / "src" / "sub" / "big", 10_000)
    assert (mp / "src" / "sub" / "big").read_bytes() == big[:10_000]
    assert (mp / "copy" / "sub" / "big").read_bytes() == bytes(expected_copy)
    # Delete one side, collect garbage: the other side keeps its chunks.
    os.system(f"rm -rf {mp / 'src'}")
    data_mounts.unmount(mp)
    assert "could not" not in data_mounts.cli(mp, "gc").stdout
    data_mounts.start(mp)
    assert (mp / "copy" / "sub" / "big").read_bytes() == bytes(expected_copy)
    assert (mp / "copy" / "small").read_bytes() == small + b"more"
    os.unlink(mp / "copy" / "sub" / "big")
    assert wait_for(lambda: data_mounts.chunk_files(mp) == {})  # the last reference frees them


def test_clone_while_mounted(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("shared",))
    data = os.urandom(200_000)
    (mp / "f").write_bytes(data)
    data_mounts.cli(mp, "clone", "f", "g")
    assert wait_for(lambda: (mp / "g").exists())
    assert (mp / "g").read_bytes() == data
    # Paths inside the mount name the filesystem themselves.
    data_mounts.cli(mp, "clone", str(mp / "g"), str(mp / "h"))
    assert wait_for(lambda: (mp / "h").exists())
    assert (mp / "h").read_bytes() == data
    res = data_mounts.cli(mp, "clone", str(mp / "g"), "/elsewhere", check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == f"fusefs: error: {mp / 'g'} and /elsewhere are not in the same filesystem"
    with open(mp / "f", "r+b") as f:
        f.write(b"changed")
    assert (mp / "g").read_bytes() == data
    assert (mp / "f").read_bytes() == b"changed" + data[7:]


def test_clone_errors_are_one_line(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    (mp / "d").mkdir()
    (mp / "f").write_bytes(b"x")
    data_mounts.unmount(mp)
    for args, message in [
        (("nothing", "x"), "cannot clone nothing to x: No such file or directory"),
        (("f", "d"), "cannot clone f to d: File exists"),
        (("d", "d/inside"), "cannot clone d to d/inside: Invalid argument"),
    ]:
        res = data_mounts.cli(mp, "clone", *args, check=False)
        assert res.returncode == 1 and res.stderr.strip() == f"fusefs: error: {message}", res.stderr


def test_only_root_sees_the_trash(data_mounts, unpriv_user) -> None:
    mp = data_mounts.mount(**SMALL, options=("allow_other",), mkfs_args=TRASH)
    home = mp / "home"
    home.mkdir()
    os.chown(home, unpriv_user.uid, unpriv_user.gid)
    unpriv_user.py(f"open({str(home / 'mine')!r}, 'w').write('secret')")
    result = unpriv_user.try_ops(
        {
            "unlink": f"os.unlink({str(home / 'mine')!r})",
            "list": f"os.listdir({str(mp / '.trash')!r})",
            "rmdir": f"os.rmdir({str(mp / '.trash')!r})",
        }
    )
    assert result == {"unlink": "OK", "list": "EACCES", "rmdir": "EACCES"}, result
    (name,) = os.listdir(mp / ".trash")
    assert (mp / ".trash" / name).stat().st_uid == unpriv_user.uid
    assert (mp / ".trash" / name).read_bytes() == b"secret"


def test_trash_restore_and_clone_keep_the_search_indexes_exact(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("shared",), mkfs_args=(*TRASH, "--search-index"))
    (mp / "src" / "sub").mkdir(parents=True)
    (mp / "src" / "a.parquet").write_bytes(os.urandom(100_000))  # chunked: its chunks are shared
    (mp / "src" / "sub" / "b.csv").write_bytes(b"b")
    os.setxattr(mp / "src" / "a.parquet", "user.meta", b'{"team": "vision"}')
    data_mounts.cli(mp, "clone", "/src", "/copy")
    os.unlink(mp / "src" / "a.parquet")
    (mp / "gone").mkdir()
    os.rmdir(mp / "gone")
    names = _trash_names(data_mounts, mp)
    data_mounts.cli(mp, "trash", "restore", next(name for name in names if name.endswith("-a.parquet")))
    assert wait_for(lambda: (mp / "src" / "a.parquet").exists())
    m = data_mounts.factory.mounts[mp]
    find = [sys.executable, "-m", "fusefs", "find", "--store", m.store, "--fs", m.name]
    found = subprocess.run(
        [*find, "--json-field", 'meta.team = "vision"'], env=data_mounts.factory._env(m), capture_output=True,
        text=True, check=True,
    ).stdout.split()
    assert sorted(found) == ["/copy/a.parquet", "/src/a.parquet"]
    data_mounts.unmount(mp)
    checked = data_mounts.cli(mp, "index", "check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    data_mounts.check_consistent(mp)


#: Writes to a large and a small file through another mount and keeps them open until told to close
#: (a process of its own: a process forked by the test would close inherited copies of its descriptors,
#: and every close(2) makes FUSE flush).
_WRITER = """
import sys
big, small = open(sys.argv[1], "r+b"), open(sys.argv[2], "r+b")
big.seek(70_000)
big.write(b"N" * 5000)
big.flush()
small.write(b"new")
small.flush()
print("written", flush=True)
sys.stdin.readline()
big.close()
small.close()
"""


def test_clone_of_files_another_mount_is_writing(data_mounts) -> None:
    """Mount B holds unflushed writes when a clone runs: a large file (a chunk marked dirty in the store)
    is copied only once B closes it, as of that close; a small file (its new bytes in B's memory) is
    copied at once, as of its last close."""
    a = data_mounts.mount(**SMALL, options=("shared",))
    b = data_mounts.factory.mount_again(a, ("shared",))
    big = os.urandom(200_000)
    (a / "big").write_bytes(big)
    (a / "small").write_bytes(b"old")
    assert wait_for(lambda: (b / "big").exists() and (b / "small").exists(), timeout=30)
    expected = big[:70_000] + b"N" * 5000 + big[75_000:]
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(b / "big"), str(b / "small")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "written\n"
            big_clone = pool.submit(data_mounts.cli, a, "clone", "big", "big-copy")
            data_mounts.cli(a, "clone", "small", "small-copy")
            assert wait_for(lambda: (a / "small-copy").exists(), timeout=30)
            assert (a / "small-copy").read_bytes() == b"old"
            assert not big_clone.done() and not (a / "big-copy").exists()  # it waits for B's close
        finally:
            writer.communicate("close\n", timeout=60)
        assert writer.returncode == 0
        big_clone.result(timeout=90)
    assert wait_for(lambda: _digest(a / "big-copy") == _digest_of(expected), timeout=30)
    assert wait_for(lambda: (a / "small").read_bytes() == b"new", timeout=30)
    assert (a / "small-copy").read_bytes() == b"old"
    with open(b / "big-copy", "r+b") as f:  # writes to the copy leave the original alone
        f.write(b"C" * 10)
    assert wait_for(lambda: (a / "big-copy").read_bytes()[:10] == b"C" * 10, timeout=30)
    assert wait_for(lambda: _digest(a / "big") == _digest(b / "big") == _digest_of(expected), timeout=30)


def _digest(path: Path) -> str:
    return _digest_of(path.read_bytes()) if path.exists() else ""


def _digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
