"""The safety net: page through staging/, originals/ and derivatives/ and delete what no
manifest or lease needs any more. A lost GC message costs time, never an orphan forever.

One listing page at a time: the manifests of the assets on it are read (concurrently) to
pick candidates, and the Deleter reads them again right before deleting. At most one
listing page, its manifests, and MAX_BATCH pending keys per reason are in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace

from emulsion_contracts import keys
from emulsion_contracts.blocking import run_blocking
from emulsion_janitor import metrics
from emulsion_janitor.deleter import Deleter, DeletionReport
from emulsion_janitor.guards import (
    Budget,
    Facts,
    Live,
    StoredObject,
    grace_left,
    tombstone_removable,
)
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.store import (
    MAX_BATCH,
    pages,
    read_live,
    read_tombstone,
    remove_tombstone,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.janitor")

SWEPT_PREFIXES = (keys.STAGING, keys.ORIGINALS, keys.DERIVATIVES)
# Larger than any tombstone (its names are at most a few hundred bytes): bigger manifests
# list files, so they are live and not worth reading.
TOMBSTONE_MAX_BYTES = 4096
# Where manifests live (`keys.manifest_key`).
MANIFESTS = "assets/"


@dataclass
class SweepReport:
    scanned: int = 0
    unrecognised: int = 0
    candidates: int = 0
    deletion: DeletionReport = field(default_factory=DeletionReport)
    capped: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    tombstones_removed: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "scanned": self.scanned,
            "unrecognised": self.unrecognised,
            "candidates": self.candidates,
            "deleted": self.deletion.deleted,
            "freed_bytes": self.deletion.freed_bytes,
            "failed": self.deletion.failed,
            "refused": {guard.value: n for guard, n in sorted(self.deletion.refused.items())},
            "capped": self.capped,
            "interrupted": self.interrupted,
            "tombstones_removed": self.tombstones_removed,
            "seconds": round(self.seconds, 3),
        }


def _age(stored: StoredObject, now: datetime) -> timedelta | None:
    return None if stored.last_modified is None else now - stored.last_modified


def select(
    stored: StoredObject, live: Live | None, now: datetime, settings: JanitorSettings
) -> str | None:
    """Why the sweep would delete `stored` (the metrics' reason), or None to leave it.

    Only picks candidates; the guards decide, with facts read again right before deleting.
    """
    parsed = keys.parse_key(stored.key)
    age = _age(stored, now)
    if parsed is None or age is None:
        return None
    if parsed.area == "staging":
        return "abandoned" if age >= timedelta(seconds=settings.upload_ttl) else None
    if live is None or not live.readable or live.protects(stored.key):
        return None
    assert parsed.version is not None
    orphan_age = timedelta(seconds=settings.orphan_age)
    if live.version is None:
        return "deleted" if age >= orphan_age else None
    if parsed.version < live.version:
        # The grace runs from the supersession (or the delete), not from the key's write.
        if grace_left(stored, Facts(live=live), settings.grace, now) > timedelta(0):
            return None
        return "deleted" if live.tombstone else "superseded"
    # Newer than the live version yet not live: an item in flight, or one that failed
    # after writing; only time tells them apart.
    return "orphaned" if age >= orphan_age else None


class Claims:
    """Claim markers go with their uploads, never before them.

    A marker (`staging/<collection>/<upload-id>/.claim`) says a job promoted the upload
    beside it; while it exists, neither the API nor a processor takes that key again.
    Deleted while its upload is still there (a form replayed after the promotion writes
    the key anew, and later than the marker), the key could be ingested again. So the
    sweep holds each marker until it sees the key after it (a marker sorts before its
    upload's file): an upload still beside it takes the marker along only when it goes
    itself; a marker left alone (its upload promoted and deleted) goes by the upload's
    rule (the TTL from its own write). Both are then guarded alike (the upload id's lease).
    """

    def __init__(self) -> None:
        self._held: tuple[StoredObject, str | None] | None = None

    def decide(
        self, stored: StoredObject | None, parsed: keys.ParsedKey | None, reason: str | None
    ) -> list[tuple[StoredObject, str]]:
        """What to delete now, given the next listed key (None: the listing ended); an
        upload comes before its marker, so a marker never goes in an earlier batch."""
        chosen: list[tuple[StoredObject, str]] = []
        is_claim = parsed is not None and parsed.area == "staging" and parsed.claim
        if stored is not None and not is_claim and reason is not None:
            chosen.append((stored, reason))
        if self._held is not None:
            marker, marker_reason = self._held
            self._held = None
            beside = stored is not None and _folder(stored.key) == _folder(marker.key)
            if marker_reason is not None and (not beside or reason is not None):
                chosen.append((marker, marker_reason))
        if stored is not None and is_claim:
            self._held = (stored, reason)
        return chosen


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0]


class Sweeper:
    def __init__(
        self,
        s3: Any,
        deleter: Deleter,
        settings: JanitorSettings,
        tombstones_kept: timedelta | None = None,
    ) -> None:
        self.s3 = s3
        self.deleter = deleter
        self.settings = settings
        self.tombstones_kept = tombstones_kept or settings.tombstones_kept()

    async def sweep(self, stopping: asyncio.Event | None = None) -> SweepReport:
        report = SweepReport()
        began = time.monotonic()
        budget = Budget(self.settings.max_deletions_per_sweep)
        log.info("sweep started", extra={"dry_run": self.settings.dry_run})
        with tracer.start_as_current_span("janitor.sweep") as span:
            try:
                await self._sweep(report, budget, stopping or asyncio.Event())
            finally:
                report.seconds = time.monotonic() - began
                metrics.SWEEP_DURATION.observe(report.seconds)
            span.set_attributes(
                {
                    "emulsion.sweep.scanned": report.scanned,
                    "emulsion.sweep.deleted": report.deletion.deleted,
                    "emulsion.sweep.capped": report.capped,
                }
            )
        if report.capped:
            log.warning(
                "sweep reached its deletion cap of %d keys"
                " (EMULSION_JANITOR_MAX_DELETIONS_PER_SWEEP);"
                " the rest waits for the next sweep",
                self.settings.max_deletions_per_sweep,
                extra=report.summary(),
            )
        log.info("sweep finished", extra=report.summary())
        return report

    async def _lives_of(self, page: list[StoredObject]) -> dict[tuple[str, str], Live]:
        """The manifests of the assets on one listing page, read concurrently.

        Only to pick candidates: the Deleter reads them again right before deleting.
        """
        assets = {
            (parsed.collection, parsed.segment)
            for parsed in map(keys.parse_key, (stored.key for stored in page))
            if parsed is not None and parsed.collection and parsed.segment
        }
        lives = await asyncio.gather(
            *(
                run_blocking(read_live, self.s3, self.settings.bucket, collection, segment)
                for collection, segment in assets
            )
        )
        return dict(zip(assets, lives, strict=True))

    async def _sweep(self, report: SweepReport, budget: Budget, stopping: asyncio.Event) -> None:
        pending: dict[str, list[StoredObject]] = {}

        async def flush(reason: str) -> None:
            batch = pending.pop(reason, [])
            if batch:
                report.deletion.add(await self.deleter.delete(batch, reason, budget))
                report.capped = report.capped or budget.exhausted

        async def queue(stored: StoredObject, reason: str) -> None:
            report.candidates += 1
            pending.setdefault(reason, []).append(stored)
            if len(pending[reason]) >= MAX_BATCH:
                await flush(reason)

        for prefix in SWEPT_PREFIXES:
            listing: Iterator[list[StoredObject]] = pages(self.s3, self.settings.bucket, prefix)
            claims = Claims()
            while not (report.capped or stopping.is_set()):
                page = await run_blocking(next, listing, None)
                if page is None:
                    break
                report.scanned += len(page)
                metrics.SWEEP_SCANNED.inc(len(page))
                lives = await self._lives_of(page)
                now = datetime.now(UTC)
                for stored in page:
                    parsed = keys.parse_key(stored.key)
                    if parsed is None:
                        report.unrecognised += 1
                        continue
                    live = lives.get((parsed.collection or "", parsed.segment or ""))
                    reason = select(stored, live, now, self.settings)
                    for stored_now, reason_now in claims.decide(stored, parsed, reason):
                        await queue(stored_now, reason_now)
                    if report.capped:
                        break
            for stored_now, reason_now in claims.decide(None, None, None):
                if not (report.capped or stopping.is_set()):
                    await queue(stored_now, reason_now)
            if report.capped or stopping.is_set():
                break
        if report.capped:
            # Keys still pending would only be refused by the cap; the next sweep finds them.
            return
        if stopping.is_set():
            # Only the batch in hand is finished on shutdown; the next sweep finds the rest.
            report.interrupted = True
            return
        for reason in list(pending):
            if report.capped:
                break
            await flush(reason)
        if report.unrecognised:
            log.warning(
                "sweep left %d keys alone that do not follow the key layout", report.unrecognised
            )
        await self._remove_tombstones(report, budget, stopping)

    async def _remove_tombstones(
        self, report: SweepReport, budget: Budget, stopping: asyncio.Event
    ) -> None:
        """Remove the tombstones kept long enough that no older item can arrive any more.

        A tombstone is written once; a later ingest replaces it. So only a small manifest
        last written longer ago than the keep time can be one, and only those are read.
        """
        listing = pages(self.s3, self.settings.bucket, MANIFESTS)
        while not (budget.exhausted or stopping.is_set()):
            page = await run_blocking(next, listing, None)
            if page is None:
                return
            now = datetime.now(UTC)
            candidates = [
                stored
                for stored in page
                if stored.size <= TOMBSTONE_MAX_BYTES
                and (age := _age(stored, now)) is not None
                and age >= self.tombstones_kept
            ]
            found = await asyncio.gather(
                *(
                    run_blocking(read_tombstone, self.s3, self.settings.bucket, stored.key)
                    for stored in candidates
                )
            )
            for stored, tombstone in zip(candidates, found, strict=True):
                if tombstone is None or not tombstone_removable(
                    tombstone.manifest, self.tombstones_kept, now
                ):
                    continue
                if not budget.take():
                    report.capped = True
                    return
                if self.settings.dry_run:
                    log.info("dry run: would remove the tombstone %s", stored.key)
                    continue
                if await run_blocking(
                    remove_tombstone, self.s3, self.settings.bucket, stored.key, tombstone.etag
                ):
                    report.tombstones_removed += 1
                    log.info("removed the tombstone %s", stored.key, extra={"key": stored.key})
