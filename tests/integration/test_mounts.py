"""The mount's life cycle: read-only mounts, background daemon and ``fusefs umount``, clean unmount on
SIGTERM/SIGINT with nothing lost, and two mounts of one filesystem seeing each other's changes."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._util import expect_errno, write_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def needs_mount(fs_target: str) -> None:
    if fs_target == "local":
        pytest.skip("needs a real mount")


@pytest.mark.usefixtures("needs_mount")
def test_read_only_mount(mnt: Path, mount_fs) -> None:
    write_file(mnt / "f", b"kept")
    (mnt / "d").mkdir()
    write_file(mnt / "d" / "inner", b"")
    os.symlink("f", mnt / "l")
    os.setxattr(mnt / "f", "user.k", b"v")
    (mnt / "empty").mkdir()
    mnt = mount_fs.remount(mnt, options=("ro",))
    assert "ro" in mount_fs.entry(mnt)["options"].split(",")
    assert os.statvfs(mnt).f_flag & os.ST_RDONLY
    assert (mnt / "f").read_bytes() == b"kept" and os.readlink(mnt / "l") == "f"
    assert sorted(os.listdir(mnt)) == ["d", "empty", "f", "l"] and os.getxattr(mnt / "f", "user.k") == b"v"
    f = mnt / "f"
    for fn, args in [
        (os.open, (f, os.O_WRONLY)),
        (os.open, (mnt / "new", os.O_CREAT | os.O_WRONLY)),
        (os.mkdir, (mnt / "nd",)),
        (os.unlink, (f,)),
        (os.rmdir, (mnt / "empty",)),
        (os.rename, (f, mnt / "g")),
        (os.symlink, ("x", mnt / "s")),
        (os.link, (f, mnt / "h")),
        (os.chmod, (f, 0o600)),
        (os.chown, (f, 1, 1)),
        (os.truncate, (f, 0)),
        (os.utime, (f,)),
        (os.setxattr, (f, "user.k", b"w")),
        (os.removexattr, (f, "user.k")),
        (os.mkfifo, (mnt / "p",)),
    ]:
        expect_errno(errno.EROFS, fn, *args)
    mnt = mount_fs.remount(mnt, options=())
    write_file(mnt / "f", b"writable again")
    assert (mnt / "f").read_bytes() == b"writable again"


@pytest.mark.usefixtures("needs_mount")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_unmounts_cleanly_and_keeps_data(mnt: Path, mount_fs, sig: int) -> None:
    write_file(mnt / "small", b"closed before the signal")
    big = os.urandom(300_000)
    write_file(mnt / "big", big)
    (mnt / "dir").mkdir()
    os.rename(mnt / "small", mnt / "dir" / "small")
    fd = os.open(mnt / "open-at-signal", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"written, still open")
    os.close(fd)
    rc = mount_fs.stop_with_signal(mnt, sig)
    assert mount_fs.entry(mnt) is None, "the mount outlived its daemon"
    assert rc == 0, f"daemon exited with {rc} on {sig!r}"
    mnt = mount_fs.remount(mnt)
    assert (mnt / "dir" / "small").read_bytes() == b"closed before the signal"
    assert (mnt / "big").read_bytes() == big
    assert (mnt / "open-at-signal").read_bytes() == b"written, still open"
    assert sorted(os.listdir(mnt)) == ["big", "dir", "open-at-signal"]


def test_background_mount_and_fusefs_umount(tmp_path: Path, mount_base: Path, mount_fs) -> None:
    mount_entry = mount_fs.entry
    if mount_fs.target != "fusefs":
        pytest.skip("exercises the fusefs command line")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    store = "sqlite://" + str(tmp_path / "meta.db")
    if mount_fs.store_mode == "fdb":
        store = "fdb://" + os.path.abspath(os.environ["FDB_CLUSTER_FILE"])
    name = f"bg-{os.getpid()}-{time.monotonic_ns()}"
    (tmp_path / "blocks").mkdir()
    mp = mount_base / f"bg-{time.monotonic_ns()}"
    mp.mkdir()
    log = tmp_path / "daemon.log"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fusefs", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    res = cli("mkfs", "--store", store, "--blocks", str(tmp_path / "blocks"), name)
    assert res.returncode == 0, res.stderr
    options = ["-o", ",".join(mount_fs.store_options)] if mount_fs.store_options else []
    res = cli("mount", "--store", store, "--name", name, "--log-file", str(log), *options, str(mp))
    pid = None
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert mount_entry(mp) is not None, "mount returned before the filesystem was mounted"
        found = re.search(r"pid (\d+)", res.stdout + res.stderr)
        pid = int(found.group(1)) if found else None
        write_file(mp / "f", b"background")
        assert (mp / "f").read_bytes() == b"background"
        res = cli("umount", str(mp))
        assert res.returncode == 0, res.stdout + res.stderr
        assert mount_entry(mp) is None
        if pid is not None:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        # errors are one line and no traceback
        for args in (["mount", "--store", store, "--name", name, str(tmp_path / "missing")],
                     ["mount", "--store", store, "--name", "no-such-fs", str(mp)],
                     ["mount", "--store", "bogus://x", str(mp)]):
            res = cli(*args)
            assert res.returncode != 0, args
            assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
            assert mount_entry(mp) is None
    finally:
        if mount_entry(mp) is not None:
            subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    text = log.read_text() if log.exists() else ""
    assert "Traceback" not in text, text[-4000:]


def _second_mount(mount_fs, mnt: Path, options: tuple[str, ...]) -> tuple[Path, bool]:
    """A second mount of ``mnt``'s filesystem, and whether it is writable.  The embedded store admits
    one owner, so there the second mount is read-only (it follows the owner's change log)."""
    try:
        return mount_fs.mount_again(mnt, options), True
    except mount_fs.Refused as refusal:
        if not mnt.exists() or "in use" not in str(refusal):
            raise
    return mount_fs.mount_again(mnt, (*options, "ro")), False


def _eventually(check, timeout: float) -> float:
    t0 = time.monotonic()
    while True:
        try:
            check()
            return time.monotonic() - t0
        except (AssertionError, OSError):
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.05)


CROSS_MOUNT_BOUND = 5.0  # seconds; the daemon documents its own bound, which must be below this


@pytest.mark.usefixtures("needs_mount")
@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_two_mounts_see_each_others_changes(mount_fs, strict: bool) -> None:
    opts = ("strict",) if strict else ()
    a = mount_fs(options=opts)
    b, b_writable = _second_mount(mount_fs, a, opts)
    bound = 0.0 if strict else CROSS_MOUNT_BOUND
    # warm b's caches so that staleness, not a first lookup, is what is measured
    assert os.listdir(b) == []
    steps = []

    def step(action, check) -> None:
        action()
        steps.append(_eventually(check, bound))

    def read_b(name: str) -> bytes:
        return (b / name).read_bytes()

    step(lambda: write_file(a / "f", b"one"), lambda: _expect(read_b("f") == b"one"))
    step(lambda: write_file(a / "f", b"two"), lambda: _expect(read_b("f") == b"two"))  # same size
    step(lambda: write_file(a / "f", b"three!"), lambda: _expect(read_b("f") == b"three!"))
    step(lambda: os.mkdir(a / "d"), lambda: _expect(sorted(os.listdir(b)) == ["d", "f"]))
    step(lambda: os.rename(a / "f", a / "d" / "g"),
         lambda: _expect(os.listdir(b) == ["d"] and read_b("d/g") == b"three!"))
    step(lambda: os.chmod(a / "d" / "g", 0o600),
         lambda: _expect(os.stat(b / "d" / "g").st_mode & 0o777 == 0o600))
    step(lambda: os.setxattr(a / "d" / "g", "user.k", b"v"),
         lambda: _expect(os.getxattr(b / "d" / "g", "user.k") == b"v"))
    step(lambda: os.unlink(a / "d" / "g"), lambda: _expect(not (b / "d" / "g").exists()))
    if b_writable:  # and the other way round
        step(lambda: write_file(b / "from-b", b"b"), lambda: _expect((a / "from-b").read_bytes() == b"b"))
    print(f"cross-mount delays ({'strict' if strict else 'default'}): {[round(s, 3) for s in steps]}")


def _expect(cond: bool) -> None:
    assert cond


@pytest.mark.usefixtures("needs_mount")
def test_mount_raises_the_kernel_readahead(mount_fs) -> None:
    """FUSE's 128 KiB default readahead halves cold sequential reads; the daemon (as root) raises it to
    1 MiB once the kernel has answered INIT."""
    if mount_fs.target != "fusefs":
        pytest.skip("a fusefs daemon setting")
    mnt = mount_fs()
    device = os.stat(mnt).st_dev
    setting = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    deadline = time.monotonic() + 10
    while setting.read_text().strip() != "1024":
        assert time.monotonic() < deadline, f"{setting} is still {setting.read_text().strip()}"
        time.sleep(0.05)
