"""The one place where errors become errnos for the kernel.

pyfuse3 handlers may raise only ``FUSEError``: any other exception ends ``pyfuse3.main()`` and takes the
mount down.  Every handler is wrapped here: expected errors (``FSError``) pass their errno silently,
store and block errors with an errno of their own map to it, and anything unexpected is logged once
with its traceback and answered with EIO, leaving the mount up."""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyfuse3

from blocks import BlockError
from metadata.model import FSError
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


def fuse_handler(method: F) -> F:
    name = method.__name__

    @functools.wraps(method)
    async def handler(*args: Any, **kwargs: Any) -> Any:
        if log.isEnabledFor(logging.DEBUG):  # request tracing with --debug
            log.debug("%s%r", name, args[1:])
        try:
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except FSError as error:
            raise pyfuse3.FUSEError(error.errno) from None
        except (StoreError, BlockError, OSError) as error:
            log.error("%s%r failed: %s", method.__name__, args[1:], error)
            raise pyfuse3.FUSEError(errno_of(error)) from None
        except Exception:
            log.exception("%s%r failed unexpectedly", method.__name__, args[1:])
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler  # type: ignore[return-value]
