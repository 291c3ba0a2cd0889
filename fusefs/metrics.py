"""``-o metrics=HOST:PORT``: the counters of fusefs/stats.py in Prometheus text format over HTTP.

A collector reads a snapshot at scrape time, so serving metrics adds nothing to a request's cost.  The
HTTP server is prometheus_client's own, in a thread of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server

from fusefs.metrics_address import parse_address


class _Collector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self._snapshot()
        bounds = [bound / 1e9 for bound in stats["latency_bounds_ns"]]
        requests = CounterMetricFamily("fusefs_requests", "FUSE requests answered", labels=["operation"])
        errors = CounterMetricFamily(
            "fusefs_request_errors", "FUSE requests answered with an error", labels=["operation"]
        )
        latency = HistogramMetricFamily(
            "fusefs_request_duration_seconds", "time to answer a FUSE request", labels=["operation"]
        )
        for name, op in stats["operations"].items():
            requests.add_metric([name], op["count"])
            errors.add_metric([name], op["errors"])
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, bounds), "+Inf"], op["buckets"], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([name], buckets, op["total_ns"] / 1e9)
        yield from (requests, errors, latency)
        for key, help_text in (
            ("bytes_read", "bytes returned by read requests"),
            ("bytes_written", "bytes accepted by write requests"),
            ("transactions", "store transactions run"),
            ("conflicts", "transaction attempts re-run because another transaction wrote what they read"),
            ("retries", "transaction attempts re-run after a retryable error other than a conflict"),
            ("outage_retries", "transactions started again after timing out in a store outage"),
        ):
            yield CounterMetricFamily(f"fusefs_{key}", help_text, value=stats[key])
        hits = CounterMetricFamily("fusefs_cache_hits", "lookups a cache answered", labels=["cache"])
        misses = CounterMetricFamily(
            "fusefs_cache_misses", "lookups a cache could not answer", labels=["cache"]
        )
        for name, cache in stats["caches"].items():
            hits.add_metric([name], cache["hits"])
            misses.add_metric([name], cache["misses"])
        yield from (hits, misses)
        yield GaugeMetricFamily(
            "fusefs_open_files", "files open through this mount", value=stats["open_files"]
        )


def serve_metrics(address: str, snapshot: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    """Serve ``/metrics`` at ``address`` (IP:PORT); returns the function that stops it.  OSError if the
    address cannot be bound."""
    host, port = parse_address(address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    server, thread = start_http_server(port, host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop
