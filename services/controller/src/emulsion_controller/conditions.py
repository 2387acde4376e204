"""The one way the controller sets a job's status conditions.

As cert-manager does it: `lastTransitionTime` moves only when the condition's status
changes, so "since when has this been true" survives the many writes in between;
reason, message and observedGeneration are refreshed on every write.

Which conditions a job has, by phase (`expected_conditions` is this table in code, and
docs/ingestjob.md, "Health in Argo CD", reads it):

| phase           | Dispatched | Complete | Failed | Ready | Reconciling | Stalled |
|-----------------|------------|----------|--------|-------|-------------|---------|
| Pending         | -          | -        | -      | False | True        | False   |
| Queued          | True       | -        | -      | False | True        | False   |
| Processing      | True       | -        | -      | False | True        | False   |
| Succeeded       | True       | True     | False  | True  | False       | False   |
| PartiallyFailed | True       | True     | False  | False | False       | True    |
| Failed          | True       | False    | True   | False | False       | True    |
| Failed (spec)   | -          | False    | True   | False | False       | True    |

Two questions, two sets of conditions:
- Complete/Failed: how did the job end? Exclusive, like a batch/v1 Job's. A partially
  failed job ran to its end with something to show for it, so it is Complete (reason
  PartiallyFailed) and not Failed; both say "N of M items failed" and why. Failed means
  nothing came of it: every item failed, or the spec was refused (InvalidSpec).
- Ready/Reconciling/Stalled: is everything it was asked for done? The summary kstatus
  and Argo CD read (abnormal-true Reconciling and Stalled, normal-true Ready): Ready only
  when every item succeeded, Reconciling while items are still running, Stalled when it
  ended with any failure, since nothing but a new job will make those items.
Every condition's reason is the phase (AllItemsFailed or InvalidSpec for Failed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from emulsion_contracts.crd import ConditionType, Phase
from emulsion_contracts.ingestjob import Condition, ConditionStatus, FailureCount, ItemFailure
from emulsion_contracts.reasons import FailureReason

ALL_ITEMS_FAILED: Final = "AllItemsFailed"
# Reasons a condition's message names (most common first); the rest are counted together,
# so five conditions repeating it stay short however many reasons a job met.
REASONS_NAMED: Final = 3


@dataclass(frozen=True)
class JobState:
    """What a job's conditions summarise."""

    phase: Phase
    dispatched: bool
    total: int
    succeeded: int
    failed: int
    # The failures status lists (the first ones), for the messages.
    failures: Sequence[ItemFailure] = ()
    # Every failure counted by reason (status.failureReasons); empty: count the listed ones.
    reasons: Sequence[FailureCount] = ()
    # Why the spec was refused; None for a valid job.
    rejection: str | None = None
    # Why the job failed as a whole: InvalidSpec, or StatusUnwritable.
    rejection_reason: str = FailureReason.INVALID_SPEC
    # Messages without the reasons (status.failureReasons still counts them): what a
    # status over its byte budget gives up first (see progress.JobProgress.to_status).
    brief: bool = False

    @property
    def reason(self) -> str:
        if self.rejection is not None:
            return str(self.rejection_reason)
        if self.phase == Phase.FAILED:
            return ALL_ITEMS_FAILED
        return str(self.phase)

    @property
    def message(self) -> str:
        if self.rejection is not None:
            return self.rejection
        if self.phase == Phase.PENDING:
            return f"{self.total} items waiting to be queued"
        finished = self.succeeded + self.failed
        if not self.phase.finished:
            return f"{finished} of {self.total} items finished, {self.failed} failed"
        if not self.failed:
            return f"{self.succeeded} of {self.total} items succeeded"
        if self.brief:
            return f"{self.failed} of {self.total} items failed"
        return failure_summary(self.total, self.failed, self.failures, self.reasons)


def failure_summary(
    total: int,
    failed: int,
    failures: Sequence[ItemFailure],
    reasons_counted: Sequence[FailureCount] = (),
) -> str:
    """ "2 of 4 items failed (2 DecompressionBomb)": how many, and why, most common first.

    The counts per reason cover every failed item; a status without them (an older
    controller's) names the reasons of the listed failures, as "first N:" when status
    lists fewer than failed."""
    counts = Counter({c.reason: c.count for c in reasons_counted if c.count})
    counted = sum(counts.values())
    if not counts:
        counts = Counter(str(f.reason) for f in failures)
        counted = len(failures)
    common = counts.most_common()
    named = common[:REASONS_NAMED]
    reasons = ", ".join(f"{n} {reason}" for reason, n in named)
    if len(common) > len(named):
        rest = common[len(named) :]
        reasons += f", {sum(n for _, n in rest)} for {len(rest)} other reasons"
    if reasons and counted < failed:
        reasons = f"first {counted}: {reasons}"
    return f"{failed} of {total} items failed" + (f" ({reasons})" if reasons else "")


# How each phase reads: (Complete, Failed, Ready, Reconciling, Stalled); None: not set.
# Dispatched is True once the work is queued, whatever the phase.
Row = tuple[bool | None, bool | None, bool, bool, bool]
RUNNING: Final[Row] = (None, None, False, True, False)
ROWS: Final[dict[Phase, Row]] = {
    Phase.PENDING: RUNNING,
    Phase.QUEUED: RUNNING,
    Phase.PROCESSING: RUNNING,
    Phase.SUCCEEDED: (True, False, True, False, False),
    Phase.PARTIALLY_FAILED: (True, False, False, False, True),
    Phase.FAILED: (False, True, False, False, True),
}
COLUMNS: Final = (
    ConditionType.COMPLETE,
    ConditionType.FAILED,
    ConditionType.READY,
    ConditionType.RECONCILING,
    ConditionType.STALLED,
)


def expected_conditions(state: JobState) -> dict[ConditionType, bool]:
    """The conditions a job in `state` has, and whether each is True (the module's table)."""
    found = {ConditionType.DISPATCHED: True} if state.dispatched else {}
    row = ROWS[Phase.FAILED if state.rejection is not None else state.phase]
    found.update(
        {kind: value for kind, value in zip(COLUMNS, row, strict=True) if value is not None}
    )
    return found


def job_conditions(
    conditions: Sequence[Condition], state: JobState, *, generation: int, now: datetime
) -> list[Condition]:
    """`conditions` brought in line with `state`; conditions of other types are kept."""
    updated = list(conditions)
    for kind, value in expected_conditions(state).items():
        reason, message = state.reason, state.message
        if kind == ConditionType.DISPATCHED:
            reason, message = "ItemsQueued", f"{state.total} work items published"
        updated = set_condition(
            updated,
            type=kind,
            status="True" if value else "False",
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
    return updated


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
