"""The mount's life cycle: check the mountpoint, open the filesystem, serve it, unmount cleanly.

``mount_foreground`` serves in this process and logs to stderr.  ``mount_background`` double-forks a
daemon that logs to a file and returns only once the mount answers (or the daemon's one-line error is
known): a script may use the mountpoint right after ``fusefs mount`` exits 0.

Shutdown order, whatever ends the FUSE loop (``fusermount3 -u``, SIGINT/SIGTERM, a crash of a service):
1. the FUSE loop stops taking requests and the background services are cancelled;
2. ``ops.shutdown()`` flushes buffered writes and reclaims what can be reclaimed — while the session
   still exists, because pyfuse3's invalidation calls use the session and must not run after it is
   destroyed;
3. ``pyfuse3.close(unmount=True)`` unmounts (lazily, as libfuse does; a no-op when already unmounted);
4. the block store and then the metadata store are closed, releasing the store's owner lock last, so a
   new mount of the same store can only start once everything of this one is durable in it.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import json
import logging
import os
import re
import select
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TextIO

import pyfuse3
import trio

from blocks import BlockStore
from blocks.errors import BlockError
from blocks.objects import ObjectStore
from blocks.tier import DEFAULT_CACHE_BYTES, FETCH_PATIENCE_S, ChunkTier
from fusefs import fuseloop
from fusefs.blockdirs import SettingsUnusable, open_block_store
from fusefs.datatier import open_data_tier
from fusefs.store_runner import patience_from_env
from metadata.emulation import StoreEmulation
from metadata.printable import printable
from metadata.sessions import seconds_from_env
from metadata.store import Store, StoreError
from metadata.urls import data_dir, open_store

if TYPE_CHECKING:
    from fusefs.operations import FuseOperations

log = logging.getLogger(__name__)

#: Kernel readahead on the mount, matching the 1 MiB writes the kernel sends (max_pages 256).
READAHEAD_KIB = 1024
#: Idle FUSE worker tasks kept waiting for requests, and the most requests handled at once.  FoundationDB
#: needs on the order of 200 transactions in flight to reach its throughput (design.md), so the ceiling
#: is set above that; with the embedded store most handlers finish without yielding, so it costs nothing.
#: pyfuse3 cannot count the idle tasks in our wait (fusefs/fuseloop.py), so it keeps up to the maximum;
#: that wait gives requests to tasks that already hold a 1 MiB receive buffer before fresh ones, so
#: buffers are touched only as far as requests overlap.
FUSE_MIN_TASKS = 8
FUSE_MAX_TASKS = 256
#: How long ``fusefs mount`` waits for a background daemon to have the mount answering.  Generous
#: because opening a FoundationDB cluster and recovering orphans may take a while.
START_TIMEOUT_S = 60.0
FUSE_DEVICE = "/dev/fuse"
#: How long a read of a chunk from the object data tier may take before it answers EIO (seconds).
FETCH_PATIENCE_ENV = "FUSEFS_FETCH_PATIENCE_S"
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


class MountError(Exception):
    """A mount that cannot go ahead, with a message fit for one line of output."""


@dataclass
class MountRequest:
    store_url: str
    name: str
    #: Absolute, symlinks resolved: the path the kernel will list in /proc/self/mountinfo.
    mountpoint: str
    read_only: bool = False
    allow_other: bool = False
    #: Invalidate kernel caches as soon as another mount's change is seen (no timeout window).
    strict: bool = False
    #: The kernel's writeback cache (see ``FuseOperations``).
    writeback_cache: bool = False
    #: Open an embedded store in shared mode: several read-write mounts of one store file, each behaving
    #: as on FoundationDB (FoundationDB is always shared).
    shared: bool = False
    log_file: str | None = None
    debug: bool = False
    #: ``-o cache_dir=DIR``: this host's own staging and cache directory for a filesystem with an object
    #: data tier, instead of the filesystem's block directories (which another host may own).
    cache_dir: str | None = None
    #: ``-o cache_size=BYTES``: the limit of this mount's cache of objects (blocks/tier.py).
    cache_size: int | None = None


# -- messages -------------------------------------------------------------------------------------------
def is_expected(error: BaseException) -> bool:
    """Failures a user can meet and fix (their message says how); anything else is a bug."""
    return isinstance(_cause(error), MountError | SettingsUnusable | StoreError | BlockError | OSError)


def one_line(error: BaseException) -> str:
    """A message for ``fusefs: error: ...``.  Errors of ours carry their own message; anything else is a
    bug or an environment problem, so its type is named as well."""
    error = _cause(error)
    if isinstance(error, MountError | SettingsUnusable | StoreError | BlockError):
        text = str(error)
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split()) or type(error).__name__


def _cause(error: BaseException) -> BaseException:
    """The first error inside trio's exception groups (a failure at mount, in recovery, arrives wrapped
    in one), so that it is named rather than "Exceptions from Trio nursery"."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


# -- mount table ----------------------------------------------------------------------------------------
@dataclass
class MountEntry:
    mountpoint: str
    fstype: str
    source: str
    #: "major:minor", which also names the mount's backing device info under /sys/class/bdi.
    device: str = ""


def _unescape(field: bytes) -> str:
    # The kernel writes space, tab, newline and backslash in mount paths as octal escapes (\040 ...).
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def mount_table() -> list[MountEntry]:
    """This mount namespace's mounts, from /proc/self/mountinfo (never stats a mountpoint, so a hung or
    dead FUSE mount cannot block us)."""
    entries = []
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            fields = line.split()
            separator = fields.index(b"-")
            entries.append(
                MountEntry(
                    _unescape(fields[4]),
                    _unescape(fields[separator + 1]),
                    _unescape(fields[separator + 2]),
                    fields[2].decode(),
                )
            )
    return entries


def mount_at(path: str) -> MountEntry | None:
    """The topmost mount at ``path`` (absolute, resolved), if any."""
    found = None
    for entry in mount_table():
        if entry.mountpoint == path:
            found = entry
    return found


def is_fusefs(entry: MountEntry) -> bool:
    return entry.fstype == "fuse.fusefs"


def resolve_mountpoint(path: str) -> str:
    # realpath: the kernel records the resolved path, and the daemon works from "/".
    return os.path.realpath(path)


def check_mountpoint(path: str) -> str:
    """The resolved mountpoint, or a ``MountError`` saying why it cannot be mounted on.  A non-empty
    directory is fine (libfuse 3 allows it, as mount(8) does)."""
    resolved = resolve_mountpoint(path)
    entry = mount_at(resolved)
    if entry is not None:
        raise MountError(
            f"mountpoint {path} is already a mount point ({entry.fstype} {entry.source}): "
            "unmount it first or choose another directory"
        )
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise MountError(f"mountpoint {path} does not exist") from None
    except OSError as error:
        hint = " (a dead FUSE mount? try: fusermount3 -u -z PATH)" if error.errno == errno.ENOTCONN else ""
        raise MountError(f"mountpoint {path}: {error.strerror}{hint}") from None
    if not stat.S_ISDIR(mode):
        raise MountError(f"mountpoint {path} is not a directory")
    return resolved


def check_fuse_available(allow_other: bool) -> None:
    if not os.path.exists(FUSE_DEVICE):
        raise MountError(f"{FUSE_DEVICE} does not exist: load the fuse kernel module (modprobe fuse)")
    if allow_other and os.geteuid() != 0 and not _user_allow_other():
        raise MountError(
            "-o allow_other needs 'user_allow_other' in /etc/fuse.conf when not mounting as root"
        )


def _user_allow_other() -> bool:
    try:
        with open("/etc/fuse.conf") as conf:
            return any(line.strip() == "user_allow_other" for line in conf)
    except OSError:
        return False


# -- records of running daemons (for `fusefs status` and `fusefs umount`) ------------------------------
def _state_dir() -> str:
    path = os.path.join(data_dir(), "mounts")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@dataclass
class DaemonRecord:
    pid: int
    mountpoint: str
    store_url: str
    name: str
    log_file: str | None


def _record_path(pid: int) -> str:
    return os.path.join(_state_dir(), f"{pid}.json")


def _write_record(record: DaemonRecord) -> None:
    path = _record_path(record.pid)
    with open(path + ".tmp", "w") as out:
        json.dump(asdict(record), out)
    os.replace(path + ".tmp", path)


def _remove_record(pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record_path(pid))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs.  A zombie counts as gone: its parent (a shell, a test, or a container's
    init that never reaps) may take long to collect it, but it holds nothing any more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as source:
            state = source.read().rpartition(b")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def running_daemons() -> list[DaemonRecord]:
    """Daemons started by this user that are still running; records of dead ones are removed."""
    records = []
    for file_name in os.listdir(_state_dir()):
        if not file_name.endswith(".json"):
            continue
        try:
            with open(os.path.join(_state_dir(), file_name)) as source:
                record = DaemonRecord(**json.load(source))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(record.pid):
            records.append(record)
        else:
            _remove_record(record.pid)
    return records


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- serving ----------------------------------------------------------------------------------------------
def _fuse_options(ops: FuseOperations, request: MountRequest) -> set[str]:
    options = set(ops.fuse_options())
    if request.read_only:
        options.add("ro")
    if request.allow_other:
        options.add("allow_other")
    return options


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Collect what libfuse (and fusermount3) print to stderr while mounting, to quote it in our error;
    it is echoed back to the real stderr (the terminal or the log file) afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)

        def captured() -> str:
            capture.seek(0)
            return capture.read().decode(errors="replace")

        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            text = captured()
            if text:
                os.write(2, text.encode())


async def _terminate_on_signals(
    polling: fuseloop.PollingWait | None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("%s received: stopping the FUSE loop and unmounting", signal.Signals(signum).name)
            if polling is not None:
                polling.stop()
            pyfuse3.terminate()


async def _serve(ops: FuseOperations, mountpoint: str, on_ready: Callable[[], None]) -> None:
    polling = fuseloop.install()
    try:
        async with trio.open_nursery() as nursery:
            # Signals are caught before the mount is announced: a SIGTERM right after `fusefs mount`
            # returns must still unmount cleanly rather than kill the daemon.
            await nursery.start(_terminate_on_signals, polling)
            # The session is registered before any request is answered; dead mounts' leftovers are
            # recovered in the background by a service (fusefs/recovery.py).
            await ops.recover(mountpoint)
            nursery.start_soon(ops.run_services)
            nursery.start_soon(_raise_readahead, mountpoint)
            on_ready()
            log.info("serving")
            await pyfuse3.main(FUSE_MIN_TASKS, FUSE_MAX_TASKS)
            log.info("FUSE loop ended")
            nursery.cancel_scope.cancel()
    finally:
        # Shielded: a cancelled or crashed serve must still flush what the kernel handed us.
        with trio.CancelScope(shield=True):
            await ops.shutdown()
            log.info("flushed")


async def _raise_readahead(mountpoint: str) -> None:
    """Let the kernel read ahead READAHEAD_KIB instead of FUSE's 128 KiB default: each read request
    costs a round trip, so larger ones matter (cold sequential reads of a 64 MiB file with dd: 525 MB/s
    at 128 KiB, 850 MB/s at 1 MiB).  Needs root; otherwise the default stays.

    The kernel sets readahead when it gets the answer to FUSE_INIT, so this waits for the mount to
    answer a stat (made in a thread: serving it needs this event loop) before changing it."""
    await trio.to_thread.run_sync(os.stat, mountpoint)
    await trio.to_thread.run_sync(_write_readahead, mountpoint)


def _write_readahead(mountpoint: str) -> None:
    entry = mount_at(mountpoint)
    if entry is None or not entry.device:
        return
    path = f"/sys/class/bdi/{entry.device}/read_ahead_kb"
    try:
        with open(path, "w") as setting:
            setting.write(str(READAHEAD_KIB))
    except OSError as error:
        log.info("kernel readahead left at its default (%s: %s)", path, error.strerror)


def _store_emulation() -> StoreEmulation:
    """The embedded store's development aids for this daemon (metadata/emulation.py: retry chaos,
    latency, an outage switch), from the environment; FoundationDB ignores them.  The store runner's
    patience is checked here too, so a bad value fails the mount with one line."""
    try:
        emulation = StoreEmulation.from_env(os.environ)
        patience_from_env(os.environ)
    except ValueError as error:
        raise MountError(str(error)) from None
    if emulation.active:
        log.warning("embedded store emulation on: %s", emulation.describe())
    return emulation


def _chunk_tier(objects: ObjectStore, blocks: BlockStore, request: MountRequest) -> ChunkTier:
    return ChunkTier(
        objects,
        blocks,
        cache_bytes=DEFAULT_CACHE_BYTES if request.cache_size is None else request.cache_size,
        fetch_patience_s=seconds_from_env(FETCH_PATIENCE_ENV, FETCH_PATIENCE_S),
    )


def serve_mount(request: MountRequest, on_ready: Callable[[], None]) -> None:
    """Open the filesystem, mount it, serve until unmounted or signalled, and tear down in order."""
    # Imported here, not at the top: only a mount needs the whole filesystem, and every other
    # subcommand (and --help) starts faster without it.
    from fusefs.operations import FuseOperations

    check_fuse_available(request.allow_other)
    # Until trio's signal receiver takes over, SIGTERM gets SIGINT's treatment, so that the cleanup in
    # the `finally` blocks below (unmount, close the store) runs for both.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A read-only mount takes no ownership of the store: on the embedded store it can run beside the
    # daemon that owns it (or the shared-mode ones), following the change log like a mount on a shared
    # store.
    store: Store = open_store(
        request.store_url,
        read_only=request.read_only,
        exclusive=not request.read_only,
        shared=request.shared,
        emulation=_store_emulation(),
    )
    blocks = None
    try:
        config, blocks = open_block_store(
            store, request.name, writable=not request.read_only, cache_dir=request.cache_dir
        )
        objects = open_data_tier(config)  # a wrong bucket or credentials fail the mount at once
        ops = FuseOperations(
            store,
            config,
            blocks,
            read_only=request.read_only,
            strict=request.strict,
            writeback_cache=request.writeback_cache,
            tier=None if objects is None else _chunk_tier(objects, blocks, request),
        )
        options = _fuse_options(ops, request)
        log.info(
            "mounting %r from %s%s at %s with options %s",
            request.name,
            store.url,
            " (shared mode)" if request.shared and not request.read_only else "",
            request.mountpoint,
            ",".join(sorted(options)),
        )
        with _captured_stderr() as libfuse_said:
            try:
                pyfuse3.init(ops, request.mountpoint, options)
            except RuntimeError as error:
                said = " ".join(libfuse_said().split())
                raise MountError(f"cannot mount on {request.mountpoint}: {said or error}") from None
        record = DaemonRecord(os.getpid(), request.mountpoint, store.url, request.name, request.log_file)
        _write_record(record)
        try:
            trio.run(_serve, ops, request.mountpoint, on_ready)
        finally:
            pyfuse3.close(unmount=True)
            _remove_record(record.pid)
            log.info("unmounted %s", request.mountpoint)
    finally:
        if blocks is not None:
            blocks.close()
        store.close()


# -- foreground and background ----------------------------------------------------------------------------
class OneLineFormatter(logging.Formatter):
    """One line per record whatever a message quotes (file names, paths): its control characters are
    escaped (metadata/printable.py), so no name can forge a record.  A traceback still follows the
    record it belongs to, indented by Python."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def _configure_logging(debug: bool, stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler], force=True)
    faulthandler.enable()  # a crash in C code (libfuse, libfdb_c) leaves a stack in the log


def mount_foreground(request: MountRequest) -> int:
    if request.log_file:
        _configure_logging(request.debug, open(request.log_file, "a", buffering=1))  # noqa: SIM115
    else:
        _configure_logging(request.debug, sys.stderr)
    serve_mount(request, on_ready=lambda: None)
    return 0


def mount_background(request: MountRequest) -> int:
    """Start a daemon serving ``request``; 0 once the mount answers, else the daemon's error (raised)."""
    assert request.log_file is not None
    log_fd = os.open(request.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    status_read, status_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first == 0:
        os.close(status_read)
        _daemon_child(request, log_fd, status_write)  # never returns
    os.close(status_write)
    os.close(log_fd)
    os.waitpid(first, 0)  # the intermediate child exits at once; its child is the daemon
    try:
        pid = _wait_until_ready(status_read, request)
    finally:
        os.close(status_read)
    where, log_file = printable(request.mountpoint), printable(request.log_file)
    print(f"mounted '{request.name}' at {where} (pid {pid}, log {log_file})")
    return 0


def _daemon_child(request: MountRequest, log_fd: int, status_fd: int) -> None:
    """Runs in the first child: detaches twice (no controlling terminal can ever be acquired), then
    serves, reporting ``pid N``, then ``ready`` or ``error MESSAGE`` on ``status_fd``."""
    code = 1
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _configure_logging(request.debug, sys.stderr)
        status = os.fdopen(status_fd, "w", buffering=1)
        status.write(f"pid {os.getpid()}\n")

        def ready() -> None:
            status.write("ready\n")
            status.close()

        try:
            serve_mount(request, on_ready=ready)
            code = 0
        except BaseException as error:
            if is_expected(error) and not request.debug:
                log.error("mount failed: %s", one_line(error))
            else:
                log.exception("mount failed")
            if not status.closed:
                status.write(f"error {one_line(error)}\n")
                status.close()
    finally:
        logging.shutdown()
        os._exit(code)


def _wait_until_ready(status_fd: int, request: MountRequest) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    pid = 0
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            raise MountError(
                f"the daemon did not mount within {START_TIMEOUT_S:g} s (see {request.log_file})"
            )
        readable, _, _ = select.select([status_fd], [], [], min(remaining, 0.2))
        if not readable:
            continue
        chunk = os.read(status_fd, 4096)
        if not chunk:
            raise MountError(f"the daemon exited while mounting (see {request.log_file})")
        received += chunk
        while b"\n" in received:
            line, received = received.split(b"\n", 1)
            word, _, rest = line.decode(errors="replace").partition(" ")
            if word == "pid":
                pid = int(rest)
            elif word == "error":
                raise MountError(rest)
            elif word == "ready":
                _wait_until_answering(request.mountpoint, deadline, request.log_file)
                return pid


def _wait_until_answering(mountpoint: str, deadline: float, log_file: str | None) -> None:
    """The mount is in the mount table and the daemon answers a statfs."""
    while True:
        entry = mount_at(mountpoint)
        if entry is not None and is_fusefs(entry):
            break
        if time.monotonic() > deadline:
            raise MountError(f"{mountpoint} did not appear in the mount table (see {log_file})")
        time.sleep(0.02)
    failure = probe_errno(mountpoint, max(deadline - time.monotonic(), 0.1))
    if failure is None:
        raise MountError(f"{mountpoint} is mounted but does not answer (see {log_file})")
    if failure:
        raise MountError(f"{mountpoint} is mounted but statfs fails: {os.strerror(failure)} (see {log_file})")


def probe_errno(path: str, timeout_s: float) -> int | None:
    """0 if the filesystem mounted at ``path`` answers a statfs, its errno if it fails (ENOTCONN: a FUSE
    mount whose daemon is gone), None if no answer comes within ``timeout_s``.  A statfs, because the
    kernel always asks the daemon (a stat may be answered from the kernel's cache); in a thread, so
    that a hung daemon costs a timeout, not a hung command."""
    answered = threading.Event()
    outcome: list[int] = []

    def probe() -> None:
        try:
            os.statvfs(path)
            outcome.append(0)
        except OSError as error:
            outcome.append(error.errno or errno.EIO)
        answered.set()

    threading.Thread(target=probe, daemon=True).start()
    return outcome[0] if answered.wait(timeout_s) else None
