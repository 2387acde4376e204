"""Two controllers of one peering priority, reported instead of frozen in silence.

kopf's rule: when a live peer has the same priority, every operator of that priority
pauses (neither can tell which one should act), and says so only in an ordinary log
line. All jobs would then stop progressing with nothing failing. This reads kopf's
ClusterKopfPeering now and then and makes the conflict visible: an error in the log,
the `emulsion_controller_peering_conflict` gauge, and readiness false, until one goes.
A peer of a higher priority is not a conflict: this one is then a standby, as meant.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulsion_controller import metrics
from emulsion_controller.kube import Kube

log = logging.getLogger(__name__)

# kopf's default peering lifetime, for an entry that does not state its own.
DEFAULT_LIFETIME = 60


@dataclass
class PeeringWatch:
    kube: Kube
    name: str
    identity: str
    priority: int
    conflicting: list[str] = field(default_factory=list)

    @property
    def in_conflict(self) -> bool:
        return bool(self.conflicting)

    async def check(self) -> None:
        body = await self.kube.get_cluster_peering(self.name)
        status = (body or {}).get("status") or {}
        peers = same_priority_peers(status, self.identity, self.priority, datetime.now(UTC))
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


def same_priority_peers(
    status: Mapping[str, Any], identity: str, priority: int, now: datetime
) -> list[str]:
    """Live peers other than `identity` with exactly this priority (kopf's own test)."""
    found = []
    for peer, info in status.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        if int(info.get("priority", 0)) != priority:
            continue
        lifetime = timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME)))
        lastseen = info.get("lastseen")
        seen = datetime.fromisoformat(str(lastseen)) if lastseen else now
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if seen + lifetime > now:
            found.append(str(peer))
    return sorted(found)
