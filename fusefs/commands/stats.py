"""``fusefs stats MOUNTPOINT``: a live view of a mount's daemon, asked through its control channel."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from fusefs import control_client, daemon_records, mount_table
from fusefs.commands.common import CliError, Subcommands, UsageError, add_command
from fusefs.stats import CACHES, percentile_ms

PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
#: Store counters shown as rates, in this order.
STORE_COUNTERS = ("transactions", "conflicts", "retries", "outage_retries")


def control_socket_of(path: str) -> str:
    """The control socket of the daemon serving the mount at ``path``, which this user started."""
    mountpoint = mount_table.resolve_mountpoint(path)
    entry = mount_table.mount_at(mountpoint)
    if entry is None:
        raise CliError(f"{path} is not mounted")
    if not mount_table.is_fusefs(entry):
        raise CliError(f"{path} is not a fusefs mount (it is {entry.fstype} {entry.source})")
    for record in daemon_records.running_daemons():
        if record.mountpoint == mountpoint:
            return daemon_records.control_socket_path(record.pid)
    raise CliError(f"no daemon of this user serves {path}: only the mount's owner can see its stats")


def rates(before: dict[str, Any], after: dict[str, Any], interval_s: float) -> dict[str, Any]:
    """What happened between two snapshots: per-second rates, and latency percentiles of the requests
    answered meanwhile."""
    bounds = after["latency_bounds_ns"]
    operations = {}
    for name, now in after["operations"].items():
        then = before["operations"].get(name, {"count": 0, "errors": 0, "buckets": [0] * len(now["buckets"])})
        buckets = [new - old for new, old in zip(now["buckets"], then["buckets"], strict=True)]
        operations[name] = {
            "count": now["count"],
            "errors": now["errors"],
            "per_second": (now["count"] - then["count"]) / interval_s,
            "latency_ms": {label: percentile_ms(buckets, bounds, q) for label, q in PERCENTILES},
        }
    view: dict[str, Any] = {"interval_s": interval_s, "operations": operations}
    for key in ("bytes_read", "bytes_written", *STORE_COUNTERS):
        view[key] = after[key]
        view[f"{key}_per_second"] = (after[key] - before[key]) / interval_s
    view["open_files"] = after["open_files"]
    view["caches"] = {
        name: cache_rates(before["caches"].get(name), now) for name, now in after["caches"].items()
    }
    return view


def cache_rates(before: dict[str, int] | None, after: dict[str, int]) -> dict[str, Any]:
    """A cache's hits and misses in all, and its hit rate over the interval (None if it was not used)."""
    hits = after["hits"] - (before["hits"] if before else 0)
    misses = after["misses"] - (before["misses"] if before else 0)
    return {**after, "hit_rate": hits / (hits + misses) if hits + misses else None}


def render(view: dict[str, Any], where: str) -> str:
    lines = [
        f"fusefs stats {where}  (per second over {view['interval_s']:.1f} s; latency of those requests)",
        f"{'operation':<12} {'ops/s':>9} {'total':>10} {'errors':>8} "
        + " ".join(f"{label + ' ms':>8}" for label, _ in PERCENTILES),
    ]
    for name, op in sorted(view["operations"].items(), key=lambda item: -item[1]["per_second"]):
        latency = [
            f"{value:8.3f}" if value is not None else f"{'-':>8}" for value in op["latency_ms"].values()
        ]
        lines.append(
            f"{name:<12} {op['per_second']:9.1f} {op['count']:10d} {op['errors']:8d} {' '.join(latency)}"
        )
    lines += [
        *(
            f"{label:<9} {view[f'{key}_per_second'] / 1e6:10.2f} MB/s  ({view[key]} bytes in all)"
            for label, key in (("read", "bytes_read"), ("written", "bytes_written"))
        ),
        "store     "
        + ", ".join(f"{view[f'{key}_per_second']:.1f} {key.replace('_', ' ')}/s" for key in STORE_COUNTERS)
        + f"  ({view['transactions']} transactions, {view['conflicts']} conflicts, "
        f"{view['retries']} other retries in all)",
        "caches    "
        + ", ".join(
            f"{name} {'-' if cache['hit_rate'] is None else format(cache['hit_rate'], '.1%')} hits"
            f" ({cache['hits']} hits, {cache['misses']} misses in all)"
            for name, cache in view["caches"].items()
        ),
        f"open files {view['open_files']}",
    ]
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise UsageError(f"--interval must be a positive number of seconds, not {args.interval:g}")
    socket_path = control_socket_of(args.mountpoint)
    live = not args.once and sys.stdout.isatty()
    before = _ask(socket_path)
    while True:
        time.sleep(args.interval)
        after = _ask(socket_path)
        view = rates(before, after, args.interval)
        if args.json:
            print(json.dumps(view), flush=True)
        else:
            # A terminal gets one screen redrawn; a pipe gets one block per interval.
            print(
                ("\x1b[H\x1b[2J" if live else "") + render(view, args.mountpoint) + ("" if live else "\n"),
                flush=True,
            )
        if args.once:
            return 0
        before = after


def _ask(socket_path: str) -> dict[str, Any]:
    try:
        return control_client.request(socket_path)
    except control_client.ControlError as error:
        raise CliError(str(error)) from None


def add_stats_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    stats = add_command(
        commands,
        common,
        "stats",
        cmd_stats,
        "live statistics of a mount: operations per second, latency, bytes, store transactions, "
        "conflicts and retries, cache hit rates, open files",
    )
    stats.epilog = (
        "Only the user who mounted it can see a mount's stats (they come through a private control socket "
        "of its daemon).  Rates cover the last interval; totals count since the mount.  Store: conflicts "
        "are attempts re-run because another transaction wrote what they read; retries are attempts re-run "
        "after another retryable error (commit outcome unknown, transaction too old, store recovering); "
        "outage retries are transactions started again after timing out.  Caches (hit rate over the "
        "interval): "
        + "; ".join(f"{name}: {meaning}" for name, meaning in CACHES.items())
        + " (object_cache only with an object data tier)."
    )
    stats.add_argument("--once", action="store_true", help="one interval, then exit")
    stats.add_argument("--json", action="store_true", help="one JSON object per interval (for scripts)")
    stats.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="refresh period (default: 1)"
    )
    stats.add_argument("mountpoint", metavar="MOUNTPOINT", help="a fusefs mount of this user")
