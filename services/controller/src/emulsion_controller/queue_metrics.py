"""Queue depth and the oldest waiting item's age, per lane and tenant, as gauges.

The feeder keeps the account of what waits (`backlog.LaneDepth`: per lane and tenant, the
items not finished and since when the oldest waits); `export` turns one snapshot of it
into `emulsion_queue_depth{lane,tenant}` and `emulsion_queue_oldest_age_seconds{lane,tenant}`
(metrics.py). Whoever holds the feeder calls `export` periodically (every few seconds:
a scrape every 30 s sees at most that stale a figure).

Cardinality is bounded whatever the number of tenants: per lane, the `top` tenants with
the most waiting items keep a label of their own, the rest are summed into one series
`tenant="other"` (its depth their sum, its age their oldest). A lane's total depth and
its oldest age are therefore exact in every export, and at most `2 x (top + 1)` series
per metric exist. Series of a (lane, tenant) that no longer waits, or fell out of the
top, are removed at the next export instead of freezing at their last value: a tenant
whose work finished must not look starved forever.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from emulsion_contracts.wire import Lane
from emulsion_controller import metrics
from emulsion_controller.backlog import LaneDepth

# Tenants with a series of their own, per lane; every other tenant is counted as OTHER.
TOP_TENANTS: Final = 20
# The tenant label of the tenants beyond the top. Tenant ids are 16 hex digits or
# `ns:<namespace>`, so no real tenant is named so.
OTHER: Final = "other"


@dataclass(frozen=True, slots=True)
class QueueFigure:
    """One exported series pair: waiting items and the oldest one's age in seconds."""

    depth: int
    oldest_age_seconds: float


def bounded(
    snapshot: Iterable[LaneDepth], now: float, top: int = TOP_TENANTS
) -> dict[tuple[Lane, str], QueueFigure]:
    """The figures to export for `snapshot` at monotonic time `now`: per lane, the `top`
    deepest tenants (ties broken by tenant id, so the choice is stable) and `OTHER` for
    the rest. Entries with nothing waiting are left out; several entries of one lane and
    tenant are added up."""
    if top < 0:
        raise ValueError("top must be >= 0")
    # (lane, tenant) -> [waiting, oldest since] with the same tenant merged.
    merged: dict[tuple[Lane, str], tuple[int, float | None]] = {}
    for entry in snapshot:
        if entry.waiting <= 0:
            continue
        waiting, since = merged.get((entry.lane, entry.tenant), (0, None))
        merged[(entry.lane, entry.tenant)] = (
            waiting + entry.waiting,
            _earliest(since, entry.oldest_waiting_since),
        )
    by_lane: dict[Lane, list[tuple[str, int, float | None]]] = {}
    for (lane, tenant), (waiting, since) in merged.items():
        by_lane.setdefault(lane, []).append((tenant, waiting, since))
    figures: dict[tuple[Lane, str], QueueFigure] = {}
    for lane, tenants in by_lane.items():
        tenants.sort(key=lambda row: (-row[1], row[0]))
        for tenant, waiting, since in tenants[:top]:
            if tenant != OTHER:
                figures[(lane, tenant)] = QueueFigure(waiting, _age(since, now))
        rest = [row for row in tenants[:top] if row[0] == OTHER] + tenants[top:]
        if rest:
            since = None
            for _, _, started in rest:
                since = _earliest(since, started)
            figures[(lane, OTHER)] = QueueFigure(sum(row[1] for row in rest), _age(since, now))
    return figures


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _age(since: float | None, now: float) -> float:
    # A clock read before `since` was recorded (another thread) is no negative age.
    return max(0.0, now - since) if since is not None else 0.0


class QueueGauges:
    """The two gauges of one process and the label sets this exporter set on them."""

    def __init__(self, top: int = TOP_TENANTS) -> None:
        self.top = top
        self._exported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def export(
        self, snapshot: Iterable[LaneDepth], now: float
    ) -> dict[tuple[Lane, str], QueueFigure]:
        figures = bounded(snapshot, now, self.top)
        labels = {(lane.value, tenant): figure for (lane, tenant), figure in figures.items()}
        with self._lock:
            for lane, tenant in self._exported - labels.keys():
                metrics.QUEUE_DEPTH.remove(lane, tenant)
                metrics.QUEUE_OLDEST_AGE.remove(lane, tenant)
            for (lane, tenant), figure in labels.items():
                metrics.QUEUE_DEPTH.labels(lane, tenant).set(figure.depth)
                metrics.QUEUE_OLDEST_AGE.labels(lane, tenant).set(figure.oldest_age_seconds)
            self._exported = set(labels)
        return figures


_GAUGES = QueueGauges()


def export(snapshot: Iterable[LaneDepth], now: float) -> dict[tuple[Lane, str], QueueFigure]:
    """Set the queue gauges from one snapshot (`Feeder.snapshot()`) taken at monotonic
    time `now`, removing series that no longer wait; returns what was set."""
    return _GAUGES.export(snapshot, now)
