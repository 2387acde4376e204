"""Prometheus metrics of the controller (served on EMULSION_METRICS_PORT at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Gauge(
    "emulsion_controller_jobs",
    "IngestJobs the controller currently sees, by phase",
    ["phase"],
)
DISPATCH_LATENCY = Histogram(
    "emulsion_controller_dispatch_latency_seconds",
    "Time from a job's creation to its work being queued (phase Queued)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
ITEMS_DISPATCHED = Counter(
    "emulsion_controller_items_dispatched_total", "Work messages the stream took as new"
)
STATUS_PATCHES = Counter(
    "emulsion_controller_status_patches_total",
    "IngestJob status patches written by the controller (its patch rate)",
    ["kind"],
)
RESULTS = Counter(
    "emulsion_controller_item_results_total",
    "Item results received, by outcome; duplicates are counted as such",
    ["outcome"],
)
JOBS_DELETED_BY_TTL = Counter(
    "emulsion_controller_ttl_deletions_total", "Finished jobs deleted after their TTL"
)
JOBS_CANCELLED = Counter("emulsion_controller_jobs_cancelled_total", "Jobs deleted while running")
STATUS_CONFLICTS = Counter(
    "emulsion_controller_status_conflicts_total",
    "Status writes refused because the job changed since it was read (then merged, retried)",
)
RECORD_CONFLICTS = Counter(
    "emulsion_controller_record_conflicts_total",
    "Outcome record writes refused because another write came first (then merged, retried)",
)
STATUS_RETRIES = Counter(
    "emulsion_controller_status_retries_total",
    "Status reads or writes that failed (apiserver errors) and were retried after a backoff",
)
RESULTS_HELD = Gauge(
    "emulsion_controller_results_held",
    "Item results and acknowledgements held until the job's outcome record holds them",
)
ITEMS_REDISPATCHED = Counter(
    "emulsion_controller_items_redispatched_total",
    "Work messages published again because the item's result never arrived",
)
# Rounds of the two periodic loops: each going up says the loop is alive, and a test can
# wait for rounds to pass instead of for time.
FEED_ROUNDS = Counter(
    "emulsion_controller_feed_rounds_total",
    "Interval rounds of the bulk feeder (reconciled, queue gauges set, refilled)",
)
LOST_RESULT_ROUNDS = Counter(
    "emulsion_controller_lost_result_rounds_total",
    "Rounds of the lost-results check over the running jobs quiet past the deadline",
)
ITEMS_LOST = Counter(
    "emulsion_controller_items_result_lost_total",
    "Items failed with reason ResultLost after their re-dispatches",
)
PEERING_CONFLICT = Gauge(
    "emulsion_controller_peering_conflict",
    "1 while another live controller has this one's peering priority (both are paused)",
)
BACKGROUND_FAILURES = Counter(
    "emulsion_controller_background_failures_total",
    "Background loops that died (the controller then stops and exits non-zero)",
    ["task"],
)
EVENTS = Counter(
    "emulsion_controller_events_total",
    "Kubernetes Events about IngestJobs by outcome: posted, failed (refused), dropped (queue full)",
    ["outcome"],
)
# Fed from the feeder's account of what waits (queue_metrics.export); tenant cardinality
# bounded: the deepest tenants of each lane by name, the rest summed as tenant="other".
QUEUE_DEPTH = Gauge(
    "emulsion_queue_depth",
    "Items waiting (held back by the controller, or published without a result yet), by "
    "lane and tenant (the deepest tenants of each lane; the rest as 'other')",
    ["lane", "tenant"],
)
QUEUE_OLDEST_AGE = Gauge(
    "emulsion_queue_oldest_age_seconds",
    "How long the oldest waiting item of a lane and tenant has waited, in seconds",
    ["lane", "tenant"],
)
