"""Ordinary tools and programs on the mount: coreutils, tar, rsync, find, du, git, sqlite3, a venv."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._util import make_sample_tree, manifest, sha256_file, write_file


def sh(*cmd: str | os.PathLike, cwd: Path | None = None, env: dict | None = None,
       timeout: float = 300) -> str:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} → rc {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    src = tmp_path / "sample"
    make_sample_tree(src)
    return src


def test_cp_a_diff_mv_rm(mnt: Path, sample: Path, tmp_path: Path) -> None:
    dst = mnt / "copy"
    sh("cp", "-a", sample, dst)
    assert manifest(dst) == manifest(sample)
    sh("diff", "-r", "--no-dereference", sample, dst)
    assert os.getxattr(dst / "a" / "f3.bin", "user.origin") == b"sample"
    # a copy within the mount, and back out to the local disk
    sh("cp", "-a", dst, mnt / "copy2")
    assert manifest(mnt / "copy2") == manifest(sample)
    sh("cp", "-a", mnt / "copy2", tmp_path / "back")
    assert manifest(tmp_path / "back") == manifest(sample)
    # mv: a rename inside the mount, a copy+delete across filesystems
    sh("mv", mnt / "copy2", mnt / "moved")
    assert not (mnt / "copy2").exists() and manifest(mnt / "moved") == manifest(sample)
    sh("mv", tmp_path / "back", mnt / "from-local")
    assert manifest(mnt / "from-local") == manifest(sample)
    sh("mv", mnt / "from-local", tmp_path / "to-local")
    assert manifest(tmp_path / "to-local") == manifest(sample)
    sh("mv", mnt / "moved" / "a" / "f1.bin", mnt / "moved" / "renamed.bin")
    assert (mnt / "moved" / "renamed.bin").stat().st_nlink == 2
    sh("rm", "-rf", mnt / "moved", mnt / "copy")
    assert os.listdir(mnt) == []


def test_rm_rf_big_tree_frees_inodes(mnt: Path, mount_fs) -> None:
    used = lambda: os.statvfs(mnt).f_files - os.statvfs(mnt).f_ffree  # noqa: E731
    before = used()
    for i in range(20):
        d = mnt / "tree" / f"d{i}" / "sub"
        d.mkdir(parents=True)
        for j in range(25):
            write_file(d / f"f{j}", b"x" * j)
        os.symlink("sub", d.parent / "link")
    assert int(sh("find", mnt / "tree", "-type", "f").count("\n")) == 500
    sh("rm", "-rf", mnt / "tree")
    assert os.listdir(mnt) == []
    if mount_fs.target == "local":  # the local disk's inode count moves with everything else on it
        return
    deadline = time.monotonic() + 5
    while used() != before:
        assert time.monotonic() < deadline, f"{used()} inodes in use after rm -rf, {before} before"
        time.sleep(0.05)


def test_tar_round_trip(mnt: Path, sample: Path, tmp_path: Path) -> None:
    local_tar = tmp_path / "sample.tar"
    sh("tar", "--xattrs", "-cf", local_tar, "-C", sample, ".")
    (mnt / "x1").mkdir()
    sh("tar", "--xattrs", "-xpf", local_tar, "-C", mnt / "x1")
    assert manifest(mnt / "x1") == manifest(sample)
    # create on the mount, extract on the mount
    sh("tar", "--xattrs", "-czf", mnt / "again.tgz", "-C", mnt / "x1", ".")
    (mnt / "x2").mkdir()
    sh("tar", "--xattrs", "-xzpf", mnt / "again.tgz", "-C", mnt / "x2")
    assert manifest(mnt / "x2") == manifest(sample)
    assert os.getxattr(mnt / "x2" / "a" / "f3.bin", "user.origin") == b"sample"
    # and back to the local disk
    (tmp_path / "x3").mkdir()
    sh("tar", "-xzpf", mnt / "again.tgz", "-C", tmp_path / "x3")
    expected = {k: v for k, v in manifest(sample).items()}
    assert manifest(tmp_path / "x3") == expected
    sums = {p: sha256_file(sample / p) for p, v in expected.items() if v[0].startswith("-")}
    assert all(sha256_file(mnt / "x2" / p) == h for p, h in sums.items())


def test_rsync_a_then_nothing_to_do(mnt: Path, sample: Path) -> None:
    sh("rsync", "-aHX", f"{sample}/", f"{mnt}/r/")
    assert manifest(mnt / "r") == manifest(sample)
    out = sh("rsync", "-aHX", "--itemize-changes", f"{sample}/", f"{mnt}/r/")
    assert out.strip() == "", f"second rsync still transferred:\n{out}"
    # a changed file is found and only that file is sent
    write_file(sample / "a" / "f2.bin", b"changed")
    out = sh("rsync", "-aHX", "--itemize-changes", f"{sample}/", f"{mnt}/r/")
    assert [line.split()[-1] for line in out.splitlines()] == ["a/f2.bin"], out
    assert manifest(mnt / "r") == manifest(sample)
    # rsync from the mount to the mount with --delete
    sh("rsync", "-aHX", "--delete", f"{mnt}/r/", f"{mnt}/r2/")
    assert manifest(mnt / "r2", dir_times=False) == manifest(sample, dir_times=False)


def test_find_du_ln_chmod_r(mnt: Path, sample: Path) -> None:
    sh("cp", "-a", sample, mnt / "t")
    t = mnt / "t"
    found = set(sh("find", ".", "-type", "f", cwd=t).splitlines())
    expected = {f"./{p}" for p, v in manifest(sample).items() if v[0].startswith("-")}
    assert found == expected
    assert set(sh("find", ".", "-type", "l", cwd=t).splitlines()) == {
        "./a/rel-link", "./a/abs-link", "./a/dangling", "./a/dir-link"}
    big = sh("find", ".", "-name", "f7.bin", "-size", "+60k", cwd=t).splitlines()
    assert sorted(big) == sorted(f"./{d}f7.bin" for d in ["", "a/", "a/b/c/", "sp ace/"])
    assert sh("find", ".", "-empty", "-type", "d", cwd=t).split() == ["./empty"]
    newest = max((p for p in t.rglob("*.bin")), key=lambda p: os.lstat(p).st_mtime_ns)
    assert sh("find", ".", "-newer", newest, "-type", "f", cwd=t) == ""
    # du: allocation must cover what is stored (st_blocks), apparent size must count every byte
    seen, total = set(), 0
    for p in t.rglob("*"):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode) and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    du_alloc = int(sh("du", "-s", "-B1", t).split()[0])
    assert du_alloc >= total, f"du says {du_alloc} bytes allocated for {total} bytes of files"
    du_apparent = int(sh("du", "-s", "-b", t).split()[0])
    assert du_apparent >= total
    # ln and ln -s
    sh("ln", t / "a" / "f5.bin", t / "hard")
    sh("ln", "-s", "a/f5.bin", t / "soft")
    assert os.stat(t / "hard").st_nlink == 2 and os.stat(t / "hard").st_ino == os.stat(t / "a/f5.bin").st_ino
    assert os.readlink(t / "soft") == "a/f5.bin" and (t / "soft").read_bytes() == (t / "hard").read_bytes()
    sh("ln", "-sfn", "a/f6.bin", t / "soft")
    assert os.readlink(t / "soft") == "a/f6.bin"
    # chmod -R
    sh("chmod", "-R", "go-rwx,u+w", t)
    for dirpath, dirnames, filenames in os.walk(t):
        for name in dirnames + filenames:
            st = os.lstat(Path(dirpath) / name)
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_mode & 0o077 == 0 and st.st_mode & 0o200, (dirpath, name)
    sh("chmod", "-R", "a+rX", t)
    assert stat.S_IMODE(os.stat(t / "a" / "b").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(t / "a" / "f2.bin").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(t / "a" / "exec.sh").st_mode) == 0o755


def test_git_workflow(mnt: Path, sample: Path) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="t@example.com",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(mnt), GIT_CONFIG_GLOBAL="/dev/null")
    repo = mnt / "repo"

    def git(*args: str, cwd: Path = repo) -> str:
        return sh("git", *args, cwd=cwd, env=env)

    git("init", "-q", "-b", "main", str(repo), cwd=mnt)
    sh("cp", "-a", f"{sample}/.", repo)
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    write_file(repo / "a" / "f2.bin", b"modified")
    os.unlink(repo / "a" / "f4.bin")
    write_file(repo / "new.txt", b"new\n")
    assert set(git("status", "--porcelain").splitlines()) == {
        " M a/f2.bin", " D a/f4.bin", "?? new.txt"}
    git("add", "-A")
    git("commit", "-q", "-m", "second")
    assert git("status", "--porcelain") == ""
    assert git("log", "--format=%s").split() == ["second", "first"]
    git("gc", "-q")
    git("fsck", "--strict")
    git("checkout", "-q", "HEAD~1")
    assert (repo / "a" / "f4.bin").exists() and not (repo / "new.txt").exists()
    git("checkout", "-q", "main")
    git("clone", "-q", str(repo), str(mnt / "clone"), cwd=mnt)  # a local clone hard-links objects
    assert git("log", "--format=%s", cwd=mnt / "clone").split() == ["second", "first"]
    assert git("status", "--porcelain", cwd=mnt / "clone") == ""
    assert manifest(mnt / "clone", times=False).keys() - {".git"} >= {"a/f2.bin", "new.txt"}


def test_sqlite3_cli_and_python(mnt: Path) -> None:
    db = mnt / "cli.db"
    sh("sqlite3", db, "create table t(id integer primary key, v text);"
       "begin; " + " ".join(f"insert into t(v) values('row {i}');" for i in range(1000)) + " commit;")
    assert sh("sqlite3", db, "select count(*), max(id) from t;").strip() == "1000|1000"
    assert sh("sqlite3", db, "pragma integrity_check;").strip() == "ok"
    for journal in ("delete", "truncate", "persist", "wal"):
        path = mnt / f"py-{journal}.db"
        con = sqlite3.connect(path)
        assert con.execute(f"pragma journal_mode={journal}").fetchone()[0] == journal
        con.execute("create table kv(k integer primary key, v blob)")
        with con:
            con.executemany("insert into kv values(?, ?)", ((i, os.urandom(200)) for i in range(2000)))
        with con:
            con.execute("update kv set v = zeroblob(300) where k % 3 = 0")
        try:
            with con:
                con.execute("delete from kv")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert con.execute("select count(*) from kv").fetchone()[0] == 2000
        # a second connection sees committed data (WAL needs shared mmap of the -shm file)
        other = sqlite3.connect(path)
        assert other.execute("select count(*) from kv where length(v) = 300").fetchone()[0] == 667
        other.close()
        assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
        con.close()
        out = sh("sqlite3", path, "select count(*) from kv; pragma integrity_check;")
        assert out.split() == ["2000", "ok"]


def _hello_wheel(where: Path) -> Path:
    """A tiny pure-Python wheel with a console script, built by hand (pip installs it offline)."""
    import base64
    import zipfile

    dist = "hello_fusefs-1.0.dist-info"
    files = {
        "hello_fusefs/__init__.py": b"def main():\n    print('hello from the mount')\n",
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: hello-fusefs\nVersion: 1.0\n",
        f"{dist}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: fusefs-tests\nRoot-Is-Purelib: true\n"
                          b"Tag: py3-none-any\n"),
        f"{dist}/entry_points.txt": b"[console_scripts]\nhello-fusefs = hello_fusefs:main\n",
    }
    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = [f"{name},sha256={digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join(record + [f"{dist}/RECORD,,"]) + "\n").encode()
    whl = where / "hello_fusefs-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return whl


@pytest.mark.slow  # a minute or more: pip writes and compiles a thousand files
def test_python_venv_on_mount(mnt: Path, tmp_path: Path) -> None:
    """A venv with pip created on the mount; pip installs a wheel into it; its python and the
    installed console script run from the mount."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    venv = mnt / "venv"
    sh(sys.executable, "-m", "venv", venv, env=env)
    py = venv / "bin" / "python"
    out = sh(py, "-c", "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix != sys.prefix]))")
    assert out.strip() == f'["{venv}", true]'
    whl = _hello_wheel(tmp_path)
    sh(py, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", whl, env=env)
    assert sh(venv / "bin" / "hello-fusefs", env=env).strip() == "hello from the mount"
    site = Path(sh(py, "-c", "import hello_fusefs, os; print(os.path.dirname(hello_fusefs.__file__))",
                   env=env).strip())
    assert site.is_relative_to(venv)
    assert list(site.glob("__pycache__/*.pyc")), "pip wrote no bytecode on the mount"
    assert "hello-fusefs" in sh(py, "-m", "pip", "list", "--disable-pip-version-check", env=env)
    sh(py, "-m", "pip", "uninstall", "-q", "-y", "hello-fusefs", env=env)
    assert not site.exists()
    sh(py, "-m", "compileall", "-q", venv / "lib", env=env)
    # an executable copied onto the mount runs (exec maps the file from the mount)
    sh("cp", "/bin/true", mnt / "true")
    sh(mnt / "true")


def test_large_file_sha256(mnt: Path, mount_fs) -> None:
    """One file well past the inline limit: 10 MiB of random data, written in odd-sized pieces,
    read back after a remount."""
    data = os.urandom(10 * 1024 * 1024 + 12345)
    want = hashlib.sha256(data).hexdigest()
    f = mnt / "big.bin"
    with open(f, "wb") as out:
        pos = 0
        step = 1
        while pos < len(data):
            n = min(len(data) - pos, 131072 * step + 7)
            out.write(data[pos:pos + n])
            pos += n
            step = step % 9 + 1
    assert os.stat(f).st_size == len(data)
    assert sha256_file(f) == want
    mnt = mount_fs.remount(mnt)
    f = mnt / "big.bin"
    assert os.stat(f).st_size == len(data)
    assert sha256_file(f) == want
    sh("cp", f, mnt / "copy.bin")
    assert sha256_file(mnt / "copy.bin") == want
