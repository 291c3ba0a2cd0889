"""Mounting at boot: the mount(8) helper with real ``mount``/``umount`` on a scratch fstab, and the
systemd unit checked by ``systemd-analyze verify``.

mount(8) finds its helper only as /sbin/mount.fuse.fusefs, so the helper test runs in a private mount
namespace (``unshare -m``) where an overlay adds it to /usr/sbin: nothing on the host changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from fusefs.mount_helper import translate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_translate_maps_mount_arguments():
    argv = ["web", "/mnt/x", "-o", "rw,_netdev,nofail,noauto,x-systemd.automount,store=fdb://,shared,debug"]
    assert translate(argv) == [
        "mount",
        "--name",
        "web",
        "--store",
        "fdb://",
        "--debug",
        "-o",
        "rw,shared",
        "/mnt/x",
    ]
    assert translate(["web", "/mnt/x", "-f", "-o", "store=fdb://"]) is None  # a fake mount does nothing
    assert translate(["fusefs#web", "/mnt/x", "-s", "-o", "bogus,log_level=debug"]) == [
        "mount", "--name", "web", "--log-level", "debug", "/mnt/x",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["web"], "expected NAME MOUNTPOINT"),
        (["web", "/mnt/x", "-o", "bogus"], "unsupported mount option 'bogus'"),
        (["web", "/mnt/x", "-o"], "-o needs a value"),
        (["web", "/mnt/x", "-q"], "unknown flag -q"),
    ],
)
def test_helper_usage_errors_are_one_line(tmp_path, argv, message):
    env = dict(os.environ, PYTHONPATH=REPO, XDG_DATA_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "fusefs.mount_helper", *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"mount.fuse.fusefs: error: {message}")


SCENARIO = """\
set -u
cd "$WORK"
mkdir -p upper ovlwork
printf '#!/bin/sh\\nexport PYTHONPATH=%s XDG_DATA_HOME=%s\\nexec %s -m fusefs.mount_helper "$@"\\n' \
    "$REPO" "$WORK/xdg" "$PYTHON" > upper/mount.fuse.fusefs
chmod 755 upper/mount.fuse.fusefs
mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$WORK/upper,workdir=$WORK/ovlwork" /usr/sbin ||
    exit 77
trap 'for m in mnt late; do umount -l "$WORK/$m" 2>/dev/null; done' EXIT
step() { echo "== $*"; }
step "mount -a"; mount -T fstab -a; echo "status $?"
findmnt -n -o FSTYPE,SOURCE "$WORK/mnt"
step "write"; echo hello > mnt/file && cat mnt/file
step "umount"; umount "$WORK/mnt"; echo "status $?"
findmnt "$WORK/mnt" >/dev/null || echo "not mounted"
step "no_netdev"; mount -T fstab -a -O no_netdev; echo "status $?"
findmnt "$WORK/mnt" >/dev/null || echo "not mounted"
step "by mountpoint"; mount -T fstab "$WORK/late"; echo "status $?"
cat late/file
step "umount late"; umount "$WORK/late"; echo "status $?"
step "mount -t"; mount -v -t fuse.fusefs -o "store=$STORE,ro" fs "$WORK/mnt"; echo "status $?"
findmnt -n -o OPTIONS "$WORK/mnt" | cut -d, -f1
umount "$WORK/mnt"
step "failing"; mount -T fstab "$WORK/broken"; echo "status $?"
"""


def test_fstab_mount_and_umount_with_the_helper(cli, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root, unshare and /dev/fuse to run mount(8) in a private mount namespace")
    store = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    assert cli("mkfs", "--store", store, "--blocks", str(tmp_path / "blocks"), "fs").returncode == 0
    for name in ("mnt", "late", "broken", "gone"):
        (tmp_path / name).mkdir()
    (tmp_path / "fstab").write_text(
        textwrap.dedent(f"""\
            # a scratch fstab: a mount needing the network, one kept from mount -a, one failing
            fs {tmp_path}/mnt fuse.fusefs store={store},_netdev,nofail,shared 0 0
            fs {tmp_path}/late fuse.fusefs store={store},noauto 0 0
            fs {tmp_path}/broken fuse.fusefs store=sqlite://{tmp_path}/missing.db,noauto 0 0
            fs {tmp_path}/gone fuse.fusefs store=sqlite://{tmp_path}/missing.db,nofail 0 0
            """)
    )
    env = dict(os.environ, WORK=str(tmp_path), REPO=REPO, PYTHON=sys.executable, STORE=store)
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", SCENARIO],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == 77:
        pytest.skip(f"no overlay mount possible here to add the helper to /usr/sbin: {done.stderr}")
    out = done.stdout
    steps = dict(part.split("\n", 1) for part in out.split("== ")[1:])
    # mount -a mounts the auto lines; the failing nofail one does not fail it (its error is reported).
    assert steps["mount -a"].splitlines()[:2] == ["status 0", "fuse.fusefs fusefs:fs"], out + done.stderr
    assert "missing.db" in done.stderr and "nofail: the failure above is not counted" in done.stderr
    assert steps["write"] == "hello\n"
    assert steps["umount"] == "status 0\nnot mounted\n"
    # _netdev lines are left out by `mount -a -O no_netdev`, as for any network filesystem.
    assert steps["no_netdev"] == "status 0\nnot mounted\n"
    assert steps["by mountpoint"] == "status 0\nhello\n"
    assert steps["umount late"] == "status 0\n"
    # -v lets fusefs say what it mounted; read-only as asked.
    assert steps["mount -t"].startswith(f"mounted 'fs' at {tmp_path}/mnt (pid ")
    assert steps["mount -t"].endswith("status 0\nro\n")
    # Without nofail, mount(8) reports the helper's failure.
    assert steps["failing"].strip() != "status 0"
    assert "fusefs: error: no store at" in done.stderr


def test_systemd_unit(cli, tmp_path):
    fdb = cli("systemd-unit", "--store", "fdb://", "--name", "web", "-o", "shared", str(tmp_path / "a b%"))
    assert fdb.returncode == 0, fdb.stderr
    lines = fdb.stdout.splitlines()
    assert "After=network-online.target foundationdb.service" in lines
    assert "Wants=network-online.target" in lines
    assert "Restart=on-failure" in lines
    start = next(line for line in lines if line.startswith("ExecStart="))
    assert start.endswith(f'--store fdb:// --name web -o shared "{tmp_path}/a b%%"')
    assert "mount --foreground --log-file -" in start

    sqlite = cli("systemd-unit", "--store", f"sqlite://{tmp_path}/meta.db", str(tmp_path))
    assert sqlite.returncode == 0, sqlite.stderr
    assert "After=network-online.target" in sqlite.stdout.splitlines()
    assert "--name default" in sqlite.stdout

    bad = cli("systemd-unit", "--store", "nosuch://x", str(tmp_path))
    assert bad.returncode == 2
    bad.one_line_error()
    assert cli("systemd-unit", "-o", "bogus", str(tmp_path)).returncode == 2

    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the unit text was not verified")
    for name, text in (("fusefs-web.service", fdb.stdout), ("fusefs-default.service", sqlite.stdout)):
        unit = tmp_path / name
        unit.write_text(text)
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
        # verify warns about bad settings on stderr without failing.
        assert [line for line in verified.stderr.splitlines() if name in line] == []
