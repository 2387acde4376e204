"""Which peers of kopf's peering object pause this controller as an equal (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from emulsion_controller.peering import same_priority_peers

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def peer(priority: int, seen_ago: float, lifetime: int = 60) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(),
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
