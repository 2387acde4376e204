"""Two controllers of one peering priority, reported instead of frozen in silence.

kopf's rule: when a live peer has the same priority, every operator of that priority
pauses (neither can tell which one should act), and says so only in an ordinary log
line. All jobs would then stop progressing with nothing failing. This reads kopf's
ClusterKopfPeering now and then and makes the conflict visible: an error in the log,
the `emulsion_controller_peering_conflict` gauge, and readiness false, until one goes.
A peer of a higher priority is not a conflict: this one is then a standby, as meant.

It also watches this controller's own entry. kopf's keep-alive task gives up when one
request has failed through all its retries, and kopf never starts it again: the entry then
expires, and a standby of lower priority resumes beside this controller (two dispatching).
An own entry that stays stale while the apiserver answers means exactly that; the
operator then fails liveness, and the restarted process announces itself again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulsion_controller import metrics
from emulsion_controller.apiserver import Kube

log = logging.getLogger(__name__)

# kopf's default peering lifetime, for an entry that does not state its own.
DEFAULT_LIFETIME = 60
# How long the own entry may stay stale in reads that succeed before the keep-alive counts
# as lost: kopf touches it every lifetime minus 5-10 s, and after an outage retries within
# its longest backoff (10 s, see operator.configure); this is well beyond both.
KEEPALIVE_GRACE = timedelta(seconds=90)


@dataclass
class PeeringWatch:
    kube: Kube
    name: str
    identity: str
    priority: int
    conflicting: list[str] = field(default_factory=list)
    # Since when every successful read found the own entry missing or expired.
    stale_since: datetime | None = None
    stale_for: timedelta = timedelta(0)
    # A live peer of a higher priority was seen in the last read: kopf pauses this one's
    # handlers, and the feeder stops publishing (see feeder.py) until it is gone.
    outranked: bool = False

    @property
    def in_conflict(self) -> bool:
        return bool(self.conflicting)

    @property
    def keepalive_lost(self) -> bool:
        return self.stale_for >= KEEPALIVE_GRACE

    async def check(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        try:
            body = await self.kube.get_cluster_peering(self.name)
        except Exception:
            # The keep-alive cannot write through an outage either: only time with the
            # apiserver answering counts against it.
            self.stale_since, self.stale_for = None, timedelta(0)
            raise
        status = (body or {}).get("status") or {}
        self._observe_own_entry(status.get(self.identity), now)
        self.outranked = bool(higher_priority_peers(status, self.identity, self.priority, now))
        peers = same_priority_peers(status, self.identity, self.priority, now)
        if peers and not self.conflicting:
            log.error(
                "another live controller has the same peering priority %d: kopf pauses "
                "both and no job progresses until one goes; give each controller its own "
                "EMULSION_CONTROLLER_PRIORITY",
                self.priority,
                extra={"peering": self.name, "peers": peers, "self": self.identity},
            )
        elif self.conflicting and not peers:
            log.info("the peering conflict is over", extra={"peering": self.name})
        self.conflicting = peers
        metrics.PEERING_CONFLICT.set(1 if peers else 0)

    def _observe_own_entry(self, entry: Any, now: datetime) -> None:
        if isinstance(entry, Mapping) and is_live(entry, now):
            self.stale_since = None
        elif self.stale_since is None:
            self.stale_since = now
        self.stale_for = now - (self.stale_since or now)


def is_live(info: Mapping[str, Any], now: datetime) -> bool:
    """kopf's rule: an entry lives `lifetime` seconds after its `lastseen`."""
    lifetime = timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME)))
    lastseen = info.get("lastseen")
    seen = datetime.fromisoformat(str(lastseen)) if lastseen else now
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen + lifetime > now


def _live_peers(
    status: Mapping[str, Any], identity: str, now: datetime, chosen: Callable[[int], bool]
) -> list[str]:
    """Live peers other than `identity` whose priority is `chosen`, sorted."""
    found = []
    for peer, info in status.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        if chosen(int(info.get("priority", 0))) and is_live(info, now):
            found.append(str(peer))
    return sorted(found)


def same_priority_peers(
    status: Mapping[str, Any], identity: str, priority: int, now: datetime
) -> list[str]:
    """Live peers other than `identity` with exactly this priority (kopf's own test)."""
    return _live_peers(status, identity, now, lambda theirs: theirs == priority)


def higher_priority_peers(
    status: Mapping[str, Any], identity: str, priority: int, now: datetime
) -> list[str]:
    """Live peers other than `identity` of a higher priority: the ones kopf yields to."""
    return _live_peers(status, identity, now, lambda theirs: theirs > priority)
