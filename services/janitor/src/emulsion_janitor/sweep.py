"""The safety net: page through staging/, originals/ and derivatives/ and delete what no
manifest or lease needs any more. A lost GC message costs time, never an orphan forever.

One listing page at a time: the manifests of the assets on it are read (concurrently) to
pick candidates, and the Deleter reads them again right before deleting. At most one
listing page, its manifests, and MAX_BATCH pending keys per reason are in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace

from emulsion_contracts import keys
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
    PassProgress,
    pages,
    read_live,
    read_progress,
    read_tombstone,
    remove_tombstone,
    write_progress,
)
from emulsion_runtime.blocking import run_blocking

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.janitor")

# The index (taken/) after the files: its entries follow the same manifests' versions.
SWEPT_PREFIXES = (keys.STAGING, keys.ORIGINALS, keys.DERIVATIVES, keys.TAKEN)
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
    # Manifests listed to find tombstones old enough to remove.
    manifests_scanned: int = 0

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
            "manifests_scanned": self.manifests_scanned,
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

    @property
    def held(self) -> bool:
        return self._held is not None

    def holds(self, stored: StoredObject) -> bool:
        return self._held is not None and self._held[0] is stored

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


class Pace:
    """At most `rate` keys listed per second, counted, not timed per request: after each
    page the pass waits until the keys listed so far are within `rate` times the time
    since it began. So by any moment it has listed at most that plus one page (a page is
    at most a second's worth of keys)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float, asyncio.Event], Awaitable[None]] | None = None,
    ) -> None:
        self.rate = rate
        self.page_size = max(1, min(MAX_BATCH, int(rate)))
        self._clock = clock
        self._sleep = sleep or _sleep_unless_stopping
        self._began: float | None = None
        self.taken = 0

    async def take(self, listed: int, stopping: asyncio.Event) -> None:
        if self._began is None:
            self._began = self._clock()
        self.taken += listed
        wait = self._began + self.taken / self.rate - self._clock()
        if wait > 0:
            await self._sleep(wait, stopping)


async def _sleep_unless_stopping(seconds: float, stopping: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)


class Cursor:
    """The full pass's place, saved in the bucket after each page it finished."""

    def __init__(
        self, s3: Any, bucket: str, progress: PassProgress, pace: Pace, persist: bool = True
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.progress = progress
        self.pace = pace
        # A dry run deletes nothing, so its place must not move a real pass's on.
        self.persist = persist

    async def _write(self) -> None:
        if self.persist:
            await run_blocking(write_progress, self.s3, self.bucket, self.progress)

    def resume_at(self, stages: tuple[str, ...]) -> tuple[int, str | None] | None:
        """The stage to go on with and the key after which to list; None: from the start."""
        if self.progress.prefix is None or self.progress.prefix not in stages:
            return None
        return stages.index(self.progress.prefix), self.progress.after

    async def save(self, prefix: str, after: str | None) -> None:
        self.progress = self.progress.model_copy(update={"prefix": prefix, "after": after})
        await self._write()

    async def finish(self) -> None:
        self.progress = self.progress.model_copy(
            update={"prefix": None, "after": None, "finished_at": datetime.now(UTC)}
        )
        await self._write()


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

    async def sweep(
        self,
        stopping: asyncio.Event | None = None,
        prefixes: tuple[str, ...] = SWEPT_PREFIXES,
        tombstones: bool = True,
        cursor: Cursor | None = None,
    ) -> SweepReport:
        """One sweep of `prefixes` (then of old tombstones, if `tombstones`). With a
        `cursor`, it goes on where the cursor says, paced, and saves its place per page."""
        report = SweepReport()
        began = time.monotonic()
        budget = Budget(self.settings.max_deletions_per_sweep)
        log.info(
            "sweep started",
            extra={
                "dry_run": self.settings.dry_run,
                "prefixes": list(prefixes),
                "resumed": cursor.progress.after if cursor is not None else None,
            },
        )
        with tracer.start_as_current_span("janitor.sweep") as span:
            try:
                await self._sweep(
                    report, budget, stopping or asyncio.Event(), prefixes, tombstones, cursor
                )
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

    async def routine(self, stopping: asyncio.Event | None = None) -> SweepReport:
        """The hourly sweep: staging/ alone (abandoned uploads, which no GC request names).
        staging/ holds the uploads of the last upload TTL, so its cost follows the uploads,
        not the photos stored; versions are the GC requests' and the full pass's."""
        return await self.sweep(stopping, prefixes=(keys.STAGING,), tombstones=False)

    async def full_pass(
        self,
        stopping: asyncio.Event | None = None,
        pace: Pace | None = None,
        now: datetime | None = None,
    ) -> SweepReport:
        """The full reconciliation, resumed from its stored progress (or begun anew if the
        last one finished), paced at EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND. Finished,
        its progress says so (and when it began, from which the next one is due)."""
        stopping = stopping or asyncio.Event()
        progress = await run_blocking(read_progress, self.s3, self.settings.bucket)
        begun = progress is None or progress.finished
        if progress is None or progress.finished:
            progress = PassProgress(started_at=now or datetime.now(UTC))
        cursor = Cursor(
            self.s3,
            self.settings.bucket,
            progress,
            pace or Pace(self.settings.full_pass_rate),
            persist=not self.settings.dry_run,
        )
        if begun:
            # Stored at once: a restart before the first page goes on with this pass,
            # not a new one, so the interval still counts from this start.
            await cursor.save(SWEPT_PREFIXES[0], None)
        report = await self.sweep(stopping, cursor=cursor)
        if not (report.capped or report.interrupted or stopping.is_set()):
            await cursor.finish()
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

    async def _sweep(
        self,
        report: SweepReport,
        budget: Budget,
        stopping: asyncio.Event,
        prefixes: tuple[str, ...] = SWEPT_PREFIXES,
        tombstones: bool = True,
        cursor: Cursor | None = None,
    ) -> None:
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

        stages = (*prefixes, MANIFESTS) if tombstones else prefixes
        resume = cursor.resume_at(stages) if cursor is not None else None
        for stage, prefix in enumerate(stages):
            if resume is not None and stage < resume[0]:
                continue
            after = resume[1] if resume is not None and stage == resume[0] else None
            if prefix == MANIFESTS:
                # Only once every version and upload was judged: a tombstone removed
                # earlier would leave its asset's versions without a manifest.
                if report.capped or stopping.is_set():
                    break
                for reason in list(pending):
                    await flush(reason)
                if report.capped:
                    return
                await self._remove_tombstones(report, budget, stopping, after, cursor)
                break
            await self._list_area(report, stopping, prefix, after, queue, flush, pending, cursor)
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

    async def _list_area(
        self,
        report: SweepReport,
        stopping: asyncio.Event,
        prefix: str,
        after: str | None,
        queue: Callable[[StoredObject, str], Awaitable[None]],
        flush: Callable[[str], Awaitable[None]],
        pending: dict[str, list[StoredObject]],
        cursor: Cursor | None,
    ) -> None:
        page_size = cursor.pace.page_size if cursor is not None else MAX_BATCH
        listing: Iterator[list[StoredObject]] = pages(
            self.s3, self.settings.bucket, prefix, after, page_size
        )
        claims = Claims()
        # The key listed just before the marker Claims holds: a pass resumed after a
        # restart lists from there, so the held marker is judged again with its upload.
        previous: str | None = after
        before_held: str | None = None
        while not (report.capped or stopping.is_set()):
            page = await run_blocking(next, listing, None)
            if page is None:
                break
            if not page:  # an empty area answers one empty page
                continue
            if cursor is not None:
                await cursor.pace.take(len(page), stopping)
            report.scanned += len(page)
            metrics.SWEEP_SCANNED.inc(len(page))
            lives = await self._lives_of(page)
            now = datetime.now(UTC)
            for stored in page:
                parsed = keys.parse_key(stored.key)
                if parsed is None:
                    report.unrecognised += 1
                    previous = stored.key
                    continue
                live = lives.get((parsed.collection or "", parsed.segment or ""))
                reason = select(stored, live, now, self.settings)
                for stored_now, reason_now in claims.decide(stored, parsed, reason):
                    await queue(stored_now, reason_now)
                if claims.holds(stored):
                    before_held = previous
                previous = stored.key
                if report.capped:
                    break
            if cursor is not None and not (report.capped or stopping.is_set()):
                # Every candidate of the page is judged before the page counts as done,
                # so a pass resumed from here skips nothing.
                for reason in list(pending):
                    await flush(reason)
                if not (report.capped or stopping.is_set()):
                    done = before_held if claims.held else previous
                    await cursor.save(prefix, done)
                    log.info(
                        "full pass page done",
                        extra={
                            "prefix": prefix,
                            "first": page[0].key,
                            "last": page[-1].key,
                            "listed": len(page),
                        },
                    )
        for stored_now, reason_now in claims.decide(None, None, None):
            if not (report.capped or stopping.is_set()):
                await queue(stored_now, reason_now)

    async def _remove_tombstones(
        self,
        report: SweepReport,
        budget: Budget,
        stopping: asyncio.Event,
        after: str | None = None,
        cursor: Cursor | None = None,
    ) -> None:
        """Remove the tombstones kept long enough that no older item can arrive any more.

        A tombstone is written once; a later ingest replaces it. So only a small manifest
        last written longer ago than the keep time can be one, and only those are read.
        """
        page_size = cursor.pace.page_size if cursor is not None else MAX_BATCH
        listing = pages(self.s3, self.settings.bucket, MANIFESTS, after, page_size)
        while not (budget.exhausted or stopping.is_set()):
            page = await run_blocking(next, listing, None)
            if page is None:
                return
            if not page:
                continue
            if cursor is not None:
                await cursor.pace.take(len(page), stopping)
            report.manifests_scanned += len(page)
            await self._tombstones_on(page, report, budget)
            if cursor is not None and not (report.capped or stopping.is_set()):
                await cursor.save(MANIFESTS, page[-1].key)

    async def _tombstones_on(
        self, page: list[StoredObject], report: SweepReport, budget: Budget
    ) -> None:
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
