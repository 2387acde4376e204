"""The one way the controller sets a status condition.

As cert-manager does it: `lastTransitionTime` moves only when the condition's status
changes, so "since when has this been true" survives the many writes in between;
reason, message and observedGeneration are refreshed on every write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """`conditions` with `type` set; the others are kept as they are, in order."""
    updated: list[dict[str, Any]] = []
    replaced = False
    for existing in conditions:
        if existing.get("type") != type:
            updated.append(dict(existing))
            continue
        replaced = True
        unchanged = existing.get("status") == status and existing.get("lastTransitionTime")
        updated.append(
            _condition(
                type,
                status,
                reason,
                message,
                generation,
                str(existing["lastTransitionTime"]) if unchanged else timestamp(now),
            )
        )
    if not replaced:
        updated.append(_condition(type, status, reason, message, generation, timestamp(now)))
    return updated


def find_condition(conditions: Sequence[Mapping[str, Any]], type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type), None)


def _condition(
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    last_transition: str,
) -> dict[str, Any]:
    return {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": last_transition,
    }


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with seconds, as Kubernetes writes its own times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
