"""One work item's steps, in order: check, decide, download, render, store, commit.

The order is what makes redelivery safe: a manifest that already names this item's
version means an earlier delivery finished, so nothing is redone; every key an item
writes embeds its version, so a retry rewrites the same keys; the commit is conditional,
so two writers never both win. What becomes of the message (the result published, the
ack, a hand-back) is `delivery`'s; every step waits out transient trouble (`patience`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue
from opentelemetry import trace

from emulsion_contracts import keys, wire
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import (
    FocalPoint,
    GcReason,
    GcRequest,
    ItemResult,
    StyleSpec,
    WorkItem,
)
from emulsion_contracts.profiles import Profile
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import (
    imaging,
    metrics,
    original_metadata,
    outcomes,
    patience,
    rerender,
    store,
    uploads,
)
from emulsion_processor.admission import MemoryBudget
from emulsion_processor.cancelled import CancelledJobs
from emulsion_processor.errors import ItemRejected, RenderCrashed
from emulsion_processor.settings import ProcessorSettings
from emulsion_runtime.blocking import run_blocking

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion_processor")

T = TypeVar("T")
# How an item ended for its asset: the commit's outcome, and the manifest its result reports.
Done = tuple[store.Outcome, AssetManifest | None]


def styles_for(
    item: WorkItem, profiles: dict[str, Profile]
) -> tuple[Profile, tuple[StyleSpec, ...]]:
    """The item's profile and the styles to make: its inline styles win over the profile's."""
    profile = profiles.get(item.profile)
    if profile is None:
        raise ItemRejected(
            FailureReason.UNKNOWN_PROFILE,
            f"profile {item.profile!r} is not one of {', '.join(sorted(profiles))}",
        )
    styles = item.styles or profile.styles
    names = [style.name for style in styles]
    if len(set(names)) != len(names):
        raise ItemRejected(FailureReason.INVALID_STYLES, f"style names repeat: {', '.join(names)}")
    return profile, styles


@dataclass(frozen=True, slots=True)
class Clients:
    s3: Any
    js: JetStreamContext
    cancelled: KeyValue


class ItemWorker:
    def __init__(
        self,
        settings: ProcessorSettings,
        clients: Clients,
        profiles: dict[str, Profile],
        cpu: Executor,
        io: Executor,
        scratch: Path,
        renew_cpu: Callable[[], Executor] | None = None,
        cancelled_jobs: CancelledJobs | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.profiles = profiles
        self.cpu = cpu
        self.io = io
        self.scratch = scratch
        self.renew_cpu = renew_cpu
        # Answers the check before an item's work from memory; None: read the bucket.
        self.cancelled_jobs = cancelled_jobs
        self.memory = MemoryBudget(settings.memory_budget_bytes)

    async def process(self, item: WorkItem, attempt: int) -> ItemResult:
        """The item's steps, to its succeeded result; a failure is raised (`errors`)."""
        outcome, manifest = await self._steps(item)
        return outcomes.finished(item, outcome, manifest, attempt)

    async def _steps(self, item: WorkItem) -> Done:
        # First: an upload of another collection is never read, nor named in a GC request.
        if item.rerender:
            rerender.check_source(item)
        else:
            uploads.check_source(item)
        await self._stop_if_cancelled(item, exact=self.cancelled_jobs is None)
        profile, styles = styles_for(item, self.profiles)
        if item.rerender:
            styles = rerender.crop_styles(styles)
        manifest_key = keys.manifest_key(item.collection, item.asset)
        current = await self._io(
            store.read_manifest, self.clients.s3, self.settings.bucket, manifest_key
        )
        decided = store.decide(current, item.version)
        if decided is not None and current is not None and current.manifest is not None:
            # Redelivered after it finished, or a later job already owns the asset: the
            # source is not needed and no key is rewritten.
            if decided is store.Outcome.STALE:
                # An earlier delivery may have written them before it died; keys that
                # were never written cost the janitor one harmless delete.
                await self._gc(item, "stale", outcomes.planned_keys(item, profile, styles))
            if not item.rerender:  # a re-render's source is the live original
                await self._gc(item, "promoted", (item.source,))
            return decided, current.manifest
        workdir = Path(tempfile.mkdtemp(prefix="item-", dir=self.scratch))
        try:
            if item.rerender:
                return await self._remake(item, profile, styles, workdir, current)
            return await self._make(item, profile, styles, workdir, manifest_key, current)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _make(
        self,
        item: WorkItem,
        profile: Profile,
        styles: tuple[StyleSpec, ...],
        workdir: Path,
        manifest_key: str,
        read: store.Current | None,
    ) -> Done:
        settings, s3 = self.settings, self.clients.s3
        focal = outcomes.focal_point(item, read)
        source, rendered = await self._download_and_render(item, profile, styles, workdir, focal)
        stripped = await self._stripped_original(profile, source.path, workdir)
        manifest = outcomes.build_manifest(
            item, rendered, stripped.bytes if stripped else source.bytes, focal, source
        )
        with self._stage("upload"):
            await self._io(uploads.claim, s3, settings.bucket, item)
            try:
                await self._upload(
                    item, rendered, manifest, source.etag, stripped.path if stripped else None
                )
            except ItemRejected:
                # The original was not promoted (its source changed or vanished): the
                # derivatives written beside it will never be live.
                await self._gc(item, "stale", tuple(sorted(manifest.stored_keys())))
                raise
        await self._stop_if_cancelled(item, written=manifest.stored_keys())
        with self._stage("commit"):
            # The read that decided to do the work is the first round's: its ETag (or
            # its absence) conditions the write, so no second GET is needed.
            committed = await self._io(
                partial(
                    store.commit_manifest, s3, settings.bucket, manifest_key, manifest, read=read
                )
            )
        if committed.outcome is store.Outcome.COMMITTED and committed.other is not None:
            # Its index entry too: the asset pages at the new version's capture time now.
            replaced = committed.other.stored_keys() - manifest.stored_keys()
            await self._gc(item, "superseded", tuple(sorted(replaced)))
        elif committed.outcome is store.Outcome.STALE:
            await self._gc(item, "stale", tuple(sorted(manifest.stored_keys())))
        await self._gc(item, "promoted", (item.source,))
        if committed.outcome is store.Outcome.STALE:
            return store.Outcome.STALE, committed.other
        return committed.outcome, manifest

    async def _remake(
        self,
        item: WorkItem,
        profile: Profile,
        styles: tuple[StyleSpec, ...],
        workdir: Path,
        read: store.Current | None,
    ) -> Done:
        """Re-render the live version's crop styles from its stored original (rerender.py)."""
        settings, s3 = self.settings, self.clients.s3
        live = rerender.live_manifest(read, item)
        if live is None or read is None:
            current = read.manifest if read is not None else None
            return store.Outcome.STALE, current
        _, rendered = await self._download_and_render(
            item, profile, styles, workdir, item.focal_point
        )
        made = tuple(outcomes.derivative(item, output) for output in rendered.styles)
        manifest = rerender.build_manifest(item, live, made)
        written = manifest.stored_keys() - live.stored_keys()
        with self._stage("upload"):
            await asyncio.gather(
                *(
                    self._put(rendering.key, file)
                    for file, rendering in outcomes.renderings(rendered, made)
                ),
                # A new version: its own index entry, at the same capture time.
                self._put_index_entry(manifest),
            )
        await self._stop_if_cancelled(item, written=written)
        with self._stage("commit"):
            committed = await self._io(
                partial(
                    rerender.commit,
                    s3,
                    settings.bucket,
                    keys.manifest_key(item.collection, item.asset),
                    manifest,
                    read,
                )
            )
        if committed.outcome is store.Outcome.COMMITTED:
            await self._gc(
                item, "superseded", tuple(sorted(live.stored_keys() - manifest.stored_keys()))
            )
        elif committed.outcome is store.Outcome.STALE:
            await self._gc(item, "stale", tuple(sorted(written)))
        if committed.outcome is store.Outcome.COMMITTED:
            return committed.outcome, manifest
        return committed.outcome, committed.other

    async def _download_and_render(
        self,
        item: WorkItem,
        profile: Profile,
        styles: tuple[StyleSpec, ...],
        workdir: Path,
        focal: FocalPoint | None,
    ) -> tuple[store.Downloaded, imaging.Rendered]:
        """The source streamed to scratch (its recorded collection checked), then rendered
        within the memory admission: the part an upload and a re-render share."""
        settings = self.settings
        with self._stage("download"):
            source = await self._download(
                item.source, workdir / "source", settings.max_source_bytes
            )
            metrics.BYTES.labels("downloaded").inc(source.bytes)
            if not item.rerender:  # only an upload's form records its collection
                uploads.check_recorded_collection(item, source.metadata)
            watermark_image = await self._watermark_image(profile, styles, workdir)
        outputs = workdir / "out"
        outputs.mkdir()
        job = imaging.RenderJob(
            source=source.path,
            out_dir=outputs,
            styles=styles,
            format=profile.format,
            quality=profile.quality,
            max_pixels=settings.max_pixels,
            max_frames=settings.max_frames,
            watermark=profile.watermark,
            watermark_image=watermark_image,
            focal_point=focal,
            **recorded_metadata(profile),
        )
        cost = await self._io(imaging.decode_cost, job)
        async with self.memory.admit(cost):
            rendered = await patience.patiently("render", partial(self._render, job), self.settings)
        record_timings(rendered.timings)
        return source, rendered

    async def _render(self, job: imaging.RenderJob) -> imaging.Rendered:
        try:
            return await run_blocking(imaging.render, job, executor=self.cpu)
        except BrokenExecutor as error:
            # A render process died (the OOM killer, a crashing decoder): that pool takes
            # no more work, so a fresh one serves the next items and this one is retried.
            if self.renew_cpu is not None:
                broken, self.cpu = self.cpu, self.renew_cpu()
                broken.shutdown(wait=False, cancel_futures=True)
            raise RenderCrashed(f"the render worker died: {error}") from None

    async def _stripped_original(
        self, profile: Profile, source: Path, workdir: Path
    ) -> store.Downloaded | None:
        """The original without the metadata the profile strips, made from the scratch file
        that was validated and rendered; None when the profile strips nothing."""
        if not profile.original.strip:
            return None
        plan = original_metadata.Plan.from_names(profile.original.strip)
        with self._stage("strip"):
            try:
                stripped = await self._io(
                    original_metadata.strip_file, source, workdir / "original", plan
                )
            except original_metadata.MetadataError as error:
                # Storing it unstripped would break the profile's promise (GPS could stay).
                raise ItemRejected(
                    FailureReason.CORRUPT_IMAGE,
                    f"the metadata the profile strips from the original cannot be read: {error}",
                ) from None
        log.debug("stripped %s from the original", ", ".join(stripped.removed) or "nothing")
        return store.Downloaded(workdir / "original", stripped.bytes)

    async def _upload(
        self,
        item: WorkItem,
        rendered: imaging.Rendered,
        manifest: AssetManifest,
        etag: str,
        stripped: Path | None = None,
    ) -> None:
        s3, bucket = self.clients.s3, self.settings.bucket
        original = manifest.original
        # A stripped original is other bytes than the upload, so it is put from scratch;
        # otherwise the upload is promoted by a server-side copy.
        calls = [
            self._io(store.upload_file, s3, bucket, original.key, stripped, original.content_type)
            if stripped is not None
            else self._io(
                store.copy_original,
                s3,
                bucket,
                item.source,
                original.key,
                original.content_type,
                etag,
            )
        ]
        for file, rendering in outcomes.renderings(rendered, manifest.derivatives):
            calls.append(self._put(rendering.key, file))
            metrics.BYTES.labels("uploaded").inc(file.bytes)
        # Before the commit, like the files: a live version always has its entry.
        calls.append(self._put_index_entry(manifest))
        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One upload ended the item (a refused key, a vanished source): the others
            # must not go on retrying, or writing, after its result is out.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _put(self, key: str, file: imaging.RenderedFile) -> None:
        """A rendering's scratch file PUT to its key."""
        s3, bucket = self.clients.s3, self.settings.bucket
        await self._io(store.upload_file, s3, bucket, key, file.path, file.content_type)

    async def _put_index_entry(self, manifest: AssetManifest) -> None:
        """`manifest`'s capture-order index entry (`taken/`), written before its commit."""
        key = manifest.taken_key()
        if key is not None:
            await self._io(store.put_index_entry, self.clients.s3, self.settings.bucket, key)

    async def _watermark_image(
        self, profile: Profile, styles: tuple[StyleSpec, ...], workdir: Path
    ) -> Path | None:
        mark = profile.watermark
        if mark is None or mark.image_key is None or not any(s.watermark for s in styles):
            return None
        downloaded = await self._download(
            mark.image_key, workdir / "watermark.png", 10 * 1024 * 1024
        )
        return downloaded.path

    async def _download(self, key: str, destination: Path, max_bytes: int) -> store.Downloaded:
        return await self._io(
            partial(
                store.download,
                self.clients.s3,
                self.settings.bucket,
                key,
                destination,
                max_bytes=max_bytes,
                min_free_bytes=self.settings.min_free_scratch_bytes,
            )
        )

    async def _stop_if_cancelled(
        self, item: WorkItem, written: frozenset[str] = frozenset(), *, exact: bool = True
    ) -> None:
        """Reject `item` if its job was deleted: `exact` reads the bucket, else the watch
        answers (it may lag; the exact check before the commit is what guards it)."""
        if exact:
            cancelled = await patience.patiently(
                "cancelled check", partial(self._is_cancelled, item), self.settings
            )
        else:
            cancelled = self.cancelled_jobs is not None and item.job.uid in self.cancelled_jobs
        if not cancelled:
            return
        if written:
            # Never made live, so nothing will reference them: the janitor may take them.
            await self._gc(item, "stale", tuple(sorted(written)))
        raise ItemRejected(
            FailureReason.CANCELLED, f"job {item.job.namespace}/{item.job.name} was cancelled"
        )

    async def _is_cancelled(self, item: WorkItem) -> bool:
        try:
            await self.clients.cancelled.get(item.job.uid)
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True

    async def _gc(self, item: WorkItem, reason: GcReason, doomed: tuple[str, ...]) -> None:
        if not doomed:
            return
        request = GcRequest(
            reason=reason,
            keys=doomed,
            not_before=datetime.now(UTC) + timedelta(seconds=self.settings.gc_grace_seconds),
            collection=item.collection,
            asset=item.asset,
        )
        await patience.publish(
            self.clients.js,
            wire.gc_subject(reason),
            request.to_bytes(),
            wire.gc_msg_id(reason, item.version),
            self.settings,
        )

    async def _io(self, function: Callable[..., T], *arguments: Any) -> T:
        """A storage call on the I/O threads, waited out through transient trouble."""
        name = getattr(getattr(function, "func", function), "__name__", "storage")
        return await patience.patiently(
            name,
            lambda: run_blocking(
                store.keys_refused_for_good, function, *arguments, executor=self.io
            ),
            self.settings,
        )

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        with tracer.start_as_current_span(name):
            yield
        metrics.STAGE_SECONDS.labels(name).observe(time.monotonic() - started)


def recorded_metadata(profile: Profile) -> dict[str, Any]:
    """The RenderJob arguments that keep what the profile strips from the original (GPS,
    named Exif tags) out of the recorded metadata as well."""
    plan = original_metadata.Plan.from_names(profile.original.strip)
    return {"keep_gps": not plan.gps, "withheld_tags": plan.tags}


def record_timings(timings: tuple[imaging.Timing, ...]) -> None:
    """Spans and stage metrics for work measured in the render executor."""
    for timing in timings:
        span = tracer.start_span(timing.name, start_time=timing.start_ns)
        span.end(end_time=timing.end_ns)
        stage = "style" if timing.name.startswith("style ") else timing.name
        metrics.STAGE_SECONDS.labels(stage).observe((timing.end_ns - timing.start_ns) / 1e9)
