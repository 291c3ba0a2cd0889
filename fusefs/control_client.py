"""Asking a daemon through its control channel (fusefs/control.py serves it): ``fusefs stats``."""

from __future__ import annotations

import json
import socket
from typing import Any


class ControlError(Exception):
    """The daemon could not be asked, or refused."""


def request(path: str, what: str = "stats", timeout_s: float = 10.0) -> dict[str, Any]:
    """Ask the daemon at ``path``; its reply, or ControlError with one line."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout_s)
            client.connect(path)
            client.sendall(what.encode() + b"\n")
            received = b""
            while not received.endswith(b"\n"):
                chunk = client.recv(1 << 16)
                if not chunk:
                    break
                received += chunk
    except OSError as error:
        raise ControlError(
            f"cannot reach the daemon's control channel {path}: {error.strerror or error}"
        ) from None
    try:
        reply = json.loads(received)
    except ValueError:
        raise ControlError(f"the daemon's control channel {path} gave no answer") from None
    if "error" in reply:
        raise ControlError(f"the daemon's control channel {path} answered: {reply['error']}")
    return dict(reply)
