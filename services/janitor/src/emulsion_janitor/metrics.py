"""Prometheus metrics of the janitor (served on EMULSION_HTTP_PORT at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELETED_KEYS = Counter(
    "emulsion_janitor_deleted_keys_total",
    "Objects deleted, by reason (the GC request's, or the sweep's finding) and path",
    ["reason", "source"],
)
FREED_BYTES = Counter(
    "emulsion_janitor_freed_bytes_total",
    "Bytes of the objects deleted, by reason and path",
    ["reason", "source"],
)
REFUSALS = Counter(
    "emulsion_janitor_refusals_total",
    "Keys a guard refused to delete, by guard",
    ["guard"],
)
DELETE_ERRORS = Counter(
    "emulsion_janitor_delete_errors_total",
    "Keys the object store failed to delete (tried again by the next request or sweep)",
)
GC_MESSAGES = Counter(
    "emulsion_janitor_gc_messages_total",
    "GC requests handled, by outcome (done, deferred, retry, malformed, given_up, error, left)",
    ["outcome"],
)
SWEEP_DURATION = Histogram(
    "emulsion_janitor_sweep_duration_seconds",
    "Duration of a safety-net sweep",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
SWEEP_SCANNED = Counter(
    "emulsion_janitor_sweep_scanned_keys_total", "Keys listed by the safety-net sweep"
)
SWEEPER = Gauge(
    "emulsion_janitor_sweeper",
    "1 while this replica holds the sweeper role (one janitor at a time sweeps), else 0",
)
