"""The mount's life cycle: check the mountpoint, open the filesystem, serve it, unmount cleanly.

``mount_foreground`` serves in this process and logs to stderr.  ``mount_background`` double-forks a
daemon that logs to a file and returns only once the mount answers (or the daemon's one-line error is
known): a script may use the mountpoint right after ``fusefs mount`` exits 0.

Shutdown order, whatever ends the FUSE loop (``fusermount3 -u``, SIGINT/SIGTERM, a crash of a service):
1. the FUSE loop stops taking requests and the background services are cancelled;
2. ``Filesystem.shutdown()`` flushes buffered writes and reclaims what can be reclaimed — while the session
   still exists, because pyfuse3's invalidation calls use the session and must not run after it is
   destroyed;
3. ``pyfuse3.close(unmount=True)`` unmounts (lazily, as libfuse does; a no-op when already unmounted);
4. the block store and then the metadata store are closed, releasing the store's owner lock last, so a
   new mount of the same store can only start once everything of this one is durable in it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyfuse3
import trio

from blocks import BlockStore
from blocks.objects import ObjectStore
from blocks.staging import DEFAULT_STAGING_BYTES
from blocks.tier import DEFAULT_CACHE_BYTES, FETCH_PATIENCE_S, UPLOAD_PATIENCE_S, ChunkTier
from fusefs import control, fuseloop, logs
from fusefs.blockdirs import open_block_store
from fusefs.daemon_records import DaemonRecord, control_socket_path, remove_record, write_record
from fusefs.datatier import open_data_tier
from fusefs.messages import MountError, is_expected, one_line
from fusefs.mount_table import check_fuse_available, is_fusefs, mount_at, probe_errno
from fusefs.store_runner import patience_from_env
from metadata.emulation import StoreEmulation
from metadata.printable import printable
from metadata.sessions import seconds_from_env
from metadata.store import Store
from metadata.urls import open_store

if TYPE_CHECKING:
    from fusefs.filesystem import Filesystem

log = logging.getLogger(__name__)

#: Kernel readahead on the mount, matching the 1 MiB writes the kernel sends (max_pages 256).
READAHEAD_KIB = 1024
#: Idle FUSE worker tasks kept waiting for requests, and the most requests handled at once.  FoundationDB
#: needs on the order of 200 transactions in flight to reach its throughput, so the ceiling
#: is set above that; with the embedded store most handlers finish without yielding, so it costs nothing.
#: pyfuse3 cannot count the idle tasks in our wait (fusefs/fuseloop.py), so it keeps up to the maximum;
#: that wait gives requests to tasks that already hold a 1 MiB receive buffer before fresh ones, so
#: buffers are touched only as far as requests overlap.
FUSE_MIN_TASKS = 8
FUSE_MAX_TASKS = 256
#: How long ``fusefs mount`` waits for a background daemon to have the mount answering.  Generous
#: because opening a FoundationDB cluster and recovering orphans may take a while.
START_TIMEOUT_S = 60.0
#: How long a read of a chunk from the object data tier may take before it answers EIO (seconds).
FETCH_PATIENCE_ENV = "FUSEFS_FETCH_PATIENCE_S"
#: How long uploads retry, and writes wait for staging room, before failing with EIO (seconds).
UPLOAD_PATIENCE_ENV = "FUSEFS_UPLOAD_PATIENCE_S"


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
    #: POSIX ACLs enforced by the kernel (FUSE_POSIX_ACL).
    acl: bool = False
    #: Record every open and close of a file (``-o provenance``; also on when the settings say so).
    provenance: bool = False
    #: The log file (reopened on SIGHUP), or None for stderr.
    log_file: str | None = None
    debug: bool = False
    #: ``-o cache_dir=DIR``: this host's own staging and cache directory for a filesystem with an object
    #: data tier, instead of the filesystem's block directories (which another host may own).
    cache_dir: str | None = None
    #: ``-o cache_size=BYTES``: the limit of this mount's cache of objects (blocks/tier.py).
    cache_size: int | None = None
    #: ``-o staging_size=BYTES``: how much written data may wait for its upload (blocks/staging.py).
    staging_size: int | None = None
    #: One of fusefs/logs.py's LEVELS; --debug means "debug".
    log_level: str = "info"
    #: IP:PORT to serve Prometheus metrics at (fusefs/metrics.py), or None.
    metrics: str | None = None


# -- serving ----------------------------------------------------------------------------------------------
def _fuse_options(fs: Filesystem, request: MountRequest) -> set[str]:
    options = set(fs.ops.fuse_options())
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


async def _handle_signals(
    polling: fuseloop.PollingWait | None,
    log_file: str | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGINT and SIGTERM unmount; SIGHUP reopens the log file (after logrotate renamed it)."""
    wanted = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if log_file else [])]
    with trio.open_signal_receiver(*wanted) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP and log_file:
                try:
                    logs.reopen(log_file)
                except OSError as error:
                    log.error(
                        "cannot reopen the log file %s: %s (still logging to the old one)", log_file, error
                    )
                continue
            log.info("%s received: stopping the FUSE loop and unmounting", signal.Signals(signum).name)
            if polling is not None:
                polling.stop()
            pyfuse3.terminate()


async def _serve(fs: Filesystem, request: MountRequest, on_ready: Callable[[], None]) -> None:
    mountpoint = request.mountpoint
    polling = fuseloop.install()
    try:
        async with trio.open_nursery() as nursery:
            # Signals are caught before the mount is announced: a SIGTERM right after `fusefs mount`
            # returns must still unmount cleanly rather than kill the daemon.
            await nursery.start(_handle_signals, polling, request.log_file)
            # The session is registered before any request is answered; dead mounts' leftovers are
            # recovered in the background by a service (fusefs/recovery.py).
            await fs.start(mountpoint)
            nursery.start_soon(fs.run_services)
            await nursery.start(control.serve, control_socket_path(os.getpid()), fs.stats)
            nursery.start_soon(_raise_readahead, mountpoint)
            on_ready()
            log.info("serving")
            await pyfuse3.main(FUSE_MIN_TASKS, FUSE_MAX_TASKS)
            log.info("FUSE loop ended")
            nursery.cancel_scope.cancel()
    finally:
        # Shielded: a cancelled or crashed serve must still flush what the kernel handed us.
        with trio.CancelScope(shield=True):
            await fs.shutdown()
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
        upload_patience_s=seconds_from_env(UPLOAD_PATIENCE_ENV, UPLOAD_PATIENCE_S),
        staging_bytes=DEFAULT_STAGING_BYTES if request.staging_size is None else request.staging_size,
    )


def _start_metrics(address: str | None, fs: Filesystem) -> Callable[[], None] | None:
    """Serve Prometheus metrics if asked; the function that stops them."""
    if address is None:
        return None
    from fusefs.metrics import serve_metrics  # only mounts with -o metrics need prometheus_client

    try:
        stop = serve_metrics(address, fs.stats)
    except (OSError, ValueError) as error:
        raise MountError(
            f"cannot serve metrics at {address}: {getattr(error, 'strerror', None) or error}"
        ) from None
    log.info("serving Prometheus metrics at http://%s/metrics", address)
    return stop


def serve_mount(request: MountRequest, on_ready: Callable[[], None]) -> None:
    """Open the filesystem, mount it, serve until unmounted or signalled, and tear down in order."""
    # Imported here, not at the top: only a mount needs the whole filesystem, and every other
    # subcommand (and --help) starts faster without it.
    from fusefs.filesystem import Filesystem

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
    stop_metrics = None
    try:
        config, blocks = open_block_store(
            store, request.name, writable=not request.read_only, cache_dir=request.cache_dir
        )
        objects = open_data_tier(config)  # a wrong bucket or credentials fail the mount at once
        fs = Filesystem(
            store,
            config,
            blocks,
            read_only=request.read_only,
            strict=request.strict,
            writeback_cache=request.writeback_cache,
            tier=None if objects is None else _chunk_tier(objects, blocks, request),
            acl=request.acl,
            provenance=request.provenance or config.provenance,
        )
        options = _fuse_options(fs, request)
        stop_metrics = _start_metrics(request.metrics, fs)
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
                pyfuse3.init(fs.ops, request.mountpoint, options)
            except RuntimeError as error:
                said = " ".join(libfuse_said().split())
                raise MountError(f"cannot mount on {request.mountpoint}: {said or error}") from None
        record = DaemonRecord(os.getpid(), request.mountpoint, store.url, request.name, request.log_file)
        write_record(record)
        try:
            trio.run(_serve, fs, request, on_ready)
        finally:
            pyfuse3.close(unmount=True)
            remove_record(record.pid)
            log.info("unmounted %s", request.mountpoint)
    finally:
        if stop_metrics is not None:
            stop_metrics()
        if blocks is not None:
            blocks.close()
        store.close()


# -- foreground and background ----------------------------------------------------------------------------
def _level(request: MountRequest) -> str:
    return "debug" if request.debug else request.log_level


def mount_foreground(request: MountRequest) -> int:
    if request.log_file:
        logs.redirect_stderr(request.log_file, follow_stdout=False)
    logs.configure(_level(request), sys.stderr)
    serve_mount(request, on_ready=lambda: None)
    return 0


def mount_background(request: MountRequest) -> int:
    """Start a daemon serving ``request``; 0 once the mount answers, else the daemon's error (raised)."""
    # Without a log file (--log-file -) the daemon keeps the stderr it was given (a service manager's).
    log_fd = logs.open_log(request.log_file) if request.log_file else None
    status_read, status_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first == 0:
        os.close(status_read)
        _daemon_child(request, log_fd, status_write)  # never returns
    os.close(status_write)
    if log_fd is not None:
        os.close(log_fd)
    os.waitpid(first, 0)  # the intermediate child exits at once; its child is the daemon
    try:
        pid = _wait_until_ready(status_read, request)
    finally:
        os.close(status_read)
    where, log_file = printable(request.mountpoint), printable(request.log_file or "stderr")
    print(f"mounted '{request.name}' at {where} (pid {pid}, log {log_file})")
    return 0


def _daemon_child(request: MountRequest, log_fd: int | None, status_fd: int) -> None:
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
        os.dup2(null if log_fd is None else log_fd, 1)
        if log_fd is not None:
            os.dup2(log_fd, 2)
            os.close(log_fd)
        os.close(null)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        logs.configure(_level(request), sys.stderr)
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
