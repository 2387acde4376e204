"""The one way the controller sets a status condition.

As cert-manager does it: `lastTransitionTime` moves only when the condition's status
changes, so "since when has this been true" survives the many writes in between;
reason, message and observedGeneration are refreshed on every write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from emulsion_contracts.crd import ConditionType
from emulsion_contracts.ingestjob import Condition, ConditionStatus


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """`conditions` with `type` set; the others are kept as they are, in order."""
    updated: list[Condition] = []
    replaced = False
    for existing in conditions:
        if existing.type != type:
            updated.append(existing)
            continue
        replaced = True
        since = existing.last_transition_time if existing.status == status else now
        updated.append(_condition(type, status, reason, message, generation, since))
    if not replaced:
        updated.append(_condition(type, status, reason, message, generation, now))
    return updated


def _condition(
    type: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    last_transition: datetime,
) -> Condition:
    return Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        # Kubernetes keeps times to the second; so does what we compare them with.
        last_transition_time=last_transition.replace(microsecond=0),
    )
