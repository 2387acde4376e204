"""Which peers of kopf's peering object pause this controller as an equal, and when its own
entry says kopf's keep-alive is gone (pure logic)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from emulsion_controller.apiserver import Kube
from emulsion_controller.peering import (
    KEEPALIVE_GRACE,
    PeeringWatch,
    higher_priority_peers,
    same_priority_peers,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def peer(
    priority: int, seen_ago: float, lifetime: int = 60, now: datetime = NOW
) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (now - timedelta(seconds=seen_ago)).isoformat(),
    }


def test_only_live_others_of_the_same_priority_conflict() -> None:
    status = {
        "me": peer(5, 0),
        "twin": peer(5, 10),
        "dead-twin": peer(5, 61),
        "standby": peer(4, 0),
        "leader": peer(6, 0),
        "leaving": peer(5, 0, lifetime=0),
    }
    assert same_priority_peers(status, "me", 5, NOW) == ["twin"]
    assert same_priority_peers(status, "leader", 6, NOW) == []


def test_a_live_peer_of_a_higher_priority_outranks_this_one() -> None:
    """Then kopf pauses this controller, and its feeder publishes nothing (feeder.py)."""
    status: dict[str, object] = {
        "me": peer(5, 0),
        "leader": peer(6, 10),
        "gone": peer(9, 61),
        "low": peer(4, 0),
    }
    assert higher_priority_peers(status, "me", 5, NOW) == ["leader"]
    assert higher_priority_peers(status, "leader", 6, NOW) == []
    reads = PeeringReads()
    watch = PeeringWatch(cast(Kube, reads), "peering", "me", 5)
    reads.next = status
    asyncio.run(watch.check(NOW))
    assert watch.outranked
    reads.next = {"me": peer(5, 0), "low": peer(4, 0)}
    asyncio.run(watch.check(NOW))
    assert not watch.outranked


class PeeringReads:
    """The peering object as successive reads find it (pure logic: no apiserver)."""

    def __init__(self) -> None:
        self.next: dict[str, object] | Exception = {}

    async def get_cluster_peering(self, name: str) -> dict[str, object]:
        if isinstance(self.next, Exception):
            raise self.next
        return {"metadata": {"name": name}, "status": self.next}


READS = st.sampled_from(["fresh", "stale", "missing", "unreachable"])


@given(st.lists(st.tuples(st.integers(1, 40), READS), max_size=40))
def test_the_keepalive_counts_as_lost_only_after_its_entry_stayed_stale_in_answered_reads(
    steps: list[tuple[int, str]],
) -> None:
    """Lost exactly when the own entry was missing or expired in every successful read for
    KEEPALIVE_GRACE: an outage (a failed read) restarts the clock, a fresh entry clears it."""
    reads = PeeringReads()
    watch = PeeringWatch(cast(Kube, reads), "peering", "me", 5)
    now, stale_since = NOW, None
    for advance, read in steps:
        now += timedelta(seconds=advance)
        own = {"fresh": peer(5, 1, now=now), "stale": peer(5, 61, now=now)}.get(read)
        reads.next = {"standby": peer(4, 0, now=now)}
        if own is not None:
            reads.next["me"] = own
        if read == "unreachable":
            reads.next = ConnectionError("down")
        with contextlib.suppress(ConnectionError):
            asyncio.run(watch.check(now))
        stale_since = (stale_since or now) if read in ("stale", "missing") else None
        expected = stale_since is not None and now - stale_since >= KEEPALIVE_GRACE
        assert watch.keepalive_lost == expected, (steps, now)
