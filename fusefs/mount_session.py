"""This mount's session (metadata/sessions.py): registered before the mount serves, its heartbeat
renewed by a background service, removed at a clean unmount."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os

from metadata import sessions
from metadata.meta import Meta
from metadata.model import now_ns

log = logging.getLogger(__name__)


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("fusefs")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class MountSession:
    def __init__(self, meta: Meta, here: sessions.Process) -> None:
        self._meta = meta
        self._here = here
        self._mountpoint = ""

    async def register(self, mountpoint: str) -> None:
        """From now on this mount's records are its own, and other mounts know it is alive."""
        self._mountpoint = mountpoint
        await self._register()

    async def _register(self) -> None:
        session = sessions.Session.start(
            self._meta.session, self._here, self._mountpoint, _version(), now_ns()
        )
        await self._meta.register(session)

    async def renew(self) -> None:
        """Renew the heartbeat; if another mount took this one for dead and is recovering it (it stalled
        past the timeout), carry on as a new session."""
        if await self._meta.heartbeat(now_ns()):
            return
        old = self._meta.session
        self._meta.session = os.urandom(8)
        log.error(
            "this mount's session %s was taken for dead (no heartbeat for over %g s) and is being "
            "recovered by another mount: its unlinked open files may be gone; registered as session %s",
            old.hex(),
            sessions.timeout_s(),
            self._meta.session.hex(),
        )
        await self._register()

    async def unregister(self) -> None:
        """Whatever this session still holds becomes its leftovers: the next mount recovers them."""
        await self._meta.unregister()
