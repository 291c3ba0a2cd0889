"""The one place where errors become errnos for the kernel.

pyfuse3 handlers may raise only ``FUSEError``: any other exception ends ``pyfuse3.main()`` and takes the
mount down.  Every handler is wrapped here: expected errors (``FSError``) pass their errno silently,
store and block errors with an errno of their own map to it, and anything unexpected is logged once
with its traceback and answered with EIO, leaving the mount up.

A failure is logged as one short line naming the operation, its numbers (inode, handle, offset) and the
names it was given, never the data written or an xattr's value (which are shown by size only: the whole
1 MiB buffer of a failed write once went to the log, as its repr).  Repeated failures of one operation
with one errno (a full block directory fails every write) are rate-limited (``ErrorLogLimit``)."""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3

from blocks import BlockError
from fusefs.stats import COUNTERS
from metadata.model import FSError
from metadata.printable import printable
from metadata.store import LimitExceeded, StoreError, StoreFull

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def errno_of(error: BaseException) -> int:
    """The errno for ``error``.  A store that stays unavailable (timeouts, an outage the runner gave up
    on) is EIO, as a disk that stopped answering: ETIMEDOUT would read as a network error to programs."""
    if isinstance(error, FSError):
        return error.errno
    if isinstance(error, BlockError):
        return int(getattr(error, "errno", errno.EIO))
    if isinstance(error, LimitExceeded):
        return errno.EFBIG
    if isinstance(error, StoreFull):
        return errno.ENOSPC
    if isinstance(error, OSError) and error.errno:
        return error.errno
    return errno.EIO


#: Failures with an errno of their own, logged without a traceback (anything else is a bug of ours).
_EXPECTED_ERRORS = (StoreError, BlockError, OSError)
#: Failures of one operation with one errno logged per window; the rest are counted.
ERROR_LOG_BURST = 5
ERROR_LOG_WINDOW_S = 60.0


@dataclass
class Admission:
    """What to log of one failure."""

    log: bool
    #: This is the last failure of its kind logged in the current window.
    last: bool
    #: Failures of this kind not logged in the window that just ended, to report first.
    unreported: int


@dataclass
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class ErrorLogLimit:
    """At most ``burst`` log lines per ``window_s`` for each kind of failure (operation and errno);
    the failures beyond are counted and reported in one line with the next failure logged."""

    def __init__(
        self,
        burst: int = ERROR_LOG_BURST,
        window_s: float = ERROR_LOG_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, int], _Window] = {}

    def admit(self, operation: str, error_number: int) -> Admission:
        now = self._clock()
        key = (operation, error_number)
        window = self._windows.get(key)
        unreported = 0
        if window is None or now - window.start >= self.window_s:
            unreported = window.suppressed if window is not None else 0
            window = self._windows[key] = _Window(now)
        if window.logged < self.burst:
            window.logged += 1
            return Admission(True, window.logged == self.burst, unreported)
        window.suppressed += 1
        return Admission(False, False, unreported)


_error_log_limit = ErrorLogLimit()


def describe_call(name: str, parameters: list[str], args: tuple[Any, ...]) -> str:
    """``write(fh=3, off=0, buf=<1048576 bytes>)``: numbers as they are, names escaped, other bytes (file
    data, xattr values, symlink targets) by size only, and objects (request contexts, attributes) left
    out."""
    shown = []
    for parameter, value in zip(parameters, args, strict=False):
        if isinstance(value, bool | int) or value is None:
            shown.append(f"{parameter}={value}")
        elif isinstance(value, bytes) and "name" in parameter:
            shown.append(f"{parameter}='{printable(value)}'")
        elif isinstance(value, bytes | bytearray | memoryview):
            shown.append(f"{parameter}=<{len(value)} bytes>")
    return f"{name}({', '.join(shown)})"


def _log_failure(
    name: str, parameters: list[str], args: tuple[Any, ...], error_number: int, error: BaseException
) -> None:
    """One line for a failure (with the traceback if it is a bug of ours), within the rate limit."""
    admission = _error_log_limit.admit(name, error_number)
    code = errno.errorcode.get(error_number, str(error_number))
    if admission.unreported:
        log.error(
            "%s: %d more failure(s) with %s not logged in %g s",
            name,
            admission.unreported,
            code,
            _error_log_limit.window_s,
        )
    if not admission.log:
        return
    more = (
        f" (further {name} failures with {code} are counted, not logged, for {_error_log_limit.window_s:g} s)"
        if admission.last
        else ""
    )
    call = describe_call(name, parameters, args)
    if isinstance(error, _EXPECTED_ERRORS):
        log.error("%s failed, answered %s: %s%s", call, code, error, more)
    else:
        log.error("%s failed unexpectedly, answered %s%s", call, code, more, exc_info=error)


def fuse_handler(method: F) -> F:
    name = method.__name__
    # The parameters after self, named for the log lines.
    parameters = list(inspect.signature(method).parameters)[1:]
    # Counted per request (fusefs/stats.py): found here, once, so a request costs a few additions.
    counters = COUNTERS.operation(name)
    counts_read, counts_written = name == "read", name == "write"
    clock = time.perf_counter_ns

    @functools.wraps(method)
    async def handler(*args: Any, **kwargs: Any) -> Any:
        if log.isEnabledFor(logging.DEBUG):  # request tracing with --debug
            log.debug("%s", describe_call(name, parameters, args[1:]))
        started = clock()
        try:
            result = await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            counters.errors += 1
            raise
        except FSError as error:
            counters.errors += 1
            raise pyfuse3.FUSEError(error.errno) from None
        except _EXPECTED_ERRORS as error:
            counters.errors += 1
            error_number = errno_of(error)
            _log_failure(name, parameters, args[1:], error_number, error)
            raise pyfuse3.FUSEError(error_number) from None
        except Exception as error:
            counters.errors += 1
            _log_failure(name, parameters, args[1:], errno.EIO, error)
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            counters.observe(clock() - started)
        if counts_read:
            COUNTERS.bytes_read += len(result)
        elif counts_written:
            COUNTERS.bytes_written += result
        return result

    return handler  # type: ignore[return-value]
