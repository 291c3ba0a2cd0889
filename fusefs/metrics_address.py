"""The address of ``-o metrics=IP:PORT``, checked by ``fusefs mount`` before the daemon starts."""

from __future__ import annotations

import ipaddress


class MetricsAddressError(ValueError):
    pass


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9567`` or ``[::1]:9567`` as (host, port); MetricsAddressError if malformed."""
    host, colon, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        port = -1
    if not colon or not 0 < port < 65536:
        raise MetricsAddressError(f"invalid metrics address {text!r}: use IP:PORT, e.g. 127.0.0.1:9567")
    return host, port
