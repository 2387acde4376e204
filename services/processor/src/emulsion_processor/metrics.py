"""Prometheus metrics, served on `/metrics` by `emulsion_runtime.health`."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

ITEMS: Final = Counter(
    "emulsion_processor_items_total",
    "Work items finished, by outcome and failure reason",
    ["outcome", "reason"],
)
REFUSED: Final = Counter(
    "emulsion_processor_work_refused_total",
    "Work messages refused unread: their signature was missing or did not verify",
    ["cause"],
)
GIVEN_BACK: Final = Counter(
    "emulsion_processor_items_given_back_total",
    "Work items handed back for redelivery (transient trouble or shutdown)",
    ["cause"],
)
TRANSIENT_RETRIES: Final = Counter(
    "emulsion_processor_transient_retries_total",
    "Steps tried again in-process after transient trouble (storage, NATS, scratch space)",
    ["step"],
)
STAGE_SECONDS: Final = Histogram(
    "emulsion_processor_stage_seconds",
    "Time spent per stage of an item",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ITEM_SECONDS: Final = Histogram(
    "emulsion_processor_item_seconds",
    "Time from receiving a work item to acknowledging it",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT: Final = Gauge("emulsion_processor_in_flight", "Work items in hand right now")
BYTES: Final = Counter(
    "emulsion_processor_bytes_total",
    "Bytes downloaded from staging and uploaded as derivatives",
    ["direction"],
)
