"""Shared pytest fixtures: real fusefs mounts, retry chaos, and an unprivileged user.

Targets (environment):

* default: ``fusefs mkfs`` (its ``main``, in the test's process: a new interpreter would take about a
  second to load it, for every mount) + ``python -m fusefs mount --foreground`` on the embedded store
  (``sqlite:///<tmp>/meta.db``), or on FoundationDB when ``FUSEFS_TEST_STORE=fdb`` and
  ``FDB_CLUSTER_FILE`` are set (one unique filesystem NAME per mount).
* ``FUSEFS_TEST_LOCAL=1``: a plain directory on the local disk instead of a mount.  This validates the
  tests themselves against the kernel's own filesystems (ext4/tmpfs are the reference for errno values).
* ``FUSEFS_TEST_BINDFS=1``: bindfs over a local directory, a C passthrough FUSE filesystem; tells apart
  what FUSE itself does from what fusefs does.
* ``FUSEFS_TEST_DATA_TIER=1``: every filesystem is made with an object data tier (``mkfs --data``, a new
  bucket of a SeaweedFS the session starts, tests/seaweedfs_local.py), so large files go through uploads,
  the object cache and the staging budget.

Retry chaos: tests marked ``@pytest.mark.chaos`` run twice, with ``FUSEFS_CHAOS_CONFLICT_RATE`` unset and
set to ``CHAOS_RATE`` in the daemon's environment (the embedded store then fails that fraction of commits
with a conflict, so every transaction function is retried).  ``FUSEFS_TEST_CHAOS=<rate>`` turns it on for
every mount.

The mount fixtures refuse to let a test run silently on the local disk: each mount is checked to be a
``fuse.fusefs`` mount with its own device number, and the daemon's log must hold no traceback and no
ERROR record the test did not declare with ``mount_fs.expect_errors(regex)``.
"""

from __future__ import annotations

import contextlib
import grp
import io
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from seaweedfs_local import SeaweedFS, running_seaweedfs

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CHAOS_RATE = 0.3
MOUNT_TIMEOUT = 20.0
UNMOUNT_TRIES = 20
FSTYPE = "fuse.fusefs"

#: A record the daemon logged at ERROR or CRITICAL (its LOG_FORMAT: time, pid, level, logger, message).
ERROR_RECORD = re.compile(r"^\S+ \S+ \d+ (?:ERROR|CRITICAL) .*$", re.MULTILINE)
#: ERROR records that say nothing about fusefs: pyfuse3 logs one when the kernel no longer wants the
#: answer to a request it already handled in full (seen for release under load: the handler ran, only
#: the reply found no taker).
BENIGN_ERRORS = [
    re.compile(r"ERROR pyfuse3: fuse_\w+\(\): fuse_reply_\S* failed with No such file or directory")
]

TEST_USER = "fusefs-test"
TEST_GROUP = "fusefs-test-grp"  # a supplementary group of TEST_USER
OTHER_GROUP = "fusefs-test-other"  # a group TEST_USER is not in
# The unprivileged user cannot reach root's pyenv under /root (0700): use the system interpreter.
USER_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PYTHON


def _target() -> str:
    if os.environ.get("FUSEFS_TEST_LOCAL") == "1":
        return "local"
    if os.environ.get("FUSEFS_TEST_BINDFS") == "1":
        return "bindfs"
    return "fusefs"


TARGET = _target()


def _use_fdb() -> bool:
    return os.environ.get("FUSEFS_TEST_STORE") == "fdb" and bool(os.environ.get("FDB_CLUSTER_FILE"))


def store_mode() -> str:
    """Which store the mounts use: ``fdb``; ``shared``, the embedded store in shared mode
    (``FUSEFS_TEST_STORE=shared``: every mount with ``-o shared``, so the daemon takes FoundationDB's
    paths: transactions in worker threads, several read-write mounts, short kernel timeouts, change-log
    invalidation, session-based recovery); or ``sole``, the embedded store owned by one daemon."""
    if _use_fdb():
        return "fdb"
    return "shared" if os.environ.get("FUSEFS_TEST_STORE") == "shared" else "sole"


def data_tier_on() -> bool:
    return os.environ.get("FUSEFS_TEST_DATA_TIER") == "1" and TARGET == "fusefs"


def store_mount_options() -> tuple[str, ...]:
    """Mount options every fusefs mount of this run gets for its store mode."""
    return ("shared",) if store_mode() == "shared" else ()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes a minute or more (CPython's own test suites, a venv with pip on the mount)")
    config.addinivalue_line("markers", "chaos: run twice, with the embedded store's retry chaos off and on")


def pytest_report_header(config: pytest.Config) -> str:
    tier = ", data tier on SeaweedFS" if data_tier_on() else ""
    return (
        f"fusefs integration target: {TARGET} (store {store_mode()}{tier}, chaos rate for chaos runs "
        f"{CHAOS_RATE})"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("chaos") and "chaos_rate" in metafunc.fixturenames:
        metafunc.parametrize("chaos_rate", [0.0, CHAOS_RATE], ids=["chaos-off", "chaos-on"], indirect=True)


@pytest.fixture
def chaos_rate(request: pytest.FixtureRequest) -> float:
    """Retry-chaos rate for the mounts of this test (0.0: off)."""
    rate = getattr(request, "param", None)
    if rate is None:
        rate = float(os.environ.get("FUSEFS_TEST_CHAOS", "0") or 0)
    if rate and (TARGET != "fusefs" or _use_fdb()):
        pytest.skip("retry chaos exists only in fusefs' embedded store")
    return rate


# --------------------------------------------------------------------------------------------------
# mountinfo


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_entry(path: Path | str) -> dict[str, str] | None:
    """The /proc/self/mountinfo entry mounted exactly at ``path`` (the last one), or None."""
    wanted = os.path.abspath(str(path))
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) >= 6 and _unescape_mountinfo(fields[4]) == wanted:
                found = {
                    "mountpoint": wanted,
                    "options": fields[5],
                    "fstype": rfields[0] if rfields else "",
                    "source": rfields[1] if len(rfields) > 1 else "",
                    "super_options": rfields[2] if len(rfields) > 2 else "",
                }
    return found


def _proc_mounts_type(path: Path) -> str | None:
    wanted = os.path.abspath(str(path))
    fstype = None
    with open("/proc/mounts", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and _unescape_mountinfo(parts[1]) == wanted:
                fstype = parts[2]
    return fstype


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return text[-limit:]


# --------------------------------------------------------------------------------------------------
# mounts


@pytest.fixture(scope="session")
def mount_base() -> Iterator[Path]:
    """A world-traversable directory for mountpoints (pytest's tmp_path is 0700 root's, so the
    unprivileged user could not reach a mount made there)."""
    base = Path(tempfile.mkdtemp(prefix="fusefs-it-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    for entry in base.iterdir():
        if mount_entry(entry) is None:
            # Never rmtree a live mount; local-target directories are plain trees.
            shutil.rmtree(entry, ignore_errors=True)
    try:
        base.rmdir()
    except OSError:
        pass


@pytest.fixture(scope="session")
def data_tier_server() -> Iterator[SeaweedFS | None]:
    """The SeaweedFS of every filesystem's data tier with ``FUSEFS_TEST_DATA_TIER=1``, else None."""
    if not data_tier_on():
        yield None
        return
    with running_seaweedfs() as server:
        yield server


class MountRefused(Exception):
    """The daemon exited instead of mounting (its log is the message)."""


class _Mounted:
    def __init__(
        self, path: Path, name: str, store: str, options: tuple[str, ...], rate: float, workdir: Path
    ) -> None:
        self.path = path
        self.name = name
        self.store = store
        self.options = options
        self.rate = rate
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None
        self.logs: list[Path] = []
        self.source: Path | None = None  # bindfs only


class MountFactory:
    """``mount_fs(options=("allow_other",))`` → Path of a fresh mounted filesystem (``mkfs=(...)``: more
    ``fusefs mkfs`` options).

    ``mount_fs.remount(path)`` unmounts cleanly and mounts the same filesystem again at the same place
    (for persistence checks); ``mount_fs.unmount(path)`` unmounts early.  Every mount is unmounted at
    teardown whatever the test did, and the test fails if a daemon logged a traceback or an ERROR record
    that no ``mount_fs.expect_errors(regex)`` of the test matches."""

    def __init__(
        self, tmp_path: Path, base: Path, rate: float, label: str, data_tier: SeaweedFS | None = None
    ) -> None:
        self.tmp_path = tmp_path
        #: With FUSEFS_TEST_DATA_TIER=1: the object store every filesystem made here keeps its data in.
        self.data_tier = data_tier
        self.base = base
        self.rate = rate
        self.label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:60]
        self.mounts: dict[Path, _Mounted] = {}
        self.problems: list[str] = []
        self.expected_errors: list[re.Pattern[str]] = []
        self._checked_logs: set[Path] = set()
        self.target = TARGET
        self.Refused = MountRefused
        self.entry = mount_entry
        self.store_mode = store_mode()
        #: Options every mount of this run gets (add them to mounts a test makes with the CLI itself).
        self.store_options = store_mount_options()

    # ---------------------------------------------------------------------------------------------
    def __call__(
        self, options: tuple[str, ...] | list[str] = (), name: str | None = None, mkfs: tuple[str, ...] = ()
    ) -> Path:
        if self.target != "local" and not os.path.exists("/dev/fuse"):
            pytest.skip("no /dev/fuse on this machine: cannot mount")
        serial = len(self.mounts)
        workdir = self.tmp_path / f"fs{serial}"
        workdir.mkdir()
        mp = Path(tempfile.mkdtemp(prefix=f"{self.label}-{serial}-", dir=self.base))
        mp.chmod(0o755)
        fsname = name or f"it-{uuid.uuid4().hex[:16]}"
        if _use_fdb():
            store = "fdb://" + os.path.abspath(os.environ["FDB_CLUSTER_FILE"])
        else:
            store = "sqlite://" + str(workdir / "meta.db")
        m = _Mounted(mp, fsname, store, tuple(options), self.rate, workdir)
        self.mounts[mp] = m
        if self.target == "local":
            return mp
        if self.target == "bindfs":
            m.source = workdir / "source"
            m.source.mkdir()
            m.source.chmod(0o755)
        else:
            blocks = workdir / "blocks"
            blocks.mkdir()
            more = [*mkfs, *self._data_tier_options()]
            self._mkfs(m, ["--store", store, "--blocks", str(blocks), *more, fsname])
        self._start(m)
        return mp

    def remount(self, path: Path, options: tuple[str, ...] | list[str] | None = None) -> Path:
        """Unmount cleanly and mount the same filesystem again at the same place (new options if
        given)."""
        m = self.mounts[path]
        if options is not None:
            m.options = tuple(options)
        if self.target == "local":
            return path
        self._stop(m)
        self._check_log(m)
        self._start(m)
        return path

    def mount_again(self, path: Path, options: tuple[str, ...] | list[str] = ()) -> Path:
        """A second, simultaneous mount of the filesystem mounted at ``path``, at a new mountpoint.
        Raises MountRefused if the daemon exits instead of mounting."""
        first = self.mounts[path]
        serial = len(self.mounts)
        mp = Path(tempfile.mkdtemp(prefix=f"{self.label}-{serial}-", dir=self.base))
        mp.chmod(0o755)
        workdir = self.tmp_path / f"fs{serial}"
        workdir.mkdir()
        m = _Mounted(mp, first.name, first.store, tuple(options), self.rate, workdir)
        m.source = first.source
        self.mounts[mp] = m
        if self.target == "local":
            return path
        self._start(m, refusal_ok=True)
        return mp

    def unmount(self, path: Path) -> None:
        m = self.mounts[path]
        if self.target != "local":
            self._stop(m)
            self._check_log(m)

    def stop_with_signal(self, path: Path, sig: int, timeout: float = 15.0) -> int:
        """Send ``sig`` to the daemon of ``path``; returns its exit status once it has exited (the
        caller checks that the mount is gone).  ``remount`` starts it again."""
        m = self.mounts[path]
        assert m.proc is not None and m.proc.poll() is None, "daemon not running"
        proc = m.proc
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop(m)
            pytest.fail(f"daemon ignored signal {sig} for {timeout} s:\n{_tail(m.log)}")
        m.proc = None
        self._check_log(m)
        return rc

    def expect_errors(self, regex: str) -> None:
        """Declare that this test provokes daemon ERROR records matching ``regex`` (re.search on the
        record's line) on purpose: they no longer fail it."""
        self.expected_errors.append(re.compile(regex))

    def daemon_log(self, path: Path) -> str:
        m = self.mounts[path]
        return "".join(_tail(p, 10**9) for p in m.logs)

    # ---------------------------------------------------------------------------------------------
    def _data_tier_options(self) -> list[str]:
        if self.data_tier is None:
            return []
        bucket = self.data_tier.new_bucket()
        # mkfs runs in this process, whose environment names no credentials: the file, explicitly.
        return [
            "--data", f"s3://{bucket}/fs", "--s3-endpoint", self.data_tier.endpoint,
            "--s3-credentials", self.data_tier.credentials_file,
        ]  # fmt: skip

    def _env(self, m: _Mounted) -> dict[str, str]:
        env = dict(os.environ)
        if self.data_tier is not None:
            env["AWS_SHARED_CREDENTIALS_FILE"] = self.data_tier.credentials_file
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("FUSEFS_CHAOS_CONFLICT_RATE", None)
        if m.rate:
            env["FUSEFS_CHAOS_CONFLICT_RATE"] = str(m.rate)
        return env

    def _mkfs(self, m: _Mounted, args: list[str]) -> None:
        """``fusefs mkfs ARGS`` for the mount ``m`` (tests/data/conftest.py hooks it to add settings and
        block directories)."""
        from fusefs.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["mkfs", *args])
        if status != 0:
            said = out.getvalue() + err.getvalue()
            pytest.fail(f"fusefs mkfs {' '.join(args)} failed (status {status}):\n{said}")

    def _start(self, m: _Mounted, refusal_ok: bool = False) -> None:
        log = m.workdir / f"daemon-{len(m.logs)}.log"
        m.log = log
        m.logs.append(log)
        if self.target == "bindfs":
            opts = ["-o", ",".join(m.options)] if m.options else []
            cmd = ["bindfs", "-f", *opts, str(m.source), str(m.path)]
        else:
            cmd = [PYTHON, "-m", "fusefs", "mount", "--store", m.store, "--name", m.name]
            options = tuple(dict.fromkeys((*m.options, *store_mount_options())))
            if options:
                cmd += ["-o", ",".join(options)]
            cmd += ["--foreground", str(m.path)]
        with open(log, "wb") as out:
            out.write(("$ " + " ".join(cmd) + "\n").encode())
            out.flush()
            m.proc = subprocess.Popen(
                cmd,
                cwd=m.workdir,
                env=self._env(m),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while mount_entry(m.path) is None:
            if m.proc.poll() is not None:
                if refusal_ok:
                    m.proc = None
                    raise MountRefused(_tail(log))
                pytest.fail(f"mount daemon exited with {m.proc.returncode} before mounting:\n{_tail(log)}")
            if time.monotonic() > deadline:
                self._stop(m)
                pytest.fail(f"{m.path} not mounted after {MOUNT_TIMEOUT:.0f} s; daemon log:\n{_tail(log)}")
            time.sleep(0.05)
        self._assert_fuse(m)

    def _assert_fuse(self, m: _Mounted) -> None:
        mp = m.path
        st, pst = os.stat(mp), os.stat(mp.parent)
        assert st.st_dev != pst.st_dev, f"{mp} has its parent's device: not a mount"
        fstype = _proc_mounts_type(mp)
        want = "fuse" if self.target == "bindfs" else FSTYPE
        assert fstype == want, f"{mp} is mounted as {fstype!r}, expected {want!r}:\n{_tail(m.log)}"

    def _stop(self, m: _Mounted) -> None:
        """Unmount however it takes: fusermount3 -u, SIGTERM, lazy unmount, SIGKILL."""
        proc = m.proc
        if proc is None:
            if mount_entry(m.path) is not None:  # the daemon is gone but left its mount behind
                self.problems.append(f"{m.path} still mounted after its daemon exited")
                subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True)
            return
        if proc.poll() is not None and mount_entry(m.path) is not None:
            self.problems.append(f"daemon for {m.path} died during the test (rc {proc.returncode})")
        elif proc.poll() is not None:
            self.problems.append(f"daemon for {m.path} exited during the test (rc {proc.returncode})")
        clean = False
        if mount_entry(m.path) is not None:
            # A mount the test's last requests still reference for a moment (seen only on a loaded
            # machine) answers EBUSY: try again briefly before calling it a problem.
            for _ in range(UNMOUNT_TRIES):
                res = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, text=True)
                clean = res.returncode == 0
                if clean or "busy" not in res.stderr:
                    break
                time.sleep(0.5)
            if not clean:
                self.problems.append(f"fusermount3 -u {m.path}: {res.stderr.strip()}")
        try:
            rc = proc.wait(timeout=15)
            if clean and rc != 0:
                self.problems.append(f"daemon for {m.path} exited with {rc} after a clean unmount")
        except subprocess.TimeoutExpired:
            self.problems.append(f"daemon for {m.path} still running 15 s after unmount: SIGTERM")
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if mount_entry(m.path) is not None:
            subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True)
        if proc.poll() is None:
            self.problems.append(f"daemon for {m.path} killed with SIGKILL")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        m.proc = None

    def _check_log(self, m: _Mounted) -> None:
        if m.log is None or m.log in self._checked_logs:
            return
        self._checked_logs.add(m.log)
        text = _tail(m.log, 10**9)
        if "Traceback" in text:
            self.problems.append(f"daemon for {m.path} logged a traceback:\n{_tail(m.log)}")
        unexpected = [
            line
            for line in ERROR_RECORD.findall(text)
            if not any(pattern.search(line) for pattern in [*self.expected_errors, *BENIGN_ERRORS])
        ]
        if unexpected:
            listed = "\n".join(line[:300] for line in unexpected[:20])
            self.problems.append(
                f"daemon for {m.path} logged {len(unexpected)} unexpected ERROR record(s) (declare the ones "
                f"the test provokes with mount_fs.expect_errors(regex)):\n{listed}"
            )

    def close(self) -> None:
        for m in self.mounts.values():
            if self.target == "local":
                continue
            try:
                self._stop(m)
            finally:
                self._check_log(m)


@pytest.fixture
def mount_fs(
    tmp_path: Path,
    mount_base: Path,
    chaos_rate: float,
    data_tier_server: SeaweedFS | None,
    request: pytest.FixtureRequest,
) -> Iterator[MountFactory]:
    factory = MountFactory(tmp_path, mount_base, chaos_rate, request.node.name, data_tier_server)
    try:
        yield factory
    finally:
        factory.close()
    if factory.problems:
        pytest.fail("mount problems:\n" + "\n".join(factory.problems), pytrace=False)


@pytest.fixture
def fs_target() -> str:
    """'fusefs', 'bindfs' or 'local' (see the module docstring)."""
    return TARGET


@pytest.fixture
def mnt(mount_fs: MountFactory) -> Path:
    """A fresh, empty filesystem mounted for this test (as root, no allow_other)."""
    return mount_fs()


@pytest.fixture
def mnt_shared(mount_fs: MountFactory) -> Path:
    """A fresh filesystem mounted with ``-o allow_other`` so the unprivileged user can use it."""
    return mount_fs(options=("allow_other",))


# --------------------------------------------------------------------------------------------------
# the unprivileged user


class User:
    """An unprivileged account: ``user.run([...])`` runs a command as it, ``user.py(code)`` a Python
    snippet (with the system interpreter, which the account can execute)."""

    def __init__(self, name: str) -> None:
        pw = pwd.getpwnam(name)
        self.name = name
        self.uid = pw.pw_uid
        self.gid = pw.pw_gid
        self.home = pw.pw_dir
        self.group = grp.getgrnam(TEST_GROUP).gr_gid  # supplementary
        self.other_group = grp.getgrnam(OTHER_GROUP).gr_gid  # not a member

    def run(
        self,
        cmd: list[str],
        *,
        cwd: str | os.PathLike | None = None,
        check: bool = False,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        full = [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--reset-env",
            "--",
            *cmd,
        ]
        res = subprocess.run(
            full, cwd=cwd or "/", capture_output=True, text=True, input=input, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"as {self.name}: {cmd} → rc {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def py(self, code: str, *, cwd: str | os.PathLike | None = None) -> str:
        """Run ``code`` as the user; returns its stdout (stripped); a traceback fails the test."""
        res = self.run([USER_PYTHON, "-c", code], cwd=cwd)
        if res.returncode != 0:
            raise AssertionError(f"snippet as {self.name} failed:\n{code}\n{res.stderr}")
        return res.stdout.strip()

    def try_ops(self, ops: dict[str, str], *, cwd: str | os.PathLike | None = None) -> dict[str, str]:
        """Evaluate each Python statement of ``ops`` as the user: 'OK' or the errno name it raised."""
        code = (
            "import errno, json, os, sys\n"
            "ops = json.loads(sys.argv[1])\nout = {}\n"
            "for key, stmt in ops.items():\n"
            "    try:\n"
            "        exec(stmt, {'os': os})\n"
            "        out[key] = 'OK'\n"
            "    except OSError as e:\n"
            "        out[key] = errno.errorcode.get(e.errno, str(e.errno))\n"
            "print(json.dumps(out))\n"
        )
        import json

        res = self.run([USER_PYTHON, "-c", code, json.dumps(ops)], cwd=cwd)
        if res.returncode != 0:
            raise AssertionError(f"ops as {self.name} failed:\n{ops}\n{res.stderr}")
        return json.loads(res.stdout)


def _ensure_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        subprocess.run(["groupadd", name], check=True, capture_output=True)


@pytest.fixture(scope="session")
def unpriv_user() -> User:
    """The account ``fusefs-test`` (created if missing), member of ``fusefs-test-grp``."""
    if os.geteuid() != 0:
        pytest.skip("creating the unprivileged test user needs root")
    _ensure_group(TEST_GROUP)
    _ensure_group(OTHER_GROUP)
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], check=True, capture_output=True)
    if TEST_USER not in grp.getgrnam(TEST_GROUP).gr_mem:
        subprocess.run(["usermod", "-a", "-G", TEST_GROUP, TEST_USER], check=True, capture_output=True)
    return User(TEST_USER)
