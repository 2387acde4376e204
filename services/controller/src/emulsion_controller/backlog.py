"""What waits, per lane and tenant: the feeder's account, read by the queue metrics."""

from __future__ import annotations

from dataclasses import dataclass

from emulsion_contracts.wire import Lane


@dataclass(frozen=True, slots=True)
class LaneDepth:
    """One tenant's waiting work in one lane.

    `waiting` counts items not yet finished: those the controller holds back (bulk work
    beyond the tenant's window) and those published without a result yet.
    `oldest_waiting_since` is the monotonic time the oldest of them was accepted for
    dispatch, None when nothing waits.
    """

    lane: Lane
    tenant: str
    waiting: int
    oldest_waiting_since: float | None
