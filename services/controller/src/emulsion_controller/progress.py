"""A job's progress, folded from item results, and what it is written as: the outcome
record (every finished item, in the records bucket) and the status (compact: counts,
conditions, a few examples).

Pure logic: no I/O. Folding is a set union keyed by item index, so a redelivered result
changes nothing, and the first outcome recorded for an index is final.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from emulsion_contracts import crd, indexes
from emulsion_contracts.crd import ConditionType, Phase
from emulsion_contracts.ingestjob import (
    EXAMPLE_TEXT_BYTES,
    FAILURE_MESSAGE_MAX,
    MAX_FAILURE_REASONS,
    Condition,
    FailureCount,
    IngestJob,
    IngestJobStatus,
    ItemFailure,
    fit_text,
    stored_text_bytes,
)
from emulsion_contracts.jobrecords import JobSummaryRecord, OutcomeRecord
from emulsion_contracts.messages import ItemResult
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.conditions import JobState, job_conditions

# The most the status the controller writes (kopf's bookkeeping aside) may take as etcd
# stores it. Counts, phase, times and the six conditions take ~1.3 KB at most; the rest
# holds the reasons in the condition messages, the example failures and the counts per
# reason, given up in that order when they do not fit (see to_status).
STATUS_BYTES = 1536
# All the controller's part of a job object may take: that status, kopf's bookkeeping
# (status.kopf, ~100 bytes) and the managedFields entries of both status writers (~730).
CONTROLLER_BYTES = 2368
# What is left of 4 KB (the small IngestJob's bound) for the rest: the metadata and spec
# as the API writes them, the apiserver's own fields and the API's managedFields entry.
# Within it the whole object stays within 4 KB (tests/services/controller/
# test_bounded_status.py).
FRAME_BYTES = 4096 - CONTROLLER_BYTES

_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")


def stored_json_bytes(value: object) -> int:
    """Bytes of `value` as the apiserver stores it in etcd: compact JSON from Go's
    encoding/json, which writes '<', '>', '&', U+2028 and U+2029 as six bytes each."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    escaped = sum(6 - len(c.encode("utf-8")) for c in _GO_ESCAPED.findall(text))
    return len(text.encode("utf-8")) + escaped


@dataclass
class JobProgress:
    """Everything the controller writes into one job's status."""

    total: int
    generation: int
    version: str | None = None
    dispatched: bool = False
    succeeded: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    failures: list[ItemFailure] = field(default_factory=list)
    # Failed indexes per reason: every failure, exact and mergeable (status.failureReasons).
    reasons: dict[str, set[int]] = field(default_factory=dict)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    conditions: list[Condition] = field(default_factory=list)
    # Why the whole job was refused (its spec cannot be dispatched); None for a valid job.
    rejection: str | None = None
    # InvalidSpec, or StatusUnwritable (see `abandon`).
    rejection_reason: str = FailureReason.INVALID_SPEC
    # Write counts and conditions only, without the per-reason and example lists.
    compact: bool = False

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> JobProgress:
        return cls.from_job(IngestJob.read(body))

    @classmethod
    def from_job(cls, job: IngestJob) -> JobProgress:
        """Resume from what an earlier write (maybe by another controller) left in status:
        counts' conditions, times, the rejection; the outcomes of each item come from the
        outcome record (`merge_record`), or from a status an older controller wrote with
        index ranges."""
        status = job.status
        dispatched = status.condition(ConditionType.DISPATCHED)
        failed = status.condition(ConditionType.FAILED)
        whole = (FailureReason.INVALID_SPEC, FailureReason.STATUS_UNWRITABLE)
        rejected = failed is not None and failed.reason in whole
        return cls(
            total=job.spec.count,
            generation=job.metadata.generation or 1,
            version=job.version,
            dispatched=dispatched is not None and dispatched.status == "True",
            succeeded=status.succeeded_set(),
            failed=status.failed_set(),
            failures=list(status.failures),
            reasons=_reasons_of(status),
            started_at=status.started_at,
            completed_at=status.completed_at,
            conditions=list(status.conditions),
            rejection=failed.message if failed is not None and rejected else None,
            rejection_reason=failed.reason
            if failed is not None and rejected
            else FailureReason.INVALID_SPEC,
        )

    @property
    def finished(self) -> int:
        return len(self.succeeded) + len(self.failed)

    @property
    def done(self) -> bool:
        return self.rejection is not None or (self.total > 0 and self.finished >= self.total)

    @property
    def phase(self) -> Phase:
        if self.rejection is not None:
            return Phase.FAILED
        if self.done:
            if not self.failed:
                return Phase.SUCCEEDED
            return Phase.PARTIALLY_FAILED if self.succeeded else Phase.FAILED
        if self.finished:
            return Phase.PROCESSING
        return Phase.QUEUED if self.dispatched else Phase.PENDING

    def record(self, result: ItemResult) -> bool:
        """Fold one item result in; False when it changes nothing (a duplicate, or stray)."""
        index = result.index
        if index >= self.total or index in self.succeeded or index in self.failed:
            return False
        if result.outcome == "succeeded":
            self.succeeded.add(index)
            return True
        self.failed.add(index)
        reason = str(result.reason or FailureReason.UNKNOWN)
        self.reasons.setdefault(reason, set()).add(index)
        if len(self.failures) < crd.MAX_FAILURES_LISTED:
            self.failures.append(
                ItemFailure(
                    index=index,
                    reason=result.reason or FailureReason.UNKNOWN,
                    # Examples only: cut to a few stored bytes (the API serves the rest);
                    # a name too long to show whole is left out rather than cut.
                    message=fit_text(result.message or "", EXAMPLE_TEXT_BYTES) or None,
                    asset=result.asset
                    if result.asset and stored_text_bytes(result.asset) <= EXAMPLE_TEXT_BYTES
                    else None,
                )
            )
        return True

    def merge(self, recorded: JobProgress) -> None:
        """Take in what is already recorded in status, e.g. by another controller replica.

        Outcomes are final once recorded, so the recorded one wins for an index both
        know; everything else is a union, and nothing either side folded is lost.
        """
        self.succeeded = (self.succeeded - recorded.failed) | recorded.succeeded
        self.failed = (self.failed - recorded.succeeded) | recorded.failed
        listed = {f.index for f in recorded.failures}
        ours = [f for f in self.failures if f.index not in listed and f.index in self.failed]
        self.failures = (recorded.failures + ours)[: crd.MAX_FAILURES_LISTED]
        # An index's reason is the recorded one when both know it, like its outcome.
        claimed = set().union(*recorded.reasons.values()) if recorded.reasons else set()
        reasons: dict[str, set[int]] = {r: set(found) for r, found in recorded.reasons.items()}
        for reason, found in self.reasons.items():
            reasons.setdefault(reason, set()).update(found - claimed)
        reasons = {r: found & self.failed for r, found in reasons.items()}
        reasons = {r: found for r, found in reasons.items() if found}
        self.reasons = reasons
        self.version = recorded.version or self.version
        self.dispatched = self.dispatched or recorded.dispatched
        starts = [t for t in (self.started_at, recorded.started_at) if t]
        self.started_at = min(starts) if starts else None
        self.completed_at = recorded.completed_at or self.completed_at
        if recorded.rejection is not None:
            self.rejection, self.rejection_reason = recorded.rejection, recorded.rejection_reason
        known = {c.type for c in recorded.conditions}
        self.conditions = list(recorded.conditions) + [
            c for c in self.conditions if c.type not in known
        ]

    @classmethod
    def from_record(cls, record: OutcomeRecord, generation: int = 1) -> JobProgress:
        """The outcomes a record holds, as a progress to merge (nothing else is in it)."""
        return cls(
            total=record.total,
            generation=generation,
            succeeded=record.succeeded_set(),
            failed=record.failed_set(),
            reasons={r: found for r, found in record.reason_sets().items() if found},
        )

    def merge_record(self, record: OutcomeRecord) -> None:
        """Take in the outcomes recorded (by us before a restart, or another replica)."""
        self.merge(JobProgress.from_record(record, self.generation))

    def outcome_record(self, uid: str) -> OutcomeRecord:
        """Every finished item of the job, as the records bucket keeps it."""
        return OutcomeRecord(
            uid=uid,
            total=self.total,
            succeeded=indexes.compress(self.succeeded),
            failed=indexes.compress(self.failed),
            reasons={r: indexes.compress(found) for r, found in sorted(self.reasons.items())},
        )

    def summary(self, uid: str, collection: str) -> JobSummaryRecord:
        """How the job ended, kept past its TTL (call after to_status stamped the end)."""
        return JobSummaryRecord(
            uid=uid,
            collection=collection,
            phase=str(self.phase),
            total=self.total,
            succeeded=len(self.succeeded),
            failed=len(self.failed),
            version=self.version,
            started_at=self.started_at,
            completed_at=self.completed_at,
            reasons={r: len(found) for r, found in self.reasons.items() if found},
        )

    def reject(self, message: str) -> None:
        """The spec cannot be dispatched: the job fails as a whole, no item is run."""
        self.rejection = message[:FAILURE_MESSAGE_MAX]
        self.rejection_reason = FailureReason.INVALID_SPEC

    def abandon(self, message: str) -> None:
        """The apiserver refuses this job's status as such: fail the job as a whole and
        write from now on only what cannot grow (counts, phase, conditions)."""
        self.rejection = message[:FAILURE_MESSAGE_MAX]
        self.rejection_reason = FailureReason.STATUS_UNWRITABLE
        self.compact = True

    def mark_dispatched(self, version: str, now: datetime) -> None:
        self.version = version
        self.dispatched = True
        self.started_at = self.started_at or now.replace(microsecond=0)

    def to_status(self, now: datetime) -> dict[str, Any]:
        """The whole status the controller owns (kopf's `status.kopf` is left alone).

        Compact whatever the job's size: which items finished is in the outcome record,
        so succeededIndexes/failedIndexes are no longer written (a merge patch of the
        whole status leaves an older controller's in place; see IngestJobStatus) and
        failureReasons only counts."""
        if self.done and not self.completed_at:
            self.completed_at = now.replace(microsecond=0)
        duration = None
        if self.started_at:
            end = self.completed_at or now
            duration = format_duration(end - self.started_at)
        failures = () if self.compact else tuple(self.failures)
        reasons = () if self.compact else self.failure_counts(with_indexes=False)
        # Fitted to STATUS_BYTES: first the condition messages go brief (the counts per
        # reason still say why), then the examples go from the last, then the counts of
        # the rarest reasons; the counts, phase and conditions always stay.
        brief = False
        while True:
            self._update_conditions(now, brief)
            body = IngestJobStatus(
                observed_generation=self.generation,
                phase=self.phase,
                version=self.version,
                total=self.total,
                succeeded=len(self.succeeded),
                failed=len(self.failed),
                progress=f"{self.finished}/{self.total}",
                failures=failures,
                failure_reasons=reasons,
                started_at=self.started_at,
                completed_at=self.completed_at,
                duration=duration,
                conditions=tuple(self.conditions),
            ).to_body()
            if stored_json_bytes(body) <= STATUS_BYTES:
                return body
            if not brief:
                brief = True
            elif failures:
                failures = failures[:-1]
            elif reasons:
                reasons = reasons[:-1]
            else:
                return body

    def _update_conditions(self, now: datetime, brief: bool = False) -> None:
        self.conditions = job_conditions(
            self.conditions, replace(self.state, brief=brief), generation=self.generation, now=now
        )

    @property
    def state(self) -> JobState:
        """What the job's conditions (and its Events) summarise."""
        return JobState(
            phase=self.phase,
            dispatched=self.dispatched,
            total=self.total,
            succeeded=len(self.succeeded),
            failed=len(self.failed),
            failures=tuple(self.failures),
            reasons=self.failure_counts(),
            rejection=self.rejection,
            rejection_reason=self.rejection_reason,
        )

    def failure_counts(self, with_indexes: bool = True) -> tuple[FailureCount, ...]:
        """Failed items per reason, most first (then by name, so a write is stable)."""
        ordered = sorted(self.reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return tuple(
            FailureCount(
                reason=reason,
                count=len(found),
                indexes=indexes.compress(found) if with_indexes else None,
            )
            for reason, found in ordered[:MAX_FAILURE_REASONS]
            if found
        )


def _reasons_of(status: IngestJobStatus) -> dict[str, set[int]]:
    """The failed indexes per reason a status records; a status written before
    failureReasons existed gives the reasons of the failures it lists."""
    if status.failure_reasons:
        # A compact status counts without indexes: those come from the outcome record.
        found_sets = {c.reason: c.index_set() for c in status.failure_reasons}
        return {reason: found for reason, found in found_sets.items() if found}
    found: dict[str, set[int]] = {}
    for failure in status.failures:
        found.setdefault(str(failure.reason), set()).add(failure.index)
    return found


def format_duration(elapsed: timedelta) -> str:
    """ "1h2m3s", "1m12s", "4s": as `kubectl` prints durations, to the second."""
    seconds = max(0, int(elapsed.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"
