"""The daemon's private control channel: a unix socket in its state directory (``mounts/PID.sock``,
mode 0600 in a 0700 directory) answering ``stats`` with the counters as one JSON line.

Only the mount's owner may ask: a peer whose uid (SO_PEERCRED) is not the daemon's is refused, even if
it could reach the socket (root, or a directory made reachable).  The asking side is
fusefs/control_client.py, which commands import without loading trio."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger(__name__)

#: The longest request line read; a request is a single word.
MAX_REQUEST = 64
#: A client that sends nothing is dropped after this long, so it cannot hold a task forever.
REQUEST_TIMEOUT_S = 10.0


def peer_uid(sock: socket.socket | trio.socket.SocketType) -> int:
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", credentials)[1])


def answer(request: str, uid: int, snapshot: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The reply to one request line from a peer running as ``uid``."""
    if uid != os.getuid():
        return {"error": "refused: only the mount's owner may use its control channel"}
    if request == "stats":
        return snapshot()
    return {"error": f"unknown request {request[:MAX_REQUEST]!r}"}


async def serve(
    path: str,
    snapshot: Callable[[], dict[str, Any]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control channel at ``path`` until cancelled; the socket file is removed at the end.
    Started (``task_status``) once it listens, so ``fusefs stats`` works as soon as the mount is
    announced.  A socket that cannot be made (a unix socket path is limited to 107 bytes) costs the
    stats, not the mount: a warning, and no channel."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a daemon that died with this pid
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # 0600 from the start: no window in which others could connect
    try:
        await listener.bind(path)
        listener.listen(16)
    except OSError as error:
        listener.close()
        log.warning("no control channel (fusefs stats) at %s: %s", path, error.strerror or error)
        task_status.started()
        return
    finally:
        os.umask(old_umask)
    task_status.started()
    try:
        async with trio.open_nursery() as nursery:
            while True:
                connection, _ = await listener.accept()
                nursery.start_soon(_handle, connection, snapshot)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _handle(connection: trio.socket.SocketType, snapshot: Callable[[], dict[str, Any]]) -> None:
    stream = trio.SocketStream(connection)
    async with stream:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT_S):
                request = (await stream.receive_some(MAX_REQUEST)).decode(errors="replace").strip()
                reply = answer(request, peer_uid(connection), snapshot)
                await stream.send_all(json.dumps(reply).encode() + b"\n")
        except (OSError, trio.BrokenResourceError) as error:  # the client left early: nothing to tell it
            log.debug("control channel: %s", error)
        except Exception:  # a bug here must not take the mount down with it
            log.exception("control channel request failed")
