"""A job's progress, folded from item results, and the status it is written as.

Pure logic: no I/O. Folding is a set union keyed by item index, so a redelivered result
changes nothing, and the first outcome recorded for an index is final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulsion_contracts import crd, indexes, keys
from emulsion_contracts.crd import ConditionType, Phase
from emulsion_contracts.messages import ItemResult
from emulsion_controller.conditions import find_condition, set_condition, timestamp

# Limits of the CRD's status schema (crds/ingestjob.yaml).
REASON_MAX = 64
MESSAGE_MAX = 1024
# A job whose spec cannot become work messages: failed as a whole, for good.
INVALID_SPEC = "InvalidSpec"


@dataclass(frozen=True)
class Failure:
    index: int
    reason: str
    message: str
    asset: str | None = None

    def to_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": self.index, "reason": self.reason}
        if self.message:
            entry["message"] = self.message
        if self.asset:
            entry["asset"] = self.asset
        return entry


@dataclass
class JobProgress:
    """Everything the controller writes into one job's status."""

    total: int
    generation: int
    version: str | None = None
    dispatched: bool = False
    succeeded: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)
    started_at: str | None = None
    completed_at: str | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # Why the whole job was refused (its spec cannot be dispatched); None for a valid job.
    rejection: str | None = None

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> JobProgress:
        """Resume from what an earlier write (maybe by another controller) left in status."""
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        conditions = [dict(c) for c in status.get("conditions") or ()]
        dispatched = find_condition(conditions, ConditionType.DISPATCHED)
        failed = find_condition(conditions, ConditionType.FAILED)
        rejected = failed is not None and failed.get("reason") == INVALID_SPEC
        return cls(
            total=len(spec.get("items") or ()),
            generation=int(body.get("metadata", {}).get("generation") or 1),
            version=spec.get("version") or status.get("version"),
            dispatched=bool(dispatched and dispatched.get("status") == "True"),
            succeeded=indexes.expand(status.get("succeededIndexes")),
            failed=indexes.expand(status.get("failedIndexes")),
            failures=[
                Failure(
                    int(f["index"]), str(f["reason"]), str(f.get("message", "")), f.get("asset")
                )
                for f in status.get("failures") or ()
            ],
            started_at=status.get("startedAt"),
            completed_at=status.get("completedAt"),
            conditions=conditions,
            rejection=str(failed.get("message", "")) if failed and rejected else None,
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
        if len(self.failures) < crd.MAX_FAILURES_LISTED:
            self.failures.append(
                Failure(
                    index,
                    (result.reason or "Unknown")[:REASON_MAX],
                    (result.message or "")[:MESSAGE_MAX],
                    result.asset,
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
        self.version = recorded.version or self.version
        self.dispatched = self.dispatched or recorded.dispatched
        starts = [t for t in (self.started_at, recorded.started_at) if t]
        self.started_at = min(starts, key=_parse_time) if starts else None
        self.completed_at = recorded.completed_at or self.completed_at
        self.rejection = recorded.rejection or self.rejection
        known = {c.get("type") for c in recorded.conditions}
        self.conditions = [dict(c) for c in recorded.conditions] + [
            c for c in self.conditions if c.get("type") not in known
        ]

    def reject(self, message: str) -> None:
        """The spec cannot be dispatched: the job fails as a whole, no item is run."""
        self.rejection = message[:MESSAGE_MAX]

    def mark_dispatched(self, version: str, now: datetime) -> None:
        self.version = version
        self.dispatched = True
        self.started_at = self.started_at or timestamp(now)

    def to_status(self, now: datetime) -> dict[str, Any]:
        """The whole status the controller owns (kopf's `status.kopf` is left alone)."""
        if self.done and not self.completed_at:
            self.completed_at = timestamp(now)
        self._update_conditions(now)
        status: dict[str, Any] = {
            "observedGeneration": self.generation,
            "phase": str(self.phase),
            "total": self.total,
            "succeeded": len(self.succeeded),
            "failed": len(self.failed),
            "progress": f"{self.finished}/{self.total}",
            "succeededIndexes": indexes.compress(self.succeeded),
            "failedIndexes": indexes.compress(self.failed),
            "failures": [f.to_status() for f in self.failures],
            "conditions": self.conditions,
        }
        if self.version:
            status["version"] = self.version
        if self.started_at:
            status["startedAt"] = self.started_at
            end = _parse_time(self.completed_at) if self.completed_at else now
            status["duration"] = format_duration(end - _parse_time(self.started_at))
        if self.completed_at:
            status["completedAt"] = self.completed_at
        return status

    def _update_conditions(self, now: datetime) -> None:
        def put(kind: ConditionType, state: bool, reason: str, message: str) -> None:
            self.conditions = set_condition(
                self.conditions,
                type=kind,
                status="True" if state else "False",
                reason=reason,
                message=message,
                generation=self.generation,
                now=now,
            )

        if self.dispatched:
            put(
                ConditionType.DISPATCHED,
                True,
                "ItemsQueued",
                f"{self.total} work items published",
            )
        if not self.done:
            return
        if self.rejection is not None:
            put(ConditionType.COMPLETE, False, INVALID_SPEC, self.rejection)
            put(ConditionType.FAILED, True, INVALID_SPEC, self.rejection)
            return
        # Like batch/v1 Jobs: Complete when the job ran to its end with something to show
        # for it; Failed when any item failed (the reason says whether all of them did).
        phase = self.phase
        summary = (
            f"{len(self.succeeded)} of {self.total} items succeeded, {len(self.failed)} failed"
        )
        put(ConditionType.COMPLETE, phase != Phase.FAILED, str(phase), summary)
        failed_reason = {
            Phase.SUCCEEDED: "NoItemFailed",
            Phase.PARTIALLY_FAILED: "SomeItemsFailed",
            Phase.FAILED: "AllItemsFailed",
        }[phase]
        put(ConditionType.FAILED, phase != Phase.SUCCEEDED, failed_reason, summary)


def upload_ids(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The staging upload ids a job reads (the second segment of each item's source)."""
    found: dict[str, None] = {}
    for item in (body.get("spec") or {}).get("items") or ():
        parsed = keys.parse_key(str(item.get("source", "")))
        if parsed is not None and parsed.upload_id:
            found[parsed.upload_id] = None
    return tuple(found)


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


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
