"""The only code that deletes objects: facts read fresh, every key through the guards, then
one DeleteObjects call per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulsion_contracts import keys
from emulsion_janitor import metrics
from emulsion_janitor.guards import (
    Budget,
    Facts,
    Guard,
    Policy,
    StoredObject,
    grace_left,
    may_delete,
    orphan_age_left,
)
from emulsion_janitor.leases import Leases
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.store import MAX_BATCH, delete_batch, read_live
from emulsion_runtime.blocking import run_blocking

log = logging.getLogger(__name__)


@dataclass
class DeletionReport:
    deleted: int = 0
    freed_bytes: int = 0
    failed: int = 0
    refused: Counter[Guard] = field(default_factory=Counter)
    # Seconds until every time-bound refusal (grace, lease) may pass; None if there is none.
    retry_after: float | None = None

    def add(self, other: DeletionReport) -> None:
        self.deleted += other.deleted
        self.freed_bytes += other.freed_bytes
        self.failed += other.failed
        self.refused.update(other.refused)
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, other.retry_after)


class Deleter:
    """Deletes objects of one bucket for one path ("gc" messages or the "sweep")."""

    def __init__(
        self, s3: Any, leases: Leases, settings: JanitorSettings, source: str, bucket: str = ""
    ) -> None:
        self.s3 = s3
        self.leases = leases
        self.settings = settings
        self.source = source
        # The bucket the calls go to; the guard checks it against the configured one.
        self.bucket = bucket or settings.bucket
        self.policy = Policy(
            settings.bucket,
            settings.grace,
            settings.dry_run,
            timedelta(seconds=settings.orphan_age),
        )

    async def delete(
        self, objects: Sequence[StoredObject], reason: str, budget: Budget
    ) -> DeletionReport:
        report = DeletionReport()
        for start in range(0, len(objects), MAX_BATCH):
            report.add(await self._delete_batch(objects[start : start + MAX_BATCH], reason, budget))
        return report

    async def _delete_batch(
        self, batch: Sequence[StoredObject], reason: str, budget: Budget
    ) -> DeletionReport:
        # Read just before the delete call, so a version committed a moment ago is seen.
        facts = await self._facts(batch)
        now = datetime.now(UTC)
        report = DeletionReport()
        allowed: list[StoredObject] = []
        for stored in batch:
            guard = may_delete(
                self.bucket, stored, facts.get(stored.key, Facts()), self.policy, budget, now
            )
            if guard is None:
                allowed.append(stored)
            else:
                self._refused(stored, facts.get(stored.key, Facts()), guard, reason, now, report)
        failures = await run_blocking(delete_batch, self.s3, self.bucket, [s.key for s in allowed])
        failed = {failure.key for failure in failures}
        for failure in failures:
            log.error(
                "could not delete %s: %s %s",
                failure.key,
                failure.code,
                failure.message,
                extra={"key": failure.key},
            )
        for stored in allowed:
            if stored.key in failed:
                continue
            report.deleted += 1
            report.freed_bytes += stored.size
        report.failed = len(failed)
        metrics.DELETED_KEYS.labels(reason, self.source).inc(report.deleted)
        metrics.FREED_BYTES.labels(reason, self.source).inc(report.freed_bytes)
        metrics.DELETE_ERRORS.inc(report.failed)
        if report.deleted:
            log.info(
                "deleted %d objects (%d bytes)",
                report.deleted,
                report.freed_bytes,
                extra={"reason": reason, "source": self.source},
            )
        return report

    def _refused(
        self,
        stored: StoredObject,
        facts: Facts,
        guard: Guard,
        reason: str,
        now: datetime,
        report: DeletionReport,
    ) -> None:
        report.refused[guard] += 1
        metrics.REFUSALS.labels(guard.value).inc()
        if guard is Guard.GRACE:
            left = grace_left(stored, facts, self.settings.grace, now).total_seconds()
            report.retry_after = max(report.retry_after or 0.0, left, 1.0)
        elif guard is Guard.LEASED:
            report.retry_after = max(report.retry_after or 0.0, self.settings.lease_recheck)
        elif guard is Guard.NEWER_THAN_LIVE:
            left = orphan_age_left(stored, self.policy.orphan_age, now).total_seconds()
            report.retry_after = max(report.retry_after or 0.0, left, 1.0)
        extra = {"key": stored.key, "guard": guard.value, "reason": reason}
        if guard is Guard.DRY_RUN:
            log.info("dry run: would delete %s (%d bytes)", stored.key, stored.size, extra=extra)
        elif guard.passes_with_time:
            log.info("not yet deleting %s: %s", stored.key, guard.value, extra=extra)
        elif guard is not Guard.CAP:  # the sweep logs the cap once, not once per key
            log.warning("refused to delete %s: guard %s", stored.key, guard.value, extra=extra)

    async def _facts(self, batch: Sequence[StoredObject]) -> dict[str, Facts]:
        assets: dict[tuple[str, str], list[str]] = {}
        uploads: dict[str, list[str]] = {}
        for stored in batch:
            parsed = keys.parse_key(stored.key)
            if parsed is None:
                continue
            if parsed.area == "staging" and parsed.upload_id:
                uploads.setdefault(parsed.upload_id, []).append(stored.key)
            elif (
                parsed.area in ("originals", "derivatives", "taken")
                and parsed.collection
                and parsed.segment
            ):
                assets.setdefault((parsed.collection, parsed.segment), []).append(stored.key)
        lives = await asyncio.gather(
            *(
                run_blocking(read_live, self.s3, self.policy.bucket, collection, segment)
                for collection, segment in assets
            )
        )
        held = await asyncio.gather(*(self.leases.held(upload) for upload in uploads))
        facts: dict[str, Facts] = {}
        for live, members in zip(lives, assets.values(), strict=True):
            facts.update(dict.fromkeys(members, Facts(live=live)))
        for leased, members in zip(held, uploads.values(), strict=True):
            facts.update(dict.fromkeys(members, Facts(leased=leased)))
        return facts
